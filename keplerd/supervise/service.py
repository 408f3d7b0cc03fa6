"""One service's supervisor: wait for dependencies, run hooks, spawn, watch, restart, stop.

Each started service has one supervisor greenlet, which owns the child's exit: it
alone waits on the process and decides what happens next. ``stop`` asks for the
end and waits for the supervisor to see it. While a process simply runs (no probe,
no notify socket), the supervisor is parked: a greenlet not yet started, which the
process's exit starts (``_park``).
"""

import base64
import logging
import signal
import time

import gevent
from gevent.event import Event

from keplerd.logs.format import kepler_note
from keplerd.model import actions, deps, states
from keplerd.model.backoff import Backoff, wants_restart
from keplerd.osproc import process
from keplerd.supervise import lifecycle, readiness
from keplerd.supervise.run_health import HealthAndReadiness
from keplerd.supervise.service_exec import OneOffs
from keplerd.supervise.hooks import HookFailed, run_hook
from keplerd.supervise.service_watch import ServiceWatch

log = logging.getLogger("keplerd.service")

# The desired state (what the user asked for), not a status: states.UP is the set of up statuses.
DESIRED_UP = "up"
DESIRED_DOWN = "down"
PUMP_DRAIN_SECONDS = 1.0
# What a run returns when it parked its supervisor (``_park``): the process runs on, watched by no greenlet.
PARKED = "parked"
REPLICA_VARIABLES = ("KEPLER_REPLICA", "KEPLER_REPLICAS")
_PERSISTED = ("desired", "exit_code", "signal", "since", "restarts", "reason", "gave_up", "on_init_done",
              "restart_reason", "retries")
# What a supervised service's runtime carries over a ``daemon reexec`` (SPEC §20).
_ADOPTED = ("status", "desired", "pid", "create_time", "exit_code", "signal", "since", "started_at", "restarts",
            "restart_reason", "reason", "gave_up", "retries", "backoff_until", "on_init_done", "waiting_on",
            "reached_up", "was_healthy", "health_failures", "last_probe", "status_text")


class HelperCrashed(Exception):
    """A greenlet the supervisor relies on died of a bug; the message says which and why."""


class Service(HealthAndReadiness):
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
        """The running process of the service (``process.Child``), or None."""
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

    # -- supervision -----------------------------------------------------------------

    def _supervise(self, wait_on, after_start):
        self._wait_on = wait_on
        if not self._await_dependencies(wait_on) or not self._start_hooks():
            return
        self._backoff = Backoff.from_spec(self.spec["restart"])
        self._keep_running(self._run_once(after_start))

    def _keep_running(self, outcome):
        """After a run ended with *outcome* (None: it failed to start), restart it as long as the policy says."""
        while outcome is not None and outcome is not PARKED and not self._stop_requested:
            returncode, ran_for = outcome
            # A run ended for being unhealthy (restart.on_unhealthy) did not end on its own: no post_exit,
            # no on_exit retention, but the same count, back-off and max_retries as a crash (SPEC §10).
            unhealthy = self._unhealthy.is_set()
            if not unhealthy:
                self._logged_hook("post_exit")
            delay = self._backoff.next_delay(ran_for)
            if unhealthy and delay is None:
                self._fail(f"unhealthy, gave up after {self._backoff.quick_failures} retries", gave_up=True)
                return
            if not unhealthy:
                self.project.logs.apply_retention(self.name, "on_exit")
                if not wants_restart(self.spec["restart"]["policy"], returncode) or delay is None:
                    self._finish(returncode, gave_up=delay is None)
                    return
            self.project.logs.apply_retention(self.name, "on_restart")
            why = "unhealthy" if unhealthy else "policy"
            # The process is gone: no pid while the back-off runs (ps shows "Restarting in 2s").
            self._set_state(states.STARTING, **self._restart_record(why), reached_up=False,
                            reason="restarting: unhealthy" if unhealthy else
                            f"restarting after exit {_describe(returncode)}", pid=None,
                            retries=self._backoff.quick_failures,
                            backoff_until=time.time() + delay if delay else None)
            self.project.record(self.name, "restart", reason="policy", restarts=self.restarts)
            dependents = lifecycle.dependents_to_restart(self.project, self.name)
            if dependents:
                self.project.request_restart(dependents, "dependency")
            if not self._back_off(delay):
                return
            outcome = self._run_once(())

    def _back_off(self, delay):
        """Wait out the back-off, then run the start hooks again; False if one failed the service."""
        if delay:
            self.system.sleep(delay)
            self._note(backoff_until=None)
        return self._start_hooks()

    def _await_dependencies(self, wait_on):
        """Wait until every awaited dependency condition holds; fail the service if one cannot."""
        edges = {dep: edge for dep, edge in self.spec["depends_on"].items() if wait_on is None or dep in wait_on}
        began = time.monotonic()
        while True:
            pending, deadline = [], None
            for dep, edge in edges.items():
                # A replicated dependency holds when it holds for every instance (SPEC §17).
                instances = self.project.instances(dep)
                unmet = [one for one in instances
                         if not deps.condition_met(one, edge["condition"], edge.get("exit_code"))]
                if not unmet:
                    continue
                hopeless = [one for one in unmet
                            if deps.never_satisfiable(one, edge["condition"], edge.get("exit_code"))]
                if hopeless:
                    return self._fail(f"dependency {deps.describe(dep, edge)} can never be satisfied: "
                                      f"{hopeless[0].name} is {hopeless[0].status}")
                if edge["timeout"] is not None:
                    left = edge["timeout"] - (time.monotonic() - began)
                    if left <= 0:
                        return self._fail(f"timed out after {edge['timeout']:g}s waiting for "
                                          f"{deps.describe(dep, edge)}")
                    deadline = left if deadline is None else min(deadline, left)
                pending.append(deps.describe(dep, edge))
            if not pending:
                if self.waiting_on:
                    self._note(waiting_on=None)
                return True
            if pending != self.waiting_on:
                self._note(waiting_on=pending)
            self.project.wait_change(timeout=deadline)

    def _start_hooks(self):
        """Run ``on_init`` (once per bake) and ``pre_start``; fail the service if one fails."""
        try:
            if not self.on_init_done:
                self._guard_hook("on_init")
                self._note(on_init_done=True)
            self._guard_hook("pre_start")
        except HookFailed as failure:
            self._fail(str(failure))
            return False
        return True

    def _run_once(self, after_start):
        """Spawn and wait once (the watch, armed by ``start``, runs throughout)."""
        return self._spawn_and_wait(after_start)

    def _spawn_and_wait(self, after_start):
        """Spawn and wait once; return ``(returncode, seconds run)`` or None if it failed."""
        notify = None
        self.mark = self.system.service_mark(self.project.id, self.name)  # this run's, whatever renames follow
        env = self.system.marked_env(self.spec["env"], self.project.state_dir, self.mark)
        try:
            if self.spec.get("notify"):
                notify = self.system.notify_socket(
                    readiness.socket_path(self.project.state_dir, self.project.id, self.name),
                    self.spec.get("user"), self.spec.get("group"))
                env = {**env, "NOTIFY_SOCKET": notify.path}
            child, pumps = self.system.spawn_logged(self.log, self.spec, env=env,
                                                    instance=(self.project.id, self.name))
        except (process.SpawnError, readiness.NotifyError) as error:
            if notify is not None:
                notify.close()
            self._fail(str(error))
            return None
        try:
            return self._wait_run(child, pumps, time.monotonic(), ("post_start", *after_start), notify)
        finally:
            if notify is not None:
                notify.close()

    def _wait_run(self, child, pumps, started, hooks, notify=None, adopted=False, resumed=False):
        """Bring the run of *child* up, then wait for its end; return ``(returncode, seconds run)``.

        Up: ready (``notify``), running, probed, *hooks* run; an *adopted* run (daemon
        reexec) is up already and only probed again; a *resumed* one (daemon reexec) still
        awaits its READY=1. None when a notify service was not ready in time: it is
        stopped and fails.
        """
        self._child, self._pumps, self._started, self._notify = child, pumps, started, notify
        self._unhealthy.clear()
        not_ready = None
        try:
            if adopted:
                if notify is not None:
                    self.listen_to(notify)   # STATUS= goes on being heard
                self._monitor_health(time.monotonic())  # the probe waits start_period again
            else:
                not_ready = self._start_run(child, started, notify, hooks, resumed=resumed)
            if not_ready:
                child.stop(self.spec["stop_signal"], self.spec["stop_grace_period"])
            elif self._may_park(child, notify):
                self._park(child, pumps, started)
                return PARKED
            returncode = self._await_end(child)
        finally:
            self._in_post_start = False
            if self._helpers is not None:
                self._helpers.kill()
        return self._run_ended(child, pumps, started, returncode, not_ready)

    def _may_park(self, child, notify):
        """Tell whether the run only waits for its process to end: no probe, no notify socket, no stop."""
        return (child.returncode is None and notify is None and not self.spec.get("healthcheck")
                and not self._stop_requested)

    def _park(self, child, pumps, started):
        """End the supervisor while the process simply runs; its successor starts when the process ends.

        A waiting greenlet holds ~8 KiB (its saved C stack and a page of Python frames):
        8 MiB at 1,000 services (issue #25, S7). The successor is created now, unstarted
        and owned by the project: ``supervised``, ``join`` and ``kill`` see it as the
        supervisor, and a kill before the process ends means it never runs.
        """
        successor = gevent.Greenlet(self._resume_after_exit, child, pumps, started)
        successor.link_exception(self._supervisor_crashed)
        self.project.hold(successor)
        self._supervisor = successor
        child.rawlink(lambda _ended: successor.start())
        self.system.trim_heap_soon()  # this greenlet's saved stack is freed as it ends (osproc/heap.py)

    def _resume_after_exit(self, child, pumps, started):
        """Supervise a parked run again, its process ended: end the run, then follow the restart policy."""
        self._keep_running(self._run_ended(child, pumps, started, child.wait()))

    def _run_ended(self, child, pumps, started, returncode, not_ready=None):
        """Clean up after the run's process ended; return ``(returncode, seconds run)``, None if it failed."""
        ran_for = time.monotonic() - started
        if not self._stop_requested:
            # The main process is gone; what it left in its group and cgroup goes too (as systemd does).
            self.system.end_leftovers(child)
            self._end_strays(child)
        gevent.joinall(pumps, timeout=PUMP_DRAIN_SECONDS)
        exit_code, signum = _split_returncode(returncode)
        self._child, self._pumps, self._notify = None, (), None
        bad = returncode != 0 and not self._stop_requested
        self._note(exit_code=exit_code, signal=signum, bad_exits=self.bad_exits + bad)
        if not_ready and not self._stop_requested:
            self._fail(not_ready)
            return None
        return returncode, ran_for

    def _finish(self, returncode, gave_up):
        exit_code, signum = _split_returncode(returncode)
        status = states.KILLED if signum else states.EXITED
        reason = f"gave up after {self.retries} retries" if gave_up else None
        self._set_state(status, pid=None, exit_code=exit_code, signal=signum, gave_up=gave_up, reason=reason)

    def _fail(self, reason, gave_up=False):
        self.log.write("stderr", kepler_note(f"{self.name} failed: {reason}"))
        self._set_state(states.FAILED, pid=None, reason=reason, waiting_on=None, gave_up=gave_up)
        return False

    # -- hand-over to the next image of the daemon (SPEC §20) ---------------------------

    def at_rest(self):
        """Tell whether the supervisor only waits: on a running process, a back-off or a dependency.

        Only then can the next image of the daemon carry on from a record of the service.
        """
        if not self.supervised:
            return True
        if not self._idle.is_set() or self._stop_requested:
            return False
        if self._child is not None:
            # Up, or a notify run awaiting READY=1 (its socket is handed over, and holds what comes meanwhile).
            return self._child.returncode is None and (self.reached_up or self._awaiting_ready is not None)
        return self.backoff_until is not None or self.waiting_on is not None

    def hand_over(self):
        """Return the record the next image adopts (at rest, and without yielding until the exec)."""
        runtime = {**self.runtime(), "reached_up": self.reached_up, "was_healthy": self.was_healthy}
        # What the run started as (a rename since changed the name, not its process's environment).
        started_as = {key: self.spec["env"][key] for key in REPLICA_VARIABLES if key in self.spec["env"]}
        record = {"runtime": runtime, "supervised": self.supervised, "wait_on": None, "mark": self.mark,
                  "replica_env": started_as,
                  "quick_failures": self._backoff.quick_failures if self._backoff else 0}
        if self._wait_on is not None:
            record["wait_on"] = sorted(self._wait_on)
        if self.supervised and self._child is not None:
            record["ran_for"] = time.monotonic() - self._started
            record["pumps"] = [_encoded(pump.hand_over()) for pump in self._pumps if not pump.dead]
            if self._notify is not None:
                record["notify"] = self._notify.hand_over()
                if self._awaiting_ready is not None:
                    record["awaiting_ready"] = list(self._awaiting_ready)
                    # READY=1 read by now, the supervisor not yet woken: the datagram is gone from the socket.
                    record["notify"]["ready"] = self._ready.is_set()
        return record

    def take_over(self, record):
        """Carry on supervising where the previous image of the daemon handed the service over."""
        runtime = record["runtime"]
        for key in _ADOPTED:
            setattr(self, key, runtime.get(key))
        self.mark = record.get("mark", self.mark)  # a run started before a rename carries its old name
        down_by_itself = self.desired == DESIRED_UP and self.status in (states.EXITED, states.KILLED, states.FAILED)
        if record["supervised"] or down_by_itself:
            self._watch.arm()  # armed from start to stop, across the hand-over too (SPEC §10)
        if not record["supervised"]:
            return
        self.spec = self.instance_spec(record.get("replica_env"))
        self._backoff = Backoff.from_spec(self.spec["restart"])
        self._backoff.quick_failures = record["quick_failures"]
        wait_on = None if record["wait_on"] is None else set(record["wait_on"])
        if "ran_for" in record:
            pumps = [self.log.start_pump(pump["stream"], pump["fd"], base64.b64decode(pump["partial"]))
                     for pump in record["pumps"]]
            notify = record.get("notify")
            if notify is not None:
                if notify.get("ready"):
                    self._ready.set()
                notify = self.system.adopt_notify_socket(notify["path"], notify["fd"])
            child = self.system.adopt_child(self.pid, self.create_time)
            supervise = self._carry_on_running, child, pumps, record["ran_for"], notify, record.get("awaiting_ready")
        elif self.backoff_until is not None:
            supervise = self._carry_on_backing_off, max(0.0, self.backoff_until - time.time())
        else:
            supervise = self._supervise, wait_on, ()
        self._supervisor = self.project.spawn(*supervise)
        self._supervisor.link_exception(self._supervisor_crashed)

    def _carry_on_running(self, child, pumps, ran_for, notify=None, awaiting_ready=None):
        """Supervise a run the previous image handed over: up already, or (notify) still awaiting READY=1."""
        try:
            if child is None:  # not ours any more: the pid was reaped or reused
                for pump in pumps:
                    pump.stop()
                self._keep_running((-signal.SIGKILL, ran_for))
                return
            started = time.monotonic() - ran_for
            if awaiting_ready is not None:
                outcome = self._wait_run(child, pumps, started, tuple(awaiting_ready), notify, resumed=True)
            else:
                outcome = self._wait_run(child, pumps, started, (), notify, adopted=True)
        finally:
            if notify is not None:
                notify.close()
        self._keep_running(outcome)

    def _carry_on_backing_off(self, delay):
        if self._back_off(delay):
            self._keep_running(self._run_once(()))

    # -- hooks -----------------------------------------------------------------------

    def _guard_hook(self, name):
        """Run a ``pre_*``/``on_init`` hook that guards what follows: its failure raises ``HookFailed``."""
        hook = self.spec["hooks"].get(name)
        if hook is not None:
            run_hook(self.project, self.name, name, hook)

    def _logged_hook(self, name):
        """Run a hook whose failure changes nothing (``post_*``): run_hook has logged it."""
        try:
            self._guard_hook(name)
        except HookFailed:
            pass


def _encoded(pump):
    return {**pump, "partial": base64.b64encode(pump["partial"]).decode("ascii")}


def _split_returncode(returncode):
    """Return ``(exit_code, signal)`` from a Popen-style return code."""
    if returncode is None:
        return None, None
    if returncode < 0:
        return None, -returncode
    return returncode, None


def _describe(returncode):
    exit_code, signum = _split_returncode(returncode)
    return f"by signal {signum}" if signum else f"code {exit_code}"
