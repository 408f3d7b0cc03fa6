"""Mappings both targets share: which keys a snapshot holds, and the losses both engines have.

Each ``check_*`` function records on the Result, for the keys it covers, that they
were mapped or why they were dropped; keys that a newer snapshot holds and no
exporter knows are reported too, so nothing is dropped silently.
"""

from .report import DEFERRED

# Keys of a baked service that an exporter reads (or that the bake folded into others).
SERVICE_KEYS = {
    "command", "working_dir", "depends_on", "environment", "env_file", "sys_env", "env", "restart",
    "healthcheck", "user", "group", "limits", "logs", "wait", "effective_wait", "stop_signal",
    "stop_grace_period", "hooks", "replicas", "notify",
}
RESTART_KEYS = {"policy", "watch", "backoff", "max_backoff", "max_retries", "on_unhealthy"}
LIMIT_KEYS = {"memory", "cpu_time", "max_fds", "memory_max", "cpus", "pids_max"}
HEALTH_KEYS = {"test", "http", "tcp", "interval", "timeout", "retries", "start_period"}
HOOK_KEYS = {"command", "run", "user", "group", "working_dir", "env", "limits", "timeout"}
EDGE_KEYS = {"condition", "timeout", "restart", "exit_code", "wait"}
RETENTION_DEFAULT = "retain"


def check_unknown(result, path, data, known):
    """Warn about each key of *data* that no exporter knows (a newer snapshot)."""
    for key in sorted(set(data) - known):
        if data[key] not in (None, False, [], {}):
            result.warn(path + [key], "not known to this exporter, dropped")


def check_environment(result, path):
    """The environment is final in the snapshot: `environment`, `env_file` and `sys_env` are in it."""
    result.map(path + ["env"], path + ["environment"], path + ["env_file"], path + ["sys_env"])


def check_logs(result, path, logs, target, bounded_by_target=False, inherited=None):
    """Warn about log settings that differ from SPEC §11's defaults: the engine keeps its own logs.

    *bounded_by_target*: the caller mapped ``max_size`` itself (Nomad's LogConfig).
    Settings equal to the *inherited* ones (``kepler.logs``) are reported there, once.
    """
    logs = dict(logs or {})
    inherited = inherited or {}
    for key in ("max_size", "buffer_size"):
        if key in inherited and logs.get(key) == inherited.get(key):
            logs.pop(key, None)
    retention = {key: value for key, value in (logs.get("retention") or {}).items()
                 if value != (inherited.get("retention") or {}).get(key)}
    logs["retention"] = retention
    if logs.get("max_size") is not None and not bounded_by_target:
        result.warn(path + ["max_size"], f"no {target} equivalent for a per-service log bound, dropped")
    else:
        result.map(path + ["max_size"])
    if logs.get("buffer_size"):
        result.warn(path + ["buffer_size"], f"no {target} equivalent, dropped (output is written as it comes)")
    else:
        result.map(path + ["buffer_size"])
    for key, value in sorted((logs.get("retention") or {}).items()):
        if value != RETENTION_DEFAULT:
            result.warn(path + ["retention", key], f"no {target} equivalent ({target} keeps logs), dropped")
        else:
            result.map(path + ["retention", key])


def check_global(result, snapshot, target):
    """Report the global settings: folded into services, or without equivalent."""
    kepler = snapshot.get("kepler", {})
    result.map(["kepler", "sys_env"], ["lua"])
    if kepler.get("timeout") is not None:
        result.warn(["kepler", "timeout"], f"no {target} equivalent (dependency waits have no timeout), dropped")
    check_logs(result, ["kepler", "logs"], kepler.get("logs"), target, bounded_by_target=target == "Nomad")
    # Each service's own store settings (which inherit these) are mapped or reported with the service.
    result.map(["kepler", "logs", "store", "stdout"], ["kepler", "logs", "store", "stderr"])
    for name in sorted(kepler.get("hooks") or {}):
        result.warn(["kepler", "hooks", name], f"no {target} equivalent for a global hook, dropped")


def check_edge_extras(result, path, edge, target, global_timeout=None):
    """Warn about the parts of a dependency edge no engine has: its timeout, its wait override.

    A timeout inherited from ``kepler.timeout`` is reported there, once.
    """
    if edge.get("timeout") is not None and edge.get("timeout") != global_timeout:
        result.warn(path + ["timeout"], f"no {target} equivalent (dependency waits have no timeout), dropped")
    if edge.get("wait") is not None:
        result.warn(path + ["wait"], f"no {target} equivalent (start-up membership), dropped")
    check_unknown(result, path, edge, EDGE_KEYS)


def deferred(edge):
    return edge["condition"] in DEFERRED


def check_service_wait(result, path, service, target):
    if service.get("wait") is not None:
        result.warn(path + ["wait"], f"no {target} equivalent (start-up membership), dropped")
    result.map(path + ["effective_wait"])
