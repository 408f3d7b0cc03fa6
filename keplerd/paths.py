"""Where things live: the state dir layout of SPEC §1.

Path arithmetic, importable by the CLI; the only I/O is ``realpath`` and, for a
CLI without ``$KEPLER_DAEMON_PATH``, a look at ``keplerd.conf`` for ``state_dir``.
"""

import os
import re

DEFAULT_STATE_DIR = "/var/lib/kepler"
DEFAULT_CONFIG_NAMES = ("kepler.yaml", "kepler.yml")
DEFAULT_DAEMON_CONFIG = "/etc/kepler/keplerd.conf"
_STATE_DIR_KEY = re.compile(rb"^state_dir\s*:", re.MULTILINE)


def state_dir(override=None, daemon_config=DEFAULT_DAEMON_CONFIG):
    """Return the state dir the CLI talks to.

    *override*, else ``$KEPLER_DAEMON_PATH``, else ``state_dir`` of *daemon_config*
    (so that the CLI finds a daemon whose ``keplerd.conf`` moved it), else the default.
    """
    chosen = override or os.environ.get("KEPLER_DAEMON_PATH") or configured_state_dir(daemon_config)
    return os.path.abspath(chosen or DEFAULT_STATE_DIR)


def configured_state_dir(daemon_config):
    """Return ``state_dir`` of the ``keplerd.conf`` at *daemon_config*, or None.

    A missing, unreadable or invalid file says nothing: the daemon reports those.
    YAML is parsed only when the file sets the key, so ``keplerctl`` stays fast.
    """
    try:
        with open(daemon_config, "rb") as file:
            data = file.read()
    except OSError:
        return None
    if not _STATE_DIR_KEY.search(data):
        return None
    import yaml

    try:
        tree = yaml.safe_load(data)
    except yaml.YAMLError:
        return None
    value = tree.get("state_dir") if isinstance(tree, dict) else None
    return value if isinstance(value, str) and os.path.isabs(value) else None


def socket_path(state):
    return os.path.join(state, "kepler.sock")


def pid_path(state):
    return os.path.join(state, "kepler.pid")


def configs_dir(state):
    return os.path.join(state, "configs")


def config_id(config_path):
    """Return the id of a config: 16 hex chars of sha256 of its absolute real path."""
    real = os.path.realpath(config_path)
    return sha256(real.encode()).hexdigest()[:16]


def sha256(data):
    """Return a sha256 hash object, preferring CPython's built-in implementation.

    ``hashlib`` loads OpenSSL, about 4 MiB of resident memory in the daemon for one
    hash of a path; it is also off keplerctl's start-up path this way.
    """
    try:
        from _sha256 import sha256  # Python 3.11
    except ImportError:
        try:
            from _sha2 import sha256  # Python 3.12 and later
        except ImportError:
            from hashlib import sha256
    return sha256(data)


class ConfigPaths:
    """The files of one config's state dir, ``<state>/configs/<id>/``."""

    def __init__(self, state, config_id):
        self.root = os.path.join(configs_dir(state), config_id)
        self.source_path = os.path.join(self.root, "source_path")
        self.config_copy = os.path.join(self.root, "config.yaml")
        self.env_files = os.path.join(self.root, "env_files")
        self.snapshot = os.path.join(self.root, "snapshot.json")
        self.state = os.path.join(self.root, "state.json")
        self.logs = os.path.join(self.root, "logs")


def find_config_file(cwd, explicit=None, hint="use -f FILE"):
    """Return the absolute real path of the config to use, or raise ``FileNotFoundError``.

    *explicit* is the ``-f`` argument; without it ``kepler.yaml`` then ``kepler.yml``
    in *cwd* are tried; *hint* says how to name another file.
    """
    if explicit:
        path = os.path.join(cwd, explicit)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"config file not found: {explicit}")
        return os.path.realpath(path)
    for name in DEFAULT_CONFIG_NAMES:
        path = os.path.join(cwd, name)
        if os.path.isfile(path):
            return os.path.realpath(path)
    raise FileNotFoundError(f"no kepler.yaml or kepler.yml in {cwd} ({hint})")
