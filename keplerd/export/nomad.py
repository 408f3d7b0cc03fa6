"""Export a snapshot to one Nomad job in the JSON job format (``nomad job run -json``, ``/v1/jobs``).

One task group per service (``Count`` = replicas) holding the service's task; a
dependency awaited with ``service_completed_successfully`` that only this service
waits on becomes a ``prestart`` task of its group; hooks become lifecycle tasks.
The mapping, key by key, and the Nomad documentation it follows are in
docs/decisions.md ("Export").
"""

import json
import re

from ..units import signal_name
from . import common
from .nomad_checks import health_service
from .nomad_tasks import hook_tasks, restart_policy
from ..model import defaults
from .report import Result, edges_to, mebibytes, nanoseconds, replicas, resolved_argv

DEFAULT_CPU_MHZ = 100  # Nomad's defaults, written out: Kepler reserves nothing
DEFAULT_MEMORY_MB = 300
MIN_MEMORY_MB = 10
DEFAULT_DISK_MB = 300  # the group's EphemeralDisk, which must hold more than each task's logs
_INTERPOLATED = re.compile(r"\$\{[A-Za-z0-9_.-]+\}")


def export_nomad(snapshot, options):
    """Return the Result: ``<prefix>.nomad.json``, the job as ``{"Job": {...}}``."""
    result = Result()
    services = snapshot["services"]
    absorbed = prestart_dependencies(snapshot)
    groups = []
    for name in sorted(services):
        if name in absorbed:
            continue
        groups.append(GroupWriter(snapshot, name, absorbed, options, result).group())
    job = {"ID": options.prefix, "Name": options.prefix, "Type": "service", "Datacenters": ["*"],
           "TaskGroups": groups}
    common.check_global(result, snapshot, "Nomad")
    text = json.dumps({"Job": job}, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    result.files[f"{options.prefix}.nomad.json"] = text
    return result


def prestart_dependencies(snapshot):
    """Return ``{dependency: dependent}`` for the one-shots that fit as a dependent's prestart task.

    A dependency fits when its only dependent awaits it with
    ``service_completed_successfully`` and it has no dependencies, replicas or
    healthcheck of its own (a Nomad group cannot order tasks of other groups).
    """
    fits = {}
    for name, service in snapshot["services"].items():
        dependents = edges_to(snapshot, name)
        if len(dependents) != 1 or service.get("depends_on") or replicas(service) > 1 or service.get("healthcheck"):
            continue
        (dependent, edge), = dependents.items()
        if edge["condition"] == "service_completed_successfully":
            fits[name] = dependent
    return fits


class GroupWriter:
    """The task group of one service: its task, its prestart dependencies and hook tasks."""

    def __init__(self, snapshot, name, absorbed, options, result):
        self.snapshot = snapshot
        self.name = name
        self.service = snapshot["services"][name]
        self.absorbed = absorbed
        self.options = options
        self.result = result
        self.path = ["services", name]

    def group(self):
        tasks = [self._absorbed_task(dep) for dep, owner in sorted(self.absorbed.items()) if owner == self.name]
        self._dependencies()
        main = self.task(self.name, self.service, self.path)
        services, networks = health_service(self.result, self.path, self.name, self.service)
        if services:
            main["Services"] = services
        tasks.extend(hook_tasks(self, self.path, self.service))
        tasks.append(main)
        count = replicas(self.service)
        group = {"Name": self.name, "Count": count, "Tasks": tasks}
        self.result.map(self.path + ["replicas"])
        if count > 1:
            main["Env"]["KEPLER_REPLICAS"] = str(count)
            self.result.warn(self.path + ["replicas"], "each instance gets KEPLER_REPLICAS but no KEPLER_REPLICA "
                                                       "(Nomad's NOMAD_ALLOC_INDEX counts from 0)")
        if networks:
            group["Networks"] = networks
        logs = max((task["LogConfig"]["MaxFiles"] * task["LogConfig"]["MaxFileSizeMB"] for task in tasks
                    if "LogConfig" in task), default=0)
        if logs >= DEFAULT_DISK_MB:
            group["EphemeralDisk"] = {"SizeMB": logs + 1}
        if (self.service.get("restart") or {}).get("policy", "no") == "no":
            # A task that is not restarted must not come back through a reschedule either.
            group["ReschedulePolicy"] = {"Attempts": 0, "Unlimited": False}
        return group

    def task(self, name, service, path):
        """Return the Nomad task that runs *service* (a service, or one absorbed as prestart)."""
        common.check_unknown(self.result, path, service, common.SERVICE_KEYS)
        common.check_service_wait(self.result, path, service, "Nomad")
        task = {"Name": name, "Driver": self.options.driver,
                "Config": self.config(path, service["command"], service["working_dir"], service.get("env") or {})}
        task["Env"] = self.env(path, service.get("env") or {})
        user = self.user(path, service)
        if user:
            task["User"] = user
        task["Resources"] = self.resources(path, service.get("limits") or {})
        task["RestartPolicy"] = restart_policy(self.result, path, service)
        task["KillSignal"] = signal_name(service.get("stop_signal", 15))
        task["KillTimeout"] = nanoseconds(service.get("stop_grace_period", defaults.STOP_GRACE_PERIOD))
        self.result.map(path + ["stop_signal"], path + ["stop_grace_period"])
        self._logs(task, path, service.get("logs") or {})
        if service.get("notify"):
            self.result.warn(path + ["notify"], "no Nomad equivalent (the task counts as started at once), dropped")
        else:
            self.result.map(path + ["notify"])
        return task

    def config(self, path, argv, working_dir, env, inherited=False):
        """Return the driver's ``Config``: command, args, and the working dir where the driver has one."""
        argv = resolved_argv(argv, env, working_dir, self.options)
        self._interpolation(path + ["command"], argv)
        config = {"command": argv[0], "args": list(argv[1:])}
        self.result.map(path + ["command"])
        if self.options.driver == "raw_exec":
            config["work_dir"] = working_dir
            self.result.map(path + ["working_dir"])
        elif inherited:
            self.result.map(path + ["working_dir"])  # the service's: reported with the service
        else:
            self.result.warn(path + ["working_dir"], "the exec driver runs tasks in their chroot's task dir, dropped "
                                                     "(raw_exec has work_dir: --driver raw_exec)")
        if not argv[0].startswith("/"):
            self.result.warn(path + ["command"], f"{argv[0]!r} was not found here; Nomad runs a host "
                                                 "program by its absolute path only")
        return config

    def env(self, path, env):
        common.check_environment(self.result, path)
        for key, value in sorted(env.items()):
            self._interpolation(path + ["environment", key], [value])
        return dict(sorted(env.items()))

    def user(self, path, service, parent=None):
        """Return the task's User; a group (Nomad has none) is reported unless it is the *parent*'s."""
        user, group = service.get("user"), service.get("group")
        if user is not None and ":" in str(user):
            user, _, implied = str(user).partition(":")
            group = group if group is not None else implied
        self.result.map(path + ["user"])
        if group is not None and not (parent and parent.get("group") == group):
            self.result.warn(path + ["group"], "no Nomad equivalent (tasks run with the user's groups), dropped")
        else:
            self.result.map(path + ["group"])
        return None if user is None else str(user)

    def resources(self, path, limits):
        path = path + ["limits"]
        common.check_unknown(self.result, path, limits, common.LIMIT_KEYS)
        memory = limits.get("memory_max")
        resources = {"CPU": DEFAULT_CPU_MHZ, "MemoryMB": mebibytes(memory) if memory else DEFAULT_MEMORY_MB}
        self.result.map(path)
        if resources["MemoryMB"] < MIN_MEMORY_MB:
            resources["MemoryMB"] = MIN_MEMORY_MB
            self.result.warn(path + ["memory_max"], f"Nomad's minimum is {MIN_MEMORY_MB} MB; raised to it")
        else:
            self.result.map(path + ["memory_max"])
        reasons = {"memory": "RLIMIT_AS is not memory use", "cpu_time": "no rlimits", "max_fds": "no rlimits",
                   "cpus": "Nomad reserves CPU in MHz, not cores", "pids_max": "no process-count limit"}
        for key, reason in reasons.items():
            if limits.get(key) is not None:
                self.result.warn(path + [key], f"no Nomad equivalent ({reason}), dropped")
            else:
                self.result.map(path + [key])
        return resources

    def _logs(self, task, path, logs):
        path = path + ["logs"]
        if logs.get("max_size") is not None:
            # Kepler keeps the current file and one segment, each at most half of max_size.
            task["LogConfig"] = {"MaxFiles": 2, "MaxFileSizeMB": mebibytes(logs["max_size"] / 2)}
        common.check_logs(self.result, path, logs, "Nomad", bounded_by_target=True,
                          inherited=self.snapshot.get("kepler", {}).get("logs"))
        for stream in ("stdout", "stderr"):
            if (logs.get("store") or {}).get(stream) is False:
                self.result.warn(path + ["store", stream], "no Nomad equivalent (Nomad keeps task output), dropped")
            else:
                self.result.map(path + ["store", stream])

    def _dependencies(self):
        for dep, edge in sorted(self.service.get("depends_on", {}).items()):
            path = self.path + ["depends_on", dep]
            if self.absorbed.get(dep) != self.name:
                self.result.warn(path, f"{edge['condition']}: no Nomad equivalent between task groups, dropped")
                continue
            common.check_edge_extras(self.result, path, edge, "Nomad", self.snapshot["kepler"].get("timeout"))
            self.result.map(path, path + ["condition"])
            if edge.get("restart"):
                self.result.warn(path + ["restart"], "no Nomad equivalent for a prestart task, dropped")
            else:
                self.result.map(path + ["restart"])

    def _absorbed_task(self, dep):
        """Return the dependency *dep* as a prestart task that must exit 0 before this group's tasks start."""
        service = self.snapshot["services"][dep]
        path = ["services", dep]
        task = self.task(dep, service, path)
        task["Lifecycle"] = {"Hook": "prestart", "Sidecar": False}
        self.result.map(path + ["replicas"], path + ["healthcheck"], path + ["depends_on"])
        for hook in sorted(service.get("hooks") or {}):
            self.result.warn(path + ["hooks", hook], f"no Nomad equivalent for a hook of a prestart task "
                                                     f"(it runs in {self.name}'s group), dropped")
        return task

    def _interpolation(self, path, values):
        if any(_INTERPOLATED.search(value) for value in values):
            self.result.warn(path, "Nomad interpolates ${...} in this value when the task starts")
