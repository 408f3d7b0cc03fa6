"""The daemon's settings: ``keplerd.conf``, then command-line flags (SPEC §14).

Every key is optional. The file is YAML, validated like a config: every problem
is one located line (``/etc/kepler/keplerd.conf: log_level: invalid value ...``)
and all of them are reported together.

>>> settings = load("/etc/kepler/keplerd.conf", required=False)   # doctest: +SKIP
>>> settings.autostart_dir                                         # doctest: +SKIP
'/etc/kepler/conf.d'
"""

import argparse
import os
import sys

from keplerd import __version__, paths
from keplerd.model import defaults
from keplerd.model.record import Record
from keplerd.config.errors import ConfigError

DEFAULT_PATH = paths.DEFAULT_DAEMON_CONFIG
DEFAULT_AUTOSTART_DIR = "/etc/kepler/conf.d"
LOG_LEVELS = defaults.LOG_LEVELS
CONTAINMENTS = defaults.CONTAINMENTS


class Settings(Record):
    """What the daemon runs with; defaults are those of an empty ``keplerd.conf``."""

    state_dir: str = paths.DEFAULT_STATE_DIR
    socket_group: str = "kepler"
    autostart_dir: str | None = DEFAULT_AUTOSTART_DIR  # None: none is read (a private daemon's, see resolve)
    log_level: str = "info"
    lua_memory_limit: int = defaults.LUA_MEMORY_LIMIT  # bytes
    lua_time_limit: float = defaults.LUA_TIME_LIMIT  # seconds of CPU per config
    default_stop_grace_period: float = defaults.STOP_GRACE_PERIOD  # seconds
    containment: str = "auto"  # cgroups when writable, else process groups; or process-group always
    metrics_listen: str = None  # host:port or a Unix socket path; None: no metrics
    metrics_allow_remote: bool = False
    # Whom each non-root user may run services as, besides itself (SPEC §21): {user: [user or group, ...]}.
    allow_run_as: dict = {}  # copied for each Settings
    client_hello_timeout: float = 5.0  # seconds (control/server.py SessionLimits)
    client_idle_timeout: float = 600.0
    client_sessions_per_user: int = 64

    def session_limits(self):
        """Return the limits of client sessions, as keyword arguments of ``SessionLimits``."""
        return {"hello_timeout": self.client_hello_timeout, "idle_timeout": self.client_idle_timeout,
                "per_user": self.client_sessions_per_user}

    def bake_options(self):
        """Return the settings that shape a bake, as keyword arguments of ``bake()``."""
        return {"default_stop_grace_period": self.default_stop_grace_period,
                "lua_memory_limit": self.lua_memory_limit, "lua_time_limit": self.lua_time_limit}


def load(path, required, validate=None):
    """Return the Settings of the file at *path*; defaults when it is missing and not *required*.

    *validate* is as for ``parse``.
    """
    try:
        with open(path, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        if required:
            raise ConfigError([f"{path}: no such file"]) from None
        return Settings()
    except OSError as error:
        raise ConfigError([f"{path}: cannot read: {error.strerror}"]) from None
    return parse(data, path, validate)


def parse(data, display_name, validate=None):
    """Return the Settings of the ``keplerd.conf`` text *data*; raise ConfigError.

    *validate(data, display_name)* returns the values *data* sets, as a dict
    (default: ``settings_schema.parse_settings`` in this process; the daemon has
    a worker process do it, so that it never loads YAML and marshmallow).
    """
    comment = "#" if isinstance(data, str) else b"#"
    if not any(line.strip() and not line.lstrip().startswith(comment) for line in data.splitlines()):
        return Settings()  # the shipped file is all comments: nothing to validate
    if validate is None:
        from keplerd.config.settings_schema import parse_settings as validate
    return Settings(**validate(data, display_name))


def resolve(args, environ=os.environ, validate=None):
    """Return the settings of ``keplerd.conf`` (``--config`` or the default) with flags applied.

    Flags win over the file; ``$KEPLER_DAEMON_PATH`` wins over the file's
    ``state_dir``, and ``--state-dir`` over both. *validate* is as for ``parse``.
    Raises ConfigError.
    """
    settings = load(args.config or DEFAULT_PATH, required=args.config is not None, validate=validate)
    overrides = {key: getattr(args, key) for key in ("autostart_dir", "socket_group", "log_level", "metrics_listen")
                 if getattr(args, key) is not None}
    state_dir = args.state_dir or environ.get("KEPLER_DAEMON_PATH")
    if state_dir:
        overrides["state_dir"] = os.path.abspath(state_dir)
    if "autostart_dir" in overrides:
        overrides["autostart_dir"] = os.path.abspath(overrides["autostart_dir"])
    else:
        overrides["autostart_dir"] = _autostart_dir(settings, args, overrides.get("state_dir"))
    return settings.replace(**overrides)


def _autostart_dir(settings, args, state_dir_override):
    """Return the autostart dir without ``--autostart-dir``: None for a private daemon (SPEC §14).

    A daemon whose state dir was moved by ``$KEPLER_DAEMON_PATH`` or ``--state-dir``
    (``make run``, tests) is not the system's: it never reads the system's autostart
    dir unless ``--autostart-dir`` names it, and the system's own ``keplerd.conf``
    speaks only for the system daemon, so an ``autostart_dir`` counts only from a
    file given with ``--config``.
    """
    private = state_dir_override is not None and state_dir_override != settings.state_dir
    if not private:
        return settings.autostart_dir
    if args.config is None or settings.autostart_dir == DEFAULT_AUTOSTART_DIR:
        return None
    return settings.autostart_dir


def build_parser():
    """Return the parser of keplerd's command line."""
    parser = argparse.ArgumentParser(prog="keplerd", description="Kepler process orchestrator daemon.",
                                     formatter_class=_help_formatter)
    # Paths are made absolute at once: a reload after --daemonize runs in /.
    parser.add_argument("--config", metavar="PATH", type=os.path.abspath,
                        help=f"daemon settings file (default {DEFAULT_PATH}; may be missing)")
    parser.add_argument("--state-dir", metavar="DIR", type=os.path.abspath,
                        help="state directory (default $KEPLER_DAEMON_PATH, else state_dir, else /var/lib/kepler)")
    parser.add_argument("--autostart-dir", metavar="DIR", type=os.path.abspath,
                        help="configs to start at boot (default autostart_dir, else /etc/kepler/conf.d; "
                             "none with a private state dir)")
    parser.add_argument("--socket-group", metavar="GROUP",
                        help="group allowed to use the socket (default socket_group, else kepler)")
    parser.add_argument("--log-level", choices=LOG_LEVELS, help="log level (default log_level, else info)")
    parser.add_argument("--metrics-listen", metavar="ADDRESS",
                        help="serve Prometheus metrics on HOST:PORT or a Unix socket path (default metrics_listen)")
    parser.add_argument("--daemonize", action="store_true",
                        help="run in the background; return once the socket answers (exit 1 if it cannot start)")
    parser.add_argument("--log-file", metavar="PATH", type=os.path.abspath,
                        help="log to PATH instead of stderr (default with --daemonize: STATE_DIR/keplerd.log)")
    parser.add_argument("--resume", metavar="FILE", type=os.path.abspath,
                        help="carry on with the runtime an earlier image handed over (keplerctl daemon reexec "
                             "passes it; not for use by hand)")
    parser.add_argument("--version", action="version", version=f"keplerd {__version__}")
    return parser


def _help_formatter(prog):
    """argparse's help formatter, at the terminal's width measured without ``shutil``.

    argparse imports ``shutil`` for the width, and ``shutil`` loads bz2 and lzma:
    0.44 MiB of the daemon's RSS for its whole life, for a help it never shows.
    """
    return argparse.HelpFormatter(prog, width=_terminal_columns() - 2)


def _terminal_columns():
    """``shutil.get_terminal_size().columns``: ``$COLUMNS``, else stdout's terminal, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", 0))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns if columns > 0 else 80
