"""Nomad task parts: the restart policy, and hooks as lifecycle tasks of the service's group."""

from . import common
from .report import QUICK_RUN, nanoseconds

UNLIMITED_ATTEMPTS = 10  # restarts per interval when Kepler would retry forever (Mode "delay" waits, never fails)
# Kepler hook -> Nomad lifecycle hook (Nomad: prestart tasks start in parallel, before the main task).
LIFECYCLE = {"on_init": "prestart", "pre_start": "prestart", "post_start": "poststart", "post_stop": "poststop"}
UNMAPPED = {
    "pre_stop": "Nomad runs no task before it stops the main task",
    "pre_restart": "Nomad runs no task around a restart",
    "post_restart": "Nomad runs no task around a restart",
    "post_exit": "a poststop task cannot tell an exit from a stop",
    "post_healthcheck_success": "Nomad runs no task on a check transition",
    "post_healthcheck_fail": "Nomad runs no task on a check transition",
}


def restart_policy(result, path, service):
    """Return the task's ``RestartPolicy`` for the service's ``restart`` (Nomad restarts on any exit)."""
    restart = service.get("restart") or {}
    path = path + ["restart"]
    common.check_unknown(result, path, restart, common.RESTART_KEYS)
    policy = restart.get("policy", "no")
    result.map(path, path + ["policy"], path + ["backoff"], path + ["max_retries"])
    if restart.get("watch"):
        result.warn(path + ["watch"], "no Nomad equivalent, dropped")
    if policy == "no":
        result.map(path + ["max_backoff"])
        return {"Attempts": 0, "Interval": nanoseconds(QUICK_RUN), "Delay": 0, "Mode": "fail"}
    if policy == "on-failure":
        result.warn(path + ["policy"], "on-failure: a Nomad service task is restarted after exit 0 too")
    backoff, max_backoff = restart.get("backoff", 0.1), restart.get("max_backoff", 30.0)
    if backoff and max_backoff > backoff:
        result.warn(path + ["max_backoff"], "no Nomad equivalent (Nomad waits the same Delay before every "
                                            "restart), dropped")
    else:
        result.map(path + ["max_backoff"])
    retries = restart.get("max_retries")
    attempts = UNLIMITED_ATTEMPTS if retries is None else retries
    # `attempts` quick failures span at most attempts x (a quick run + the longest wait); Nomad
    # requires Attempts x Delay <= Interval, and Interval >= 5 s.
    window = max(attempts, 1) * (QUICK_RUN + max(backoff, max_backoff))
    return {"Attempts": attempts, "Interval": nanoseconds(window),
            "Delay": nanoseconds(backoff), "Mode": "delay" if retries is None else "fail"}


def hook_tasks(writer, path, service):
    """Return a lifecycle task per hook that has a Nomad equivalent; warn about the others."""
    tasks = []
    for name, hook in sorted((service.get("hooks") or {}).items()):
        hook_path = path + ["hooks", name]
        if name not in LIFECYCLE:
            reason = UNMAPPED.get(name, "not known to this exporter")
            writer.result.warn(hook_path, f"no Nomad equivalent ({reason}), dropped")
            continue
        tasks.append(_hook_task(writer, hook_path, f"{writer.name}-{name.replace('_', '-')}", hook, LIFECYCLE[name]))
    return tasks


def _hook_task(writer, path, task_name, hook, lifecycle):
    result = writer.result
    common.check_unknown(result, path, hook, common.HOOK_KEYS)
    result.map(path, path + ["run"], path + ["environment"], path + ["env_file"], path + ["env"],
               path + ["limits"])
    task = {"Name": task_name, "Driver": writer.options.driver,
            "Config": writer.config(path, hook["command"], hook["working_dir"], hook.get("env") or {},
                                    inherited=hook["working_dir"] == writer.service["working_dir"]),
            "Env": writer.env(path, hook.get("env") or {}),
            "Lifecycle": {"Hook": lifecycle, "Sidecar": False},
            # A failing pre_* hook aborts the start, as in Kepler: never retried.
            "RestartPolicy": {"Attempts": 0, "Interval": nanoseconds(QUICK_RUN), "Delay": 0, "Mode": "fail"}}
    user = writer.user(path, hook, parent=writer.service)
    if user:
        task["User"] = user
    if hook.get("timeout") is not None:
        result.warn(path + ["timeout"], "no Nomad equivalent for a task's run time, dropped")
    else:
        result.map(path + ["timeout"])
    return task
