"""Where things live: the state dir layout of SPEC §1.

Pure path arithmetic (no I/O besides ``realpath``), importable by the CLI.
"""

import hashlib
import os

DEFAULT_STATE_DIR = "/var/lib/kepler"
DEFAULT_CONFIG_NAMES = ("kepler.yaml", "kepler.yml")


def state_dir(override=None):
    """Return the daemon's state dir: *override*, ``$KEPLER_DAEMON_PATH`` or the default."""
    return os.path.abspath(override or os.environ.get("KEPLER_DAEMON_PATH") or DEFAULT_STATE_DIR)


def socket_path(state):
    return os.path.join(state, "kepler.sock")


def pid_path(state):
    return os.path.join(state, "kepler.pid")


def configs_dir(state):
    return os.path.join(state, "configs")


def config_id(config_path):
    """Return the id of a config: 16 hex chars of sha256 of its absolute real path."""
    real = os.path.realpath(config_path)
    return hashlib.sha256(real.encode()).hexdigest()[:16]


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


def find_config_file(cwd, explicit=None):
    """Return the absolute real path of the config to use, or raise ``FileNotFoundError``.

    *explicit* is the ``-f`` argument; without it ``kepler.yaml`` then ``kepler.yml``
    in *cwd* are tried.
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
    raise FileNotFoundError(f"no kepler.yaml or kepler.yml in {cwd} (use -f FILE)")
