"""What a service run does about its health and readiness (SPEC §8, §10, §18), as a part of ``Service``.

A run of a ``notify`` service is ``starting`` until ``READY=1`` on its own socket;
a run with a healthcheck is probed by a ``HealthMonitor`` in the service's
``_helpers`` group; with ``restart.on_unhealthy`` an unhealthy verdict asks the
supervisor (which owns the process) to end the run. A helper that dies of a bug
fails the service.
"""

import logging
import time

import gevent
from gevent.pool import Group

from keplerd.logs.format import kepler_note
from keplerd.model import states
from keplerd.supervise import readiness
from keplerd.supervise.health import HealthMonitor

log = logging.getLogger("keplerd.service")


class HealthAndReadiness:
    """The health and readiness half of ``Service`` (it holds the state these methods use)."""

    __slots__ = ()  # Service's slots hold the state

    def _start_run(self, child, began, notify, hooks, resumed=False):
        """Bring a fresh process up: ready (notify), running, probed, *hooks* (``post_start``...).

        *resumed*: the run of a notify service an earlier image of the daemon started,
        still awaiting its READY=1 (``daemon reexec``). Returns why a notify service
        failed to become ready (``no READY=1 within 5s``), else None (also when the
        process ended first).
        """
        started_at = self.started_at if resumed else time.time()
        identity = {"pid": child.pid, "create_time": child.create_time, "started_at": started_at}
        if notify is not None:
            if not resumed:
                self._ready.clear()
                self._overdue = None
                self._note(status_text=None, **identity)
            self.listen_to(notify)
            self._awaiting_ready = hooks   # a reexec may come meanwhile: these still follow READY=1
            try:
                not_ready = self._await_ready(child, began)
            finally:
                self._awaiting_ready = None
            if not_ready or not self._ready.is_set():
                return not_ready
            log.info("%s/%s: READY=1", self.project.name, self.name)
        self._set_state(states.RUNNING, reason=None, was_healthy=False, health_failures=0, last_probe=None,
                        **identity)
        self._monitor_health(began)
        self._in_post_start = True
        for hook in hooks:
            self._logged_hook(hook)
        self._in_post_start = False
        # Only now has the start sequence run its course: dependents may go ahead.
        self._note(reached_up=True)
        return None

    def _await_ready(self, child, began):
        """Wait for READY=1, the end of the process, or a deadline; return the reason of a missed deadline."""
        check = self.spec.get("healthcheck") or {}
        limit = check.get("start_period") or None
        while not self._ready.is_set() and child.returncode is None:
            if self._overdue is not None:
                return f"no READY=1 within {self._overdue:g}s"
            left = None if limit is None else began + limit - time.monotonic()
            if left is not None and left <= 0:
                return f"no READY=1 within {limit:g}s"
            self._overdue_changed.clear()
            gevent.wait([child, self._ready, self._overdue_changed], count=1, timeout=left)
        return None

    def listen_to(self, notify):
        """Hear the run's notifications (READY=1, STATUS=) in a helper of the run."""
        self.spawn_helper("notify listener", self._run_helpers())(notify.listen, self._notified)

    def _notified(self, message):
        """Take one notification of the service: READY=1, STATUS=text."""
        if "STATUS" in message:
            self._note(status_text=readiness.status_text(message["STATUS"]))
        if message.get("READY") == "1":
            self._ready.set()

    def not_ready_within(self, seconds):
        """``--wait`` gave up after *seconds*: a notify service still not ready fails (SPEC §18)."""
        if self.spec.get("notify") and self._child is not None and not self._ready.is_set():
            self._overdue = seconds
            self._overdue_changed.set()

    def _await_end(self, child):
        """Wait for the process to end; end it first when a health verdict asks for a restart."""
        if not self.spec.get("healthcheck"):
            # Only a health verdict ends a run early. Waiting on the child alone keeps the idle
            # supervisor small: ~3 KiB, where gevent.wait on two objects holds ~8 KiB (issue #25, S7).
            return child.wait()
        gevent.wait([child, self._unhealthy], count=1)
        if child.returncode is None and not self._stop_requested:
            self.log.write("stderr", kepler_note(f"{self.name} is unhealthy: restarting it"))
            child.stop(self.spec["stop_signal"], self.spec["stop_grace_period"])
        return child.wait()

    # -- health --------------------------------------------------------------------

    def _monitor_health(self, began):
        """Probe this run in a greenlet of the service; if the monitor dies, the service fails."""
        check = self.spec.get("healthcheck")
        if not check:
            return
        helpers = self._run_helpers()
        self.spawn_helper("health monitor", helpers)(HealthMonitor(self, check, helpers.spawn, began).run)

    def _run_helpers(self):
        """Return the group of the run's helper greenlets, made by the first run that needs one.

        A plain service never does: an empty Group is ~0.6 KiB, 0.6 MiB at 1,000 services (issue #25, S7).
        """
        if self._helpers is None:
            self._helpers = Group()
        return self._helpers

    def health_verdict(self, result, failures, unhealthy):
        """Take a probe's result: switch healthy/unhealthy on transitions, fire their hooks."""
        if self.status not in states.UP or self._unhealthy.is_set():
            return  # stopped meanwhile, or being restarted for being unhealthy
        probe = {"at": result.at, "passed": result.passed, "exit_code": result.exit_code, "output": result.output}
        if result.passed and self.status != states.HEALTHY:
            if self._backoff is not None:
                self._backoff.reset()  # a run that became healthy is no crash loop (SPEC §10)
            self._set_state(states.HEALTHY, was_healthy=True, health_failures=0, last_probe=probe)
            self.project.record(self.name, "health", health="healthy", failures=0)
            self._logged_hook("post_healthcheck_success")
        elif unhealthy and self.status != states.UNHEALTHY:
            self._set_state(states.UNHEALTHY, health_failures=failures, last_probe=probe)
            self.project.record(self.name, "health", health="unhealthy", failures=failures)
            self._logged_hook("post_healthcheck_fail")
            if self.spec["restart"].get("on_unhealthy"):
                self._unhealthy.set()
        elif failures == self.health_failures:
            # Nothing changed: no state.json write, no event (a probe a second per service adds up);
            # inspect reads the probe live.
            self.last_probe = probe
        else:
            self._note(health_failures=failures, last_probe=probe)
