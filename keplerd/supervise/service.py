"""One service's supervisor: wait for dependencies, run hooks, spawn, watch, restart, stop.

Each started service has one supervisor greenlet, which owns the child's exit: it
alone waits on the process and decides what happens next. ``stop`` asks for the
end and waits for the supervisor to see it. While a process simply runs (no probe,
no notify socket), the supervisor is parked: a greenlet not yet started, which the
process's exit starts (``service_run.py``, ``_park``).

``Service`` is written in four parts, each a module: this one holds its state and
the commands others call (start, stop, signal, rename, redefine) and what happens
when a greenlet it relies on crashes; ``service_run.py`` what the supervisor greenlet
does (dependencies, hooks, spawn, wait, restart policy); ``run_health.py`` how a
run comes up and stays healthy; ``service_handover.py`` the hand-over across a
``daemon reexec``.
"""

import logging
import time

from gevent.event import Event

from keplerd.model import actions, states
from keplerd.model.states import DESIRED_DOWN, DESIRED_UP
from keplerd.supervise.run_health import HealthAndReadiness
from keplerd.supervise.service_exec import OneOffs
from keplerd.supervise.service_handover import HandOver
from keplerd.supervise.service_run import RunAndRestart
from keplerd.supervise.service_watch import ServiceWatch

log = logging.getLogger("keplerd.service")

_PERSISTED = ("desired", "exit_code", "signal", "since", "restarts", "reason", "gave_up", "on_init_done",
              "restart_reason", "retries")


class HelperCrashed(Exception):
    """A greenlet the supervisor relies on died of a bug; the message says which and why."""


class Service(RunAndRestart, HandOver, HealthAndReadiness):
    """The runtime of one service of a loaded config.

    *project* is the owning ``Project``: it spawns greenlets, persists state,
    publishes events, holds the log writers and knows the other services.
    """

    # A thousand services each carry these: slots keep them in 8 bytes apiece, where an
    # instance dict past 30 keys costs ~1.6 KiB per service (issue #25, S7).
    __slots__ = ("name", "base", "index", "base_spec", "spec", "project", "system", "status", "desired", "pid",
                 "create_time", "exit_code", "signal", "since", "started_at", "restarts", "restart_reason",
                 "reason", "gave_up", "retries", "backoff_until", "on_init_done", "waiting_on", "reached_up",
                 "was_healthy", "health_failures", "last_probe", "bad_exits", "status_text", "log", "mark", "one_offs",
                 "watch_error", "_watch", "_child", "_pumps", "_notify", "_awaiting_ready", "_started", "_backoff",
                 "_wait_on", "_supervisor", "_stop_requested", "_next_spec", "_in_post_start", "_unhealthy", "_ready",
                 "_overdue", "_overdue_changed", "_helpers", "_idle")

    def __init__(self, name, spec, project, base=None, index=1):
        self.name = name
        self.base = base or name     # the service of the config this is an instance of (SPEC §17)
        self.index = index           # its instance number, 1 … replicas
        self.base_spec = spec        # as baked; ``spec`` adds the instance's KEPLER_REPLICA variables
        self.spec = spec
        self.project = project
        self.system = project.system   # the OS seam: spawns, signals, probes (supervise/system.py)
        self.status = states.STOPPED
        self.desired = DESIRED_DOWN
        self.pid = self.create_time = self.exit_code = self.signal = None
        self.since = time.time()
        self.started_at = None
        self.restarts = 0
        self.restart_reason = None   # why the last restart happened: user, watch, dependency, policy
        self.reason = None
        self.gave_up = False
        self.retries = 0             # consecutive quick failures restarted by the policy (SPEC §10)
        self.backoff_until = None    # epoch seconds the back-off ends, while one runs
        self.on_init_done = False
        self.waiting_on = None
        self.reached_up = False      # the current run got through spawn and post_start
        self.was_healthy = False     # ... and that process passed a probe
        self.health_failures = 0
        self.last_probe = None
        self.bad_exits = 0           # runs that ended non-zero or by a signal not from a stop: `--wait` fails on
                                     # one even if a restart follows
        self.status_text = None      # the last STATUS= of a notify service
        self.log = project.logs.writer(name, spec.get("logs"))
        # The stray mark of the current run's processes (osproc/strays.py): set at each spawn, kept by a rename.
        self.mark = project.system.service_mark(project.id, name)
        self.one_offs = OneOffs(self)  # the commands exec'd as this instance (``keplerctl exec``)
        self.watch_error = None
        self._watch = ServiceWatch(self)
        self._child = None
        self._pumps = ()             # the running child's output pumps
        self._notify = None          # the running child's NOTIFY_SOCKET (notify services)
        self._awaiting_ready = None  # while a notify run awaits READY=1: the hooks that follow it
        self._started = None         # when the running child started (monotonic)
        self._backoff = None         # the supervisor's crash-loop back-off
        self._wait_on = None         # the dependencies the supervisor awaits (None: all)
        self._supervisor = None
        self._stop_requested = False
        self._next_spec = None  # a definition stored by apply while this one ran
        self._in_post_start = False  # the supervisor runs post_start (post_restart): a stop kills it
        self._unhealthy = Event()    # set by a health verdict when restart.on_unhealthy ends the run
        self._ready = Event()        # READY=1 of this run (notify services)
        self._overdue = None         # the --wait timeout that a notify service missed, when it did
        self._overdue_changed = Event()
        self._helpers = None         # the greenlets of runs (health monitor, notify listener): a Group once needed
        self._idle = Event()
        self._idle.set()

    # -- state -----------------------------------------------------------------------

    def runtime(self):
        """Return the runtime state as stored in ``state.json`` and shown by ps/inspect."""
        return {
            "status": self.status, "desired": self.desired, "pid": self.pid, "create_time": self.create_time,
            "exit_code": self.exit_code, "signal": self.signal, "since": self.since,
            "started_at": self.started_at, "restarts": self.restarts, "reason": self.reason,
            "gave_up": self.gave_up, "retries": self.retries, "backoff_until": self.backoff_until,
            "on_init_done": self.on_init_done, "waiting_on": self.waiting_on,
            "health": self._health(), "health_failures": self.health_failures, "last_probe": self.last_probe,
            "restart_reason": self.restart_reason, "watch_error": self.watch_error, "status_text": self.status_text,
            "watched_dirs": self._watch.watched,
        }

    def _health(self):
        if not self.spec.get("healthcheck") or self.status not in states.UP:
            return None
        return self.status if self.status != states.RUNNING else "starting"

    def restore(self, saved):
        """Take back the state a previous daemon recorded; no process belongs to us yet."""
        for key in _PERSISTED:
            if key in saved:
                setattr(self, key, saved[key])
        status = saved.get("status", states.STOPPED)
        self.status = status if status in states.TERMINAL else states.STOPPED

    def _set_state(self, status, **changes):
        states.check_transition(self.status, status)
        previous = self.status
        if status != previous:
            log.info("%s/%s: %s -> %s%s", self.project.name, self.name, self.status, status,
                     f" ({changes['reason']})" if changes.get("reason") else "")
        self.status = status
        self.since = time.time()
        for key, value in changes.items():
            setattr(self, key, value)
        self.project.service_changed(self)
        if status != previous:
            self.project.record(self.name, "state", **{"from": previous, "to": status, "reason": self.reason,
                                                       "exit_code": self.exit_code, "signal": self.signal})

    def _note(self, **changes):
        """Record runtime details that are not a state change (and tell watchers)."""
        for key, value in changes.items():
            setattr(self, key, value)
        self.project.service_changed(self)

    @property
    def watch_armed(self):
        return self._watch.armed

    def disarm_watch(self):
        """Stop watching the service's files (a stop, or the config's unloading)."""
        self._watch.disarm()

    def set_watch_error(self, message):
        """Record why the file watch cannot fully work (None: it works again); ``inspect`` shows it."""
        if message != self.watch_error:
            self._note(watch_error=message)

    def note_restart(self, reason):
        """Record why the service restarts (``inspect`` shows it) and count it if it counts."""
        self._note(**self._restart_record(reason))
        self.project.record(self.name, "restart", reason=reason, restarts=self.restarts)

    def _restart_record(self, reason):
        """Return the changes a restart for *reason* makes: ``restart_reason`` and ``restarts``."""
        return {"restart_reason": reason, "restarts": self.restarts + actions.counted(reason)}

    def redefine(self, spec):
        """Take a new baked definition (``apply``): now when not running, else at the next start.

        Its logs go on in the same files, with the new definition's settings.
        """
        if self.supervised:
            self._next_spec = spec
            return
        self._next_spec = None
        self.base_spec = self.spec = spec
        self.project.logs.forget(self.name)
        self.log = self.project.logs.writer(self.name, spec.get("logs"))

    def rename(self, name):
        """Become instance *name*: its service's count crossed 1 (``web`` ↔ ``web.1``, SPEC §17).

        The process goes on untouched; its logs (rotated and hook logs too) and its
        cgroup take the new name. Its processes keep the stray mark and the
        ``KEPLER_REPLICA`` variables they started with (a running process's
        environment cannot change): ``_end_strays`` finds them by that mark.
        """
        old, self.name = self.name, name
        self.project.logs.rename(old, name)
        if self._child is not None:
            self.system.rename_cgroup(self._child, name, self.spec.get("limits"))
        log.info("%s: %s is now %s (pid %s kept)", self.project.name, old, name, self.pid)

    def take_equal_definition(self, spec):
        """Take *spec*, equal to the current one in all the process sees (``apply``), at once.

        A running instance keeps the environment its run started with (its
        ``KEPLER_REPLICAS`` of that moment): its probes and hooks see what its process sees.
        """
        self.base_spec = spec
        fresh = self.instance_spec()
        if self.supervised:
            fresh = {**fresh, "env": self.spec["env"], "hooks": self.spec["hooks"]}
        self.spec = fresh

    @property
    def child(self):
        """The running process of the service (``children.Child``), or None."""
        return self._child

    @property
    def supervised(self):
        return self._supervisor is not None and not self._supervisor.dead

    # -- commands --------------------------------------------------------------------

    def start(self, how=actions.PLAIN):
        """Make the service run; returns once its supervisor is on its way.

        *how* (an ``actions.Start``) says which dependencies are awaited, which hooks
        follow ``post_start``, and whether this is the start half of a restart (log
        retention ``on_restart``, not ``on_start``).
        """
        self._idle.wait()
        self.desired = DESIRED_UP
        if self.supervised:
            self.project.persist()
            return
        if self._next_spec is not None:
            self.redefine(self._next_spec)
        self.project.logs.apply_retention(self.name, "on_restart" if how.restarting else "on_start")
        self.spec = self.instance_spec()
        self._stop_requested = False
        self._set_state(states.STARTING, reason=None, exit_code=None, signal=None, gave_up=False,
                        reached_up=False, waiting_on=None, retries=0, backoff_until=None)
        if not self._watch.armed:
            self._watch.arm()  # before spawn, so no change is missed; only a stop disarms it
        self._supervisor = self.project.spawn(self._supervise, how.awaited(), tuple(how.after_start))
        self._supervisor.link_exception(self._supervisor_crashed)

    def instance_spec(self, extra=None):
        """Return the baked spec with this instance's ``KEPLER_REPLICA``/``KEPLER_REPLICAS`` (SPEC §17).

        *extra* gives those variables as a run started with them (``hand_over``); by default, as of now.
        """
        if extra is None:
            count = self.project.replica_count(self.base)
            plain = self.name == self.base and count == 1
            extra = {} if plain else {"KEPLER_REPLICA": str(self.index), "KEPLER_REPLICAS": str(count)}
        if not extra:
            return self.base_spec  # a plain service: nothing added
        hooks = {name: {**hook, "env": {**hook["env"], **extra}} for name, hook in self.base_spec["hooks"].items()}
        return {**self.base_spec, "env": {**self.base_spec["env"], **extra}, "hooks": hooks}

    def send_signal(self, signum, group=False):
        """Deliver *signum* to the running process (or its group); return False if none runs."""
        child = self._child
        if child is None or child.returncode is not None:
            return False
        if group:
            self.system.signal_group(child.pgid, signum)
        else:
            child.send_signal(signum)
        return True

    def stop(self, signum=None, why=actions.BY_USER):
        """Stop the service and everything it spawned; returns when it is stopped.

        *why* (``actions.BY_USER``, ``SHUTDOWN``, ``RESTART``, ``APPLY``): a daemon
        shutdown (and apply's stop half) leaves the desired state as it is, so the
        next daemon brings the service back. A failing ``pre_stop`` hook aborts a user's stop (``HookFailed``); a
        restart runs ``pre_restart`` first, which guards the same way, and leaves
        log retention to its start half.
        """
        by_user = why not in actions.KEEPS_DESIRED
        if why in (actions.RESTART, actions.APPLY):
            self._guard_hook("pre_restart")
        if not self.supervised:
            self._watch.disarm()
            if self.one_offs.used:
                self._end_strays()  # no process of the service runs, but an exec'd command may
            if by_user:
                self.desired = DESIRED_DOWN
                if self.status in (states.EXITED, states.KILLED) and why == actions.BY_USER:
                    self._set_state(states.STOPPED)  # the user's word now: the watch no longer revives it
            self.project.persist()
            return
        if self._stop_requested:
            self._supervisor.join()
            return
        self._idle.clear()
        try:
            self._stop_supervised(signum, why)
        finally:
            self._idle.set()

    def _stop_supervised(self, signum, why):
        by_user = why not in actions.KEEPS_DESIRED
        child = self._child
        running = child is not None and child.returncode is None
        if running:
            # A shutdown runs pre_stop too, but nothing may abort it.
            (self._guard_hook if by_user else self._logged_hook)("pre_stop")
        if by_user:
            self.desired = DESIRED_DOWN
        self._stop_requested = True
        self._watch.disarm()
        if self.status in states.UP:  # running, or its process just ended and post_exit runs
            self._set_state(states.STOPPING)
        if running:
            if self._in_post_start:
                # A post_start hook may run for ever: it dies with the supervisor, as pre_start does.
                self._supervisor.kill()
            # Exec'd commands are part of the service (its cgroup, its mark): they get the stop signal too.
            self.one_offs.send_signal(signum or self.spec["stop_signal"])
            child.stop(signum or self.spec["stop_signal"], self.spec["stop_grace_period"])
            self._end_strays(child)
            self._supervisor.join()
        else:
            self._supervisor.kill()
            if self.one_offs.used:
                self._end_strays()  # between runs (a back-off), an exec'd command may still run
        self._child = None
        self.project.logs.apply_retention(self.name, "on_stop" if why == actions.BY_USER else None)
        self._set_state(states.STOPPED, pid=None, waiting_on=None, backoff_until=None)
        if running:
            self._logged_hook("post_stop")

    def kill_process(self):
        """SIGKILL the current run's process group, if any: the last resort of a failed shutdown."""
        child = self._child
        if child is not None and child.returncode is None:
            child.kill()

    def _end_strays(self, child=None):
        """Kill what the service left outside its process tree (SPEC §12: nothing survives a stop),
        and its exec'd commands: they end with the service's run, as in its cgroup.

        *child* is the run's main process (what stays in its session is found too), when there was one.
        """
        self.one_offs.kill()
        self.system.collect_strays(self.mark, child)
        named = self.system.service_mark(self.project.id, self.name)
        if named != self.mark:
            self.system.collect_strays(named)  # renamed: hooks and exec'd commands since carry the new name

    def _supervisor_crashed(self, supervisor):
        """A bug ended the supervisor: fail the service visibly and leave no process behind."""
        log.error("%s/%s: supervisor crashed", self.project.name, self.name, exc_info=supervisor.exc_info)
        child, self._child = self._child, None
        if child is not None and child.returncode is None:
            child.kill()
        self._end_strays(child)
        if self._stop_requested:
            return  # a stop is under way: it ends the service as usual
        if self.status != states.FAILED:
            self.status = states.STARTING  # a crash may leave any state: fail from a known one
            error = supervisor.exception
            self._fail(f"internal error: {error if isinstance(error, HelperCrashed) else repr(error)}")

    def spawn_helper(self, what, group=None):
        """Return a spawn for the greenlets the supervisor relies on (health monitor, file watch).

        Each belongs to *group* (the run's helpers) or the project; a bug that ends one fails the service with a
        reason (through the supervisor, which then crashes on purpose) instead of
        leaving it running unwatched.
        """
        def spawn(function, *args):
            helper = group.spawn(function, *args) if group is not None else self.project.spawn(function, *args)
            helper.link_exception(lambda dead: self._helper_crashed(what, dead))
            return helper
        return spawn

    def _helper_crashed(self, what, helper):
        log.error("%s/%s: %s crashed", self.project.name, self.name, what, exc_info=helper.exc_info)
        if self.supervised:
            self._supervisor.kill(HelperCrashed(f"{what} crashed: {helper.exception!r}"), block=False)
