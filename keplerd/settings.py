"""The daemon's settings: ``keplerd.conf``, then command-line flags (SPEC §14).

Every key is optional. The file is YAML, validated like a config: every problem
is one located line (``/etc/kepler/keplerd.conf: log_level: invalid value ...``)
and all of them are reported together.

>>> settings = load("/etc/kepler/keplerd.conf", required=False)   # doctest: +SKIP
>>> settings.autostart_dir                                         # doctest: +SKIP
'/etc/kepler/conf.d'
"""

import argparse
import dataclasses
import inspect
import os

from marshmallow import ValidationError, validates_schema

from keplerd import __version__, paths
from keplerd.config import fields
from keplerd.config.errors import ConfigError, Problems
from keplerd.config.loader import load_yaml
from keplerd.config.schema import StrictSchema
from keplerd.config.validate import flatten_errors

DEFAULT_PATH = paths.DEFAULT_DAEMON_CONFIG
LOG_LEVELS = ("debug", "info", "warning", "error")
MIN_LUA_MEMORY = 1 << 20


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the daemon runs with; defaults are those of an empty ``keplerd.conf``."""

    state_dir: str = paths.DEFAULT_STATE_DIR
    socket_group: str = "kepler"
    autostart_dir: str = "/etc/kepler/conf.d"
    log_level: str = "info"
    lua_memory_limit: int = 64 << 20  # bytes
    lua_time_limit: float = 2.0  # seconds of CPU per config
    default_stop_grace_period: float = 10.0  # seconds

    def bake_options(self, accepted=None):
        """Return the settings that shape a bake, as keyword arguments of ``bake()``.

        Only the arguments *accepted* (default: those ``bake()`` declares) are
        returned, so that the Lua limits reach the Lua engine once it takes them.
        """
        if accepted is None:
            from keplerd.config.bake import bake

            accepted = inspect.signature(bake).parameters
        options = {"default_stop_grace_period": self.default_stop_grace_period,
                   "lua_memory_limit": self.lua_memory_limit, "lua_time_limit": self.lua_time_limit}
        return {name: value for name, value in options.items() if name in accepted}


class _AbsolutePath(fields.Text):
    """An absolute path, normalised."""

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        if not os.path.isabs(value):
            raise ValidationError(f"must be an absolute path, not {value!r}")
        return os.path.normpath(value)


class SettingsSchema(StrictSchema):
    state_dir = _AbsolutePath(metadata={"description": "State directory; default /var/lib/kepler."})
    socket_group = fields.Text(metadata={"description": "Group allowed to use the socket; default kepler."})
    autostart_dir = _AbsolutePath(metadata={"description": "Configs started at boot; default /etc/kepler/conf.d."})
    log_level = fields.Choice(LOG_LEVELS, metadata={"description": "Daemon log level; default info."})
    lua_memory_limit = fields.Size(metadata={"description": "Lua memory cap per config; default 64M."})
    lua_time_limit = fields.Duration(metadata={"description": "Lua CPU time cap per config; default 2s."})
    default_stop_grace_period = fields.Duration(
        metadata={"description": "stop_grace_period of services that set none; default 10s."})

    @validates_schema
    def _limits_are_usable(self, data, **kwargs):
        problems = {}
        if data.get("lua_memory_limit") is not None and data["lua_memory_limit"] < MIN_LUA_MEMORY:
            problems["lua_memory_limit"] = ["must be at least 1M"]
        if data.get("lua_time_limit") is not None and data["lua_time_limit"] <= 0:
            problems["lua_time_limit"] = ["must be more than 0"]
        if problems:
            raise ValidationError(problems)


def parse(data, display_name):
    """Return the Settings of the ``keplerd.conf`` text *data*; raise ConfigError."""
    tree = load_yaml(data, display_name)
    if tree is None:
        return Settings()
    if not isinstance(tree, dict):
        raise ConfigError([f"{display_name}: the top level must be a mapping of settings"])
    problems = Problems(display_name)
    try:
        loaded = SettingsSchema().load(tree)
    except ValidationError as error:
        for where, message in flatten_errors(error.messages):
            problems.add(where, message)
        problems.raise_if_any()
    return Settings(**{key: value for key, value in loaded.items() if value is not None})


def load(path, required):
    """Return the Settings of the file at *path*; defaults when it is missing and not *required*."""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        if required:
            raise ConfigError([f"{path}: no such file"]) from None
        return Settings()
    except OSError as error:
        raise ConfigError([f"{path}: cannot read: {error.strerror}"]) from None
    return parse(data, path)


def resolve(args, environ=os.environ):
    """Return the settings of ``keplerd.conf`` (``--config`` or the default) with flags applied.

    Flags win over the file; ``$KEPLER_DAEMON_PATH`` wins over the file's
    ``state_dir``, and ``--state-dir`` over both. Raises ConfigError.
    """
    settings = load(args.config or DEFAULT_PATH, required=args.config is not None)
    overrides = {key: getattr(args, key) for key in ("autostart_dir", "socket_group", "log_level")
                 if getattr(args, key) is not None}
    state_dir = args.state_dir or environ.get("KEPLER_DAEMON_PATH")
    if state_dir:
        overrides["state_dir"] = os.path.abspath(state_dir)
    if "autostart_dir" in overrides:
        overrides["autostart_dir"] = os.path.abspath(overrides["autostart_dir"])
    return dataclasses.replace(settings, **overrides)


def build_parser():
    """Return the parser of keplerd's command line."""
    parser = argparse.ArgumentParser(prog="keplerd", description="Kepler process orchestrator daemon.")
    # Paths are made absolute at once: a reload after --daemonize runs in /.
    parser.add_argument("--config", metavar="PATH", type=os.path.abspath,
                        help=f"daemon settings file (default {DEFAULT_PATH}; may be missing)")
    parser.add_argument("--state-dir", metavar="DIR", type=os.path.abspath,
                        help="state directory (default $KEPLER_DAEMON_PATH, else state_dir, else /var/lib/kepler)")
    parser.add_argument("--autostart-dir", metavar="DIR", type=os.path.abspath,
                        help="configs to start at boot (default autostart_dir, else /etc/kepler/conf.d)")
    parser.add_argument("--socket-group", metavar="GROUP",
                        help="group allowed to use the socket (default socket_group, else kepler)")
    parser.add_argument("--log-level", choices=LOG_LEVELS, help="log level (default log_level, else info)")
    parser.add_argument("--daemonize", action="store_true",
                        help="run in the background; return once the socket answers (exit 1 if it cannot start)")
    parser.add_argument("--log-file", metavar="PATH", type=os.path.abspath,
                        help="log to PATH instead of stderr (default with --daemonize: STATE_DIR/keplerd.log)")
    parser.add_argument("--version", action="version", version=f"keplerd {__version__}")
    return parser
