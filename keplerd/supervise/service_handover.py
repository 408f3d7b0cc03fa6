"""A service across a ``daemon reexec`` (SPEC §20), as a part of ``Service``.

The old image asks each service whether it is at rest (``at_rest``) and writes its
record (``hand_over``); the new image adopts the process, its output pumps and its
notify socket, and spawns a supervisor that carries on where the old one waited
(``take_over``). These methods read and set most of ``Service``'s state, but only at
those two moments, which is why they live apart from the supervision they resume.
"""

import base64
import signal
import time

from keplerd.model import states
from keplerd.model.backoff import Backoff
from keplerd.model.states import DESIRED_UP

REPLICA_VARIABLES = ("KEPLER_REPLICA", "KEPLER_REPLICAS")
# What a supervised service's runtime carries over a ``daemon reexec`` (SPEC §20).
_ADOPTED = ("status", "desired", "pid", "create_time", "exit_code", "signal", "since", "started_at", "restarts",
            "restart_reason", "reason", "gave_up", "retries", "backoff_until", "on_init_done", "waiting_on",
            "reached_up", "was_healthy", "health_failures", "last_probe", "status_text")


class HandOver:
    """The hand-over half of ``Service`` (it holds the state these methods use)."""

    __slots__ = ()  # Service's slots hold the state

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


def _encoded(pump):
    return {**pump, "partial": base64.b64encode(pump["partial"]).decode("ascii")}

