"""Build the snapshot (the daemon's only view of a config) from validated data.

Fills every default, so the daemon never needs to know one: environments are
final (SPEC §4), hooks carry what they inherit (SPEC §9), log settings are merged
field by field (service over ``kepler.logs`` over the defaults of SPEC §11). An
empty key (``max_size:``) counts as unset, so it inherits rather than resets.
Decisions: a hook that sets ``user`` does not inherit the service's ``group``
(it would belong to another user); relative hook ``working_dir`` values, like all
relative paths of a config, are relative to the config dir.
"""

import copy

from ..model import defaults
from ..model.graph import effective_wait, topological_order

FORMAT = 1
SHELL = "/bin/sh"
LOG_DEFAULTS = defaults.LOG_DEFAULTS
NO_LIMITS = {"memory": None, "cpu_time": None, "max_fds": None, "memory_max": None, "cpus": None, "pids_max": None}
RESTART_DEFAULTS = {"policy": "no", "watch": [], "backoff": 0.1, "max_backoff": 30.0, "max_retries": None,
                    "on_unhealthy": False}
HEALTH_DEFAULTS = {"interval": 30.0, "timeout": 30.0, "retries": 3, "start_period": 0.0}


def _set(mapping):
    """Return the entries of a validated mapping that are set (not None)."""
    return {key: value for key, value in (mapping or {}).items() if value is not None}


def merge_logs(*layers):
    """Return the log settings of the defaults overridden by each validated layer in turn."""
    logs = copy.deepcopy(LOG_DEFAULTS)
    for layer in layers:
        layer = _set(layer)
        for key in ("max_size", "buffer_size"):
            if key in layer:
                logs[key] = layer[key]
        for key in ("store", "retention"):
            logs[key].update(_set(layer.get(key)))
    return logs


def healthcheck(data):
    """Return the snapshot form of a validated ``healthcheck`` (None when absent or disabled)."""
    data = _set(data)
    test = data.get("test")
    if not data or data.get("disable") or test == ["NONE"]:
        return None
    timing = {**HEALTH_DEFAULTS, **{key: data[key] for key in HEALTH_DEFAULTS if key in data}}
    if test is None:  # the daemon probes http or tcp itself (SPEC §18)
        return {"test": None, "http": data.get("http"), "tcp": data.get("tcp"), **timing}
    if isinstance(test, str):
        argv = [SHELL, "-c", test]
    elif test[0] == "CMD":
        argv = list(test[1:])
    elif test[0] == "CMD-SHELL":
        argv = [SHELL, "-c", test[1]]
    else:
        argv = list(test)
    return {"test": argv, "http": None, "tcp": None, **timing}


class SnapshotBuilder:
    """Turn validated settings and services into the snapshot dict."""

    def __init__(self, env_files, sys_env, config_dir, default_stop_grace_period=defaults.STOP_GRACE_PERIOD,
                 default_user=None):
        self.env_files = env_files
        self.default_user = default_user  # a non-root caller's uid: what runs without `user` (SPEC §21)
        self.sys_env = dict(sys_env)
        self.config_dir = config_dir
        self.default_stop_grace_period = default_stop_grace_period

    def build(self, kepler, services, header):
        """Return the snapshot: *header* (paths, names, env) plus the baked config."""
        kepler = _set(kepler)
        settings = {
            "sys_env": kepler.get("sys_env", "clear"),
            "timeout": kepler.get("timeout"),
            "logs": merge_logs(kepler.get("logs")),
        }
        global_base = {
            "user": self.default_user, "group": None, "working_dir": self.config_dir, "env": {},
            "limits": NO_LIMITS,
        }
        settings["hooks"] = self._hooks(kepler.get("hooks"), global_base)
        baked = {name: self._service(data, kepler, settings) for name, data in services.items()}
        for name, wait in effective_wait(baked).items():
            baked[name]["effective_wait"] = wait
        edges = {name: service["depends_on"] for name, service in baked.items()}
        return {
            "format": FORMAT, **header, "kepler": settings, "services": baked,
            "start_order": topological_order(baked, edges),
        }

    def _service(self, data, kepler, settings):
        data = _set(data)
        env_file = data.get("env_file")
        sys_env = data.get("sys_env", settings["sys_env"])
        environment = dict(data.get("environment", {}))
        inherited = self.sys_env if sys_env == "inherit" else {}
        env = {**inherited, **self._env_file_vars(env_file), **environment}
        edges = data.get("depends_on", {})
        service = {
            "command": data["command"],
            "working_dir": data.get("working_dir", self.config_dir),
            "depends_on": {dep: self._edge(edge, settings) for dep, edge in edges.items()},
            "environment": environment,
            "env_file": env_file,
            "sys_env": sys_env,
            "env": env,
            "restart": {**RESTART_DEFAULTS, **_set(data.get("restart"))},
            "healthcheck": healthcheck(data.get("healthcheck")),
            "user": data.get("user", self.default_user),
            "group": data.get("group"),
            "limits": {**NO_LIMITS, **_set(data.get("limits"))},
            "logs": merge_logs(kepler.get("logs"), data.get("logs")),
            "wait": data.get("wait"),
            "effective_wait": True,
            "stop_signal": data.get("stop_signal", 15),
            "replicas": data.get("replicas", 1),
            "stop_grace_period": data.get("stop_grace_period", self.default_stop_grace_period),
            "notify": data.get("notify", False),
        }
        service["hooks"] = self._hooks(data.get("hooks"), service)
        return service

    def _edge(self, edge, settings):
        edge = _set(edge)
        return {
            "condition": edge.get("condition", "service_started"),
            "timeout": edge.get("timeout", settings["timeout"]),
            "restart": edge.get("restart", False),
            "exit_code": edge.get("exit_code"),
            "wait": edge.get("wait"),
        }

    def _hooks(self, hooks, base):
        return {name: self._hook(hook, base) for name, hook in _set(hooks).items()}

    def _hook(self, data, base):
        """Return a hook that inherits from *base* (its service, or the global defaults)."""
        data = _set(data)
        run = data.get("run")
        user = data.get("user", base["user"])
        group = data.get("group", base["group"] if "user" not in data else None)
        env = {**base["env"], **self._env_file_vars(data.get("env_file")), **data.get("environment", {})}
        return {
            "command": [SHELL, "-c", run] if run is not None else data["command"],
            "run": run,
            "user": user,
            "group": group,
            "working_dir": data.get("working_dir", base["working_dir"]),
            "env": env,
            "limits": dict(base["limits"]),
            "timeout": data.get("timeout"),
        }

    def _env_file_vars(self, path):
        return dict(self.env_files.variables.get(path, {})) if path else {}
