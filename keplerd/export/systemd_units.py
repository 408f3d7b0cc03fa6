"""Lines of a systemd service unit that come from one part of a service: hooks, stop, limits."""

from ..units import signal_name
from ..model import defaults
from . import common
from .report import resolved_argv
from .systemd_syntax import exec_line, timespan

ENV_PROGRAM = "/usr/bin/env"
# Hook -> (directive, prefix). "-": a failing post_* hook is only logged (SPEC §9), as in Kepler.
PRE_HOOKS = {"pre_start": ("ExecStartPre", "")}
POST_HOOKS = {"post_start": ("ExecStartPost", "-"), "pre_stop": ("ExecStop", ""), "post_stop": ("ExecStopPost", "-")}
UNMAPPED_HOOKS = {
    "on_init": "ExecStartPre= would run it at every start, not once per bake",
    "pre_restart": "systemd runs no command around a restart",
    "post_restart": "systemd runs no command around a restart",
    "post_exit": "ExecStopPost= cannot tell an exit from a stop",
    "post_healthcheck_success": "systemd has no health checks",
    "post_healthcheck_fail": "systemd has no health checks",
}


def hook_lines(result, path, service, half, options):
    """Return the Exec*= lines of the service's hooks that run before (*half* ``pre``) or after the start."""
    hooks = service.get("hooks") or {}
    table = PRE_HOOKS if half == "pre" else POST_HOOKS
    lines = []
    for name, (directive, prefix) in table.items():
        if name in hooks:
            argv = hook_argv(result, path + ["hooks", name], hooks[name], service, options)
            lines.append(f"{directive}=" + exec_line(argv, prefix))
    return lines


def report_unmapped_hooks(result, path, service):
    """Warn about each hook of the service that no Exec*= line runs."""
    for name in sorted(service.get("hooks") or {}):
        if name in UNMAPPED_HOOKS:
            result.warn(path + ["hooks", name], f"no systemd equivalent ({UNMAPPED_HOOKS[name]}), dropped")
        elif name not in PRE_HOOKS and name not in POST_HOOKS:
            result.warn(path + ["hooks", name], "not known to this exporter, dropped")


def hook_argv(result, path, hook, service, options):
    """Return the argv that runs *hook* with its own variables (``env`` adds what the unit's lack)."""
    common.check_unknown(result, path, hook, common.HOOK_KEYS)
    result.map(path, path + ["run"], path + ["command"], path + ["environment"], path + ["env_file"],
               path + ["env"], path + ["limits"])
    for key in ("user", "group", "working_dir"):
        if hook.get(key) != service.get(key):
            result.warn(path + [key], f"no systemd equivalent (hooks run with the unit's {key}), dropped")
        else:
            result.map(path + [key])
    if hook.get("timeout") is not None:
        result.warn(path + ["timeout"], "no systemd equivalent for one command's timeout, dropped")
    else:
        result.map(path + ["timeout"])
    base = service.get("env") or {}
    env = hook.get("env") or {}
    argv = resolved_argv(hook["command"], env, hook.get("working_dir") or service["working_dir"], options)
    extra = {key: value for key, value in env.items() if base.get(key) != value}
    if not extra:
        return argv
    return [ENV_PROGRAM, *(f"{key}={value}" for key, value in sorted(extra.items())), *argv]


def stop_lines(result, path, service):
    """Return how the service stops: its signal to the main process, then SIGKILL to all after the grace."""
    result.map(path + ["stop_signal"], path + ["stop_grace_period"])
    return [
        f"KillSignal={signal_name(service.get('stop_signal', 15))}",
        "KillMode=mixed",
        f"TimeoutStopSec={timespan(service.get('stop_grace_period', defaults.STOP_GRACE_PERIOD))}",
    ]


def limit_lines(result, path, limits):
    """Return the rlimit and cgroup settings of the service's ``limits``."""
    path = path + ["limits"]
    common.check_unknown(result, path, limits, common.LIMIT_KEYS)
    result.map(path, *(path + [key] for key in common.LIMIT_KEYS))
    lines = []
    for key, directive in (("memory", "LimitAS"), ("cpu_time", "LimitCPU"), ("max_fds", "LimitNOFILE"),
                           ("memory_max", "MemoryMax"), ("pids_max", "TasksMax")):
        if limits.get(key) is not None:
            lines.append(f"{directive}={int(limits[key])}")
    if limits.get("cpus") is not None:
        lines.append(f"CPUQuota={limits['cpus'] * 100:g}%")
    return lines
