"""Bake a config file into its snapshot (SPEC §3), or check it without baking.

The pipeline, each step collecting every problem it finds:

1. read the file once and load its YAML (syntax errors stop here);
2. expand variables stage by stage, reading each env file once and evaluating
   Lua on the way (:mod:`.stages`, :mod:`.lua`);
3. validate against the schema and the dependency graph (:mod:`.validate`);
4. fill defaults and build the snapshot (:mod:`.snapshot`).

>>> baked = bake("/srv/app/kepler.yaml", dict(os.environ), "/root")  # doctest: +SKIP
>>> baked.snapshot["start_order"]                                     # doctest: +SKIP
['db', 'web']
"""

import dataclasses
import os
import urllib.parse

from ..sources import read_recorded
from .errors import ConfigError, Problems
from . import runas, runnable
from .loader import load_yaml
from .lua import DEFAULT_MEMORY_LIMIT, DEFAULT_TIME_LIMIT, LuaEvaluator
from .snapshot import SnapshotBuilder
from .stages import EnvFiles, Stager
from .validate import Validator
from ..model import defaults


@dataclasses.dataclass
class Baked:
    """A baked config: the snapshot and the bytes of the files it was made from."""

    snapshot: dict
    config_bytes: bytes
    env_files: dict  # stored name -> bytes, as read


def stored_name(path, config_dir):
    """Return the file name under ``env_files/`` for the env file at absolute *path*.

    Names are percent-encoded, so they never contain ``/`` and never collide:
    ``app.env``, ``env%2Fprod.env`` for files under the config dir, and
    ``%2Fetc%2Fapp.env`` (always starting with ``%2F``) for any other.
    """
    relative = os.path.relpath(path, config_dir)
    inside = not (relative == ".." or relative.startswith("../"))
    return urllib.parse.quote(relative if inside else path, safe="")


def bake(config_path, sys_env, home, display_name=None, default_stop_grace_period=defaults.STOP_GRACE_PERIOD,
         lua_memory_limit=DEFAULT_MEMORY_LIMIT, lua_time_limit=DEFAULT_TIME_LIMIT, caller=None, check_host=False):
    """Return the Baked config of the file at absolute *config_path*; raise ConfigError.

    *sys_env* and *home* are the CLI's environment and its user's home dir;
    *display_name* names the file in messages (default: its base name). The Lua
    of the config runs within *lua_memory_limit* bytes and *lua_time_limit*
    seconds of CPU, for the whole bake. *caller* describes a non-root caller
    (:mod:`.runas`): its services run as it by default and may not run as others.
    With *check_host* (the daemon's bakes and ``config check``), unknown users and
    groups and missing programs of this machine are errors too (:mod:`.runnable`).
    """
    source = os.path.realpath(config_path)
    config_dir = os.path.dirname(source)
    display_name = display_name or os.path.basename(config_path)
    problems = Problems(display_name)
    try:
        config_bytes, config_record = read_recorded(source)
    except OSError as error:
        raise ConfigError([f"{display_name}: cannot read: {error.strerror}"]) from None
    tree = load_yaml(config_bytes, display_name)
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise ConfigError([f"{display_name}: the top level must be a mapping"])
    env_files = EnvFiles(config_dir, problems)
    lua = LuaEvaluator(config_dir, problems, lua_memory_limit, lua_time_limit)
    try:
        tree = Stager(sys_env, home, config_dir, problems, env_files, lua).stage(tree)
    finally:
        lua.close()
    kepler, services = Validator(problems).validate(tree)
    runas.check(kepler, services, caller, problems)
    problems.raise_if_any()
    stored = {path: stored_name(path, config_dir) for path in env_files.contents}
    header = {
        "source_path": source,
        "config_dir": config_dir,
        "display_name": display_name,
        "sys_env": dict(sys_env),
        "home": home,
        "env_files": stored,
        # What `ps` compares to say the config changed since this bake (keplerd.sources).
        "sources": {source: config_record, **env_files.records, **lua.records},
    }
    builder = SnapshotBuilder(env_files, sys_env, config_dir, default_stop_grace_period,
                              runas.default_user(caller))
    snapshot = builder.build(kepler, services, header)
    if check_host:
        runnable.check(snapshot, problems)
        problems.raise_if_any()
    contents = {stored[path]: data for path, data in env_files.contents.items()}
    return Baked(snapshot=snapshot, config_bytes=config_bytes, env_files=contents)


def check(config_path, sys_env, home, display_name=None, lua_memory_limit=DEFAULT_MEMORY_LIMIT,
          lua_time_limit=DEFAULT_TIME_LIMIT, caller=None):
    """Validate the config as :func:`bake` would (Lua included), writing nothing; raise ConfigError."""
    bake(config_path, sys_env, home, display_name, lua_memory_limit=lua_memory_limit,
         lua_time_limit=lua_time_limit, caller=caller, check_host=True)
