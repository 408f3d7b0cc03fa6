"""The config schema (SPEC §2), as marshmallow schemas: one source of truth.

Every schema rejects unknown keys. Fields carry ``metadata["description"]`` so the
man page can be checked against them. A key left empty in YAML (``depends_on:``)
is the same as an absent key, except for required keys.

Loading a service gives plain data close to the snapshot: durations in seconds,
sizes in bytes, signals as numbers, unions normalised (``depends_on`` always a
map of edges, ``restart`` always an object, ``environment`` always a map,
``logs.store`` always ``{stdout?, stderr?}``). Defaults are filled later, when the
snapshot is built, because log settings merge field by field.
"""

import difflib
import re
from collections.abc import Mapping

from marshmallow import RAISE, Schema, ValidationError, validates_schema
from marshmallow import fields as ma

from ..model import endpoints
from ..model.graph import CONDITIONS, EXIT_CODE_CONDITIONS
from . import fields

SERVICE_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
# The longest file named after a service, <name>.post_healthcheck_success.stderr.log.1,
# adds 38 characters: 128 keeps every derived name far below NAME_MAX (255).
MAX_SERVICE_NAME = 128
RESERVED_NAMES = ("global",)
_COMMON_HOOKS = ("on_init", "pre_start", "post_start", "pre_stop", "post_stop", "pre_restart", "post_restart")
GLOBAL_HOOKS = _COMMON_HOOKS + ("pre_cleanup",)
SERVICE_HOOKS = _COMMON_HOOKS + ("post_exit", "post_healthcheck_success", "post_healthcheck_fail")
RESTART_POLICIES = ("no", "always", "on-failure")
SYS_ENV_POLICIES = ("clear", "inherit")
RETENTION = ("retain", "clear")


def _doc(text):
    return {"description": text}


class StrictSchema(Schema):
    """Base schema: unknown keys are errors (with a suggestion), empty optional keys are unset."""

    class Meta:
        unknown = RAISE

    error_messages = {"unknown": "unknown key", "type": "must be a mapping"}

    def load(self, data, **kwargs):
        """Refuse anything but a mapping before any field or validator looks inside it."""
        if not isinstance(data, Mapping):
            raise ValidationError(self.error_messages["type"])
        return super().load(data, **kwargs)

    def on_bind_field(self, field_name, field_obj):
        if not field_obj.required:
            field_obj.allow_none = True

    def handle_error(self, error, data, *, many, **kwargs):
        """Suggest the closest known key for each unknown one."""
        if not isinstance(error.messages, dict):
            return
        known = list(self.load_fields)
        for key, messages in error.messages.items():
            if messages == [self.error_messages["unknown"]]:
                close = difflib.get_close_matches(str(key), known, n=1)
                if close:
                    messages[0] = f"unknown key (did you mean '{close[0]}'?)"


class HookSchema(StrictSchema):
    run = ma.String(metadata=_doc("Shell text, run with /bin/sh -c (never expanded by Kepler)."))
    command = fields.Argv(metadata=_doc("argv, executed directly (never expanded by Kepler)."))
    user = fields.Text(metadata=_doc("User to run as; service hooks default to the service's user."))
    group = fields.Text(metadata=_doc("Group to run as; inherited only when `user` is not set."))
    working_dir = ma.String(metadata=_doc("Working directory; default: the service's, or the config dir."))
    environment = fields.Environment(metadata=_doc("Variables added to the inherited environment."))
    env_file = ma.String(metadata=_doc("Dotenv file whose variables are added before `environment`."))
    timeout = fields.Duration(metadata=_doc("Kill the hook (a failure) after this long; default none."))

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _run_xor_command(self, data, original, **kwargs):
        has_run, has_command = original.get("run") is not None, original.get("command") is not None
        if has_run and has_command:
            raise ValidationError("a hook takes `run` or `command`, not both")
        if not has_run and not has_command:
            raise ValidationError("a hook needs `run` or `command`")


def _hooks_schema(names, where):
    return StrictSchema.from_dict(
        {name: ma.Nested(HookSchema, metadata=_doc(f"The {name} hook of the {where}.")) for name in names},
        name=f"{where.title()}HooksSchema",
    )


GlobalHooksSchema = _hooks_schema(GLOBAL_HOOKS, "config")
ServiceHooksSchema = _hooks_schema(SERVICE_HOOKS, "service")


class RetentionSchema(StrictSchema):
    on_start = fields.Choice(RETENTION, metadata=_doc("Logs on start; default retain."))
    on_stop = fields.Choice(RETENTION, metadata=_doc("Logs on a user stop; default retain."))
    on_restart = fields.Choice(RETENTION, metadata=_doc("Logs on restart; default retain."))
    on_exit = fields.Choice(RETENTION, metadata=_doc("Logs when it exits by itself; default retain."))


class StoreSchema(StrictSchema):
    stdout = fields.Bool(metadata=_doc("Store stdout; default true."))
    stderr = fields.Bool(metadata=_doc("Store stderr; default true."))


def _store_short(value):
    if not isinstance(value, bool):
        raise ValidationError("must be a boolean or {stdout: bool, stderr: bool}")
    return {"stdout": value, "stderr": value}


class LogsSchema(StrictSchema):
    max_size = fields.Size(metadata=_doc("Disk bound per stream (file + one segment); default none."))
    buffer_size = fields.Size(metadata=_doc("Bytes buffered before a write; default 0 (write at once)."))
    store = fields.OneOrSchema(StoreSchema, _store_short, metadata=_doc("Streams stored; default both."))
    retention = ma.Nested(RetentionSchema, metadata=_doc("When logs are cleared."))


class LimitsSchema(StrictSchema):
    memory = fields.Size(metadata=_doc("RLIMIT_AS in bytes."))
    cpu_time = fields.CpuTime(metadata=_doc("RLIMIT_CPU, a duration rounded up to seconds."))
    max_fds = fields.Count(metadata=_doc("RLIMIT_NOFILE."))
    memory_max = fields.Size(metadata=_doc("cgroup memory.max of the service's cgroup, in bytes."))
    cpus = fields.Cpus(metadata=_doc("cgroup cpu.max: CPUs the service's cgroup may use (0.5, 2)."))
    pids_max = fields.Count(minimum=1, metadata=_doc("cgroup pids.max: processes in the service's cgroup."))


class HealthcheckSchema(StrictSchema):
    test = ma.Raw(metadata=_doc("Probe argv; Docker's CMD, CMD-SHELL, NONE and string forms accepted."))
    http = ma.String(metadata=_doc("URL the daemon GETs itself; a 2xx/3xx answer passes."))
    tcp = ma.String(metadata=_doc("HOST:PORT the daemon connects to itself; an open connection passes."))
    interval = fields.Duration(metadata=_doc("From the end of one probe to the next; default 30s."))
    timeout = fields.Duration(metadata=_doc("A longer probe is killed and fails; default 30s."))
    retries = fields.Count(minimum=1, metadata=_doc("Consecutive failures before unhealthy; default 3."))
    start_period = fields.Duration(metadata=_doc("Delay of the first probe after spawn; default 0s."))
    disable = fields.Bool(metadata=_doc("true disables the check."))

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _test_form(self, data, original, **kwargs):
        if data.get("disable"):
            return
        given = [key for key in ("test", "http", "tcp") if original.get(key) is not None]
        if len(given) != 1:
            raise ValidationError("needs exactly one of `test`, `http` and `tcp`"
                                  + (f" (got {', '.join(given)})" if given else ""))
        if given[0] != "test":
            _check_endpoint(given[0], original[given[0]])
            return
        test = original["test"]
        if isinstance(test, str) and test.strip():
            return
        if not isinstance(test, list) or not test or not all(isinstance(item, str) for item in test):
            raise ValidationError("must be a non-empty list of strings or a string", "test")
        if test[0] == "CMD" and len(test) < 2 or test[0] == "CMD-SHELL" and len(test) != 2:
            raise ValidationError(f"invalid {test[0]} form: {test!r}", "test")


def _check_endpoint(kind, value):
    """Raise a ValidationError (on *kind*) unless the daemon can probe *value* without DNS."""
    try:
        endpoint = endpoints.parse_http(value) if kind == "http" else endpoints.parse_tcp(value)
    except endpoints.EndpointError as error:
        raise ValidationError(str(error), kind) from None
    problem = endpoints.unresolvable(endpoint.host, _hosts_table())
    if problem:
        raise ValidationError(problem, kind)


def _hosts_table():
    try:
        with open(endpoints.HOSTS_FILE, encoding="utf-8", errors="replace") as file:
            return endpoints.hosts_table(file.read())
    except OSError:
        return {}


class RestartSchema(StrictSchema):
    policy = fields.Choice(RESTART_POLICIES, metadata=_doc("no, always or on-failure; default no."))
    watch = fields.StringList(metadata=_doc("Globs, relative to working_dir, whose changes restart."))
    backoff = fields.Duration(metadata=_doc("First crash-loop delay; default 100ms; 0 disables back-off."))
    max_backoff = fields.Duration(metadata=_doc("Longest crash-loop delay; default 30s."))
    max_retries = fields.Count(metadata=_doc("Quick failures in a row before giving up; default unlimited."))
    on_unhealthy = fields.Bool(metadata=_doc("Restart the service when it becomes unhealthy; default false."))

    @validates_schema
    def _watch_needs_policy(self, data, **kwargs):
        for key in ("watch", "on_unhealthy"):
            if data.get(key) and (data.get("policy") or "no") == "no":
                raise ValidationError("not allowed with policy 'no' (set policy: always or on-failure)", key)


def _restart_short(value):
    return {"policy": fields.Choice(RESTART_POLICIES).deserialize(value)}


class EdgeSchema(StrictSchema):
    condition = fields.Choice(CONDITIONS, metadata=_doc("What the dependency must reach."))
    timeout = fields.Duration(metadata=_doc("Longest wait; default kepler.timeout, else none."))
    restart = fields.Bool(metadata=_doc("Restart this service when the dependency restarts; default false."))
    exit_code = fields.ExitCodes(metadata=_doc("Codes and `lo:hi` ranges that count."))
    wait = fields.Bool(metadata=_doc("Override whether this edge is part of startup."))

    @validates_schema
    def _exit_code_condition(self, data, **kwargs):
        condition = data.get("condition") or "service_started"
        if data.get("exit_code") is not None and condition not in EXIT_CODE_CONDITIONS:
            raise ValidationError(f"only applies to {' and '.join(EXIT_CODE_CONDITIONS)}", "exit_code")


class DependsOn(ma.Field):
    """``[name, ...]`` or ``{name: edge}``, as ``{name: edge}``."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, list):
            value = _names_to_edges(value)
        if not isinstance(value, dict):
            raise ValidationError("must be a list of service names or a mapping of name to options")
        edges, errors = {}, {}
        for name, edge in value.items():
            try:
                edges[name] = EdgeSchema().load(edge or {})
            except ValidationError as error:
                errors[name] = error.messages
        if errors:
            raise ValidationError(errors)
        return edges


def _names_to_edges(names):
    errors = {index: ["Not a valid string."] for index, name in enumerate(names) if not isinstance(name, str)}
    errors.update({index: [f"duplicate dependency '{name}'"] for index, name in enumerate(names)
                   if isinstance(name, str) and name in names[:index]})
    if errors:
        raise ValidationError(errors)
    return {name: {} for name in names}


class ServiceSchema(StrictSchema):
    command = fields.Argv(required=True, metadata=_doc("argv, executed directly; never expanded."))
    working_dir = ma.String(metadata=_doc("Working directory; default and base: the config dir."))
    depends_on = DependsOn(metadata=_doc("Services this one depends on (list, or map of edges)."))
    environment = fields.Environment(metadata=_doc("KEY=value entries (or a map); highest priority."))
    env_file = ma.String(metadata=_doc("Dotenv file, relative to the config dir."))
    sys_env = fields.Choice(SYS_ENV_POLICIES, metadata=_doc("clear or inherit the CLI's environment."))
    restart = fields.OneOrSchema(RestartSchema, _restart_short, metadata=_doc("Restart policy or object."))
    healthcheck = ma.Nested(HealthcheckSchema, metadata=_doc("Health probe."))
    hooks = ma.Nested(ServiceHooksSchema, metadata=_doc("Service hooks."))
    user = fields.Text(metadata=_doc("name, uid or uid:gid; default root for root's configs, else the caller."))
    group = fields.Text(metadata=_doc("Group name or gid; default the user's primary group."))
    limits = ma.Nested(LimitsSchema, metadata=_doc("rlimits."))
    logs = ma.Nested(LogsSchema, metadata=_doc("Log settings, merged over kepler.logs."))
    wait = fields.Bool(metadata=_doc("Override startup/deferred membership."))
    stop_signal = fields.Signal(metadata=_doc("Signal sent on stop; default SIGTERM."))
    stop_grace_period = fields.Duration(metadata=_doc("Stop signal to SIGKILL; default 10s."))
    notify = fields.Bool(metadata=_doc("Speak the sd_notify protocol: starting until READY=1."))

    @validates_schema
    def _on_unhealthy_needs_a_check(self, data, **kwargs):
        restart, check = data.get("restart") or {}, data.get("healthcheck") or {}
        if restart.get("on_unhealthy") and (not check or check.get("disable") or check.get("test") == ["NONE"]):
            raise ValidationError({"restart": {"on_unhealthy": ["needs a healthcheck"]}})
    replicas = fields.Count(minimum=1, metadata=_doc("Number of instances (web.1 … web.N); default 1."))


class KeplerSchema(StrictSchema):
    sys_env = fields.Choice(SYS_ENV_POLICIES, metadata=_doc("Default env policy of services; default clear."))
    timeout = fields.Duration(metadata=_doc("Default timeout of dependency waits; default none."))
    logs = ma.Nested(LogsSchema, metadata=_doc("Default log settings."))
    hooks = ma.Nested(GlobalHooksSchema, metadata=_doc("Global hooks."))


class TopSchema(StrictSchema):
    """The top-level keys; `kepler` is validated with KeplerSchema, each service with ServiceSchema."""

    kepler = ma.Raw(metadata=_doc("Global settings (KeplerSchema)."))
    lua = ma.Raw(metadata=_doc("Global Lua code, run first at bake time."))
    services = ma.Raw(required=True, metadata=_doc("The services, by name."))


def service_name_problem(name):
    """Return why *name* cannot name a service, or None."""
    if name in RESERVED_NAMES:
        return f"'{name}' is a reserved name"
    if len(name) > MAX_SERVICE_NAME:
        return f"service name of {len(name)} characters: at most {MAX_SERVICE_NAME}"
    if not SERVICE_NAME.match(name):
        return f"invalid service name '{name}': use letters, digits, '_' and '-'"
    return None
