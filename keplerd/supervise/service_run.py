"""What a service's supervisor greenlet does, as a part of ``Service``: from its dependencies to its restarts.

``Service`` (supervise/service.py) holds the state and the commands others call:
start, stop, signal. The supervisor greenlet that ``start`` spawns runs the methods
here: await the dependencies, run the guard hooks, spawn, wait for the run's end
(``run_health.py`` brings the run up), and restart as the policy says. The hand-over
across a ``daemon reexec`` (``service_handover.py``) re-enters them at
``_keep_running`` and ``_wait_run``.
"""

import time

import gevent

from keplerd.logs.format import kepler_note
from keplerd.model import deps, states
from keplerd.model.backoff import Backoff, wants_restart
from keplerd.osproc import process
from keplerd.supervise import lifecycle, readiness
from keplerd.supervise.hooks import HookFailed, run_hook

PUMP_DRAIN_SECONDS = 1.0


class RunAndRestart:
    """The supervisor greenlet's half of ``Service`` (it holds the state these methods use)."""

    __slots__ = ()  # Service's slots hold the state

    def _supervise(self, wait_on, after_start):
        self._wait_on = wait_on
        if not self._await_dependencies(wait_on) or not self._start_hooks():
            return
        self._backoff = Backoff.from_spec(self.spec["restart"])
        self._keep_running(self._run_once(after_start))

    def _keep_running(self, outcome):
        """After a run ended with *outcome* (None: it failed to start), restart it as long as the policy says."""
        while outcome is not None and not self._stop_requested:
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
            returncode = self._await_end(child)
        finally:
            self._in_post_start = False
            self._helpers.kill()
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
