"""The schema of ``keplerd.conf`` (SPEC §14), validated like configs.

Run by the bake worker (``keplerd.config.worker``) for a file with settings in
it: the daemon itself never loads YAML and marshmallow.
"""

import os

from marshmallow import ValidationError, validates_schema
from marshmallow import fields as ma

from keplerd.config import fields
from keplerd.config.errors import ConfigError, Problems
from keplerd.config.loader import load_yaml
from keplerd.config.schema import StrictSchema
from keplerd.config.validate import flatten_errors
from keplerd.metrics import address
from keplerd.model.defaults import CONTAINMENTS, LOG_LEVELS

MIN_LUA_MEMORY = 1 << 20


class _AbsolutePath(fields.Text):
    """An absolute path, normalised."""

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        if not os.path.isabs(value):
            raise ValidationError(f"must be an absolute path, not {value!r}")
        return os.path.normpath(value)


class _RunAs(ma.Field):
    """``{user: [user or group, ...]}``: names or ids, as text."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, dict):
            raise ValidationError("must be a mapping of user names to lists of users and groups")
        problems, granted = {}, {}
        for user, targets in value.items():
            if not isinstance(targets, list) or not all(isinstance(target, (str, int)) and not isinstance(
                    target, bool) and str(target) for target in targets):
                problems[str(user)] = ["must be a list of user or group names (or ids)"]
            else:
                granted[str(user)] = [str(target) for target in targets]
        if problems:
            raise ValidationError(problems)
        return granted


class SettingsSchema(StrictSchema):
    state_dir = _AbsolutePath(metadata={"description": "State directory; default /var/lib/kepler."})
    socket_group = fields.Text(metadata={"description": "Group allowed to use the socket; default kepler."})
    autostart_dir = _AbsolutePath(metadata={"description": "Configs started at boot; default /etc/kepler/conf.d."})
    log_level = fields.Choice(LOG_LEVELS, metadata={"description": "Daemon log level; default info."})
    lua_memory_limit = fields.Size(metadata={"description": "Lua memory cap per config; default 64M."})
    lua_time_limit = fields.Duration(metadata={"description": "Lua CPU time cap per config; default 2s."})
    default_stop_grace_period = fields.Duration(
        metadata={"description": "stop_grace_period of services that set none; default 10s."})
    allow_run_as = _RunAs(
        metadata={"description": "Users and groups each non-root user may run services as; default none."})
    client_hello_timeout = fields.Duration(
        metadata={"description": "A client that says no hello within this is dropped; default 5s."})
    client_idle_timeout = fields.Duration(
        metadata={"description": "A client silent this long, with no request in flight, is dropped; default 10m."})
    client_sessions_per_user = fields.Count(
        metadata={"description": "Sessions one non-root user may hold at once; default 64."})
    metrics_listen = fields.Text(metadata={
        "description": "Serve Prometheus metrics on HOST:PORT or a Unix socket path; default off."})
    metrics_allow_remote = fields.Bool(metadata={
        "description": "Allow metrics_listen on a non-loopback address; default false."})
    containment = fields.Choice(CONTAINMENTS, metadata={
        "description": "auto: a cgroup per service when cgroup v2 is writable; process-group: never."})

    @validates_schema
    def _limits_are_usable(self, data, **kwargs):
        problems = {}
        if data.get("lua_memory_limit") is not None and data["lua_memory_limit"] < MIN_LUA_MEMORY:
            problems["lua_memory_limit"] = ["must be at least 1M"]
        for key in ("lua_time_limit", "client_hello_timeout", "client_idle_timeout"):
            if data.get(key) is not None and data[key] <= 0:
                problems[key] = ["must be more than 0"]
        if data.get("client_sessions_per_user") is not None and data["client_sessions_per_user"] < 1:
            problems["client_sessions_per_user"] = ["must be at least 1"]
        if data.get("metrics_listen"):
            try:
                address.parse(data["metrics_listen"], bool(data.get("metrics_allow_remote")))
            except address.BadAddress as error:
                problems["metrics_listen"] = [str(error)]
        if problems:
            raise ValidationError(problems)


def parse_settings(data, display_name):
    """Return the settings the ``keplerd.conf`` text *data* sets, as a dict; raise ConfigError."""
    tree = load_yaml(data, display_name)
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise ConfigError([f"{display_name}: the top level must be a mapping of settings"])
    problems = Problems(display_name)
    try:
        loaded = SettingsSchema().load(tree)
    except ValidationError as error:
        for where, message in flatten_errors(error.messages):
            problems.add(where, message)
        problems.raise_if_any()
    return {key: value for key, value in loaded.items() if value is not None}
