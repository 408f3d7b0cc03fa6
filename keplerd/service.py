"""One service's supervisor: spawn it, wait for it, restart it per policy, stop it.

Each running service has one supervisor greenlet, which owns the child's exit:
it alone waits on the process and decides what happens next. ``stop`` asks for
the end and waits for the supervisor to see it.
"""

import logging
import os
import time

import gevent
from gevent.event import Event

from keplerd import process, states
from keplerd.logs.format import now_stamp
from keplerd.restart import Backoff, wants_restart

log = logging.getLogger("keplerd.service")

UP = "up"
DOWN = "down"
PUMP_DRAIN_SECONDS = 1.0


class Service:
    """The runtime of one service of a loaded config.

    *project* is the owning ``Project``: it spawns greenlets, persists state,
    publishes events and holds the log listeners.
    """

    def __init__(self, name, spec, project):
        self.name = name
        self.spec = spec
        self.project = project
        self.status = states.STOPPED
        self.desired = DOWN
        self.pid = None
        self.create_time = None
        self.exit_code = None
        self.signal = None
        self.since = time.time()
        self.started_at = None
        self.restarts = 0
        self.reason = None
        self.gave_up = False
        self.log = project.logs.writer(name, spec.get("logs"))
        self._child = None
        self._supervisor = None
        self._stop_requested = False
        self._idle = Event()
        self._idle.set()

    # -- state -----------------------------------------------------------------

    def runtime(self):
        """Return the runtime state as stored in ``state.json`` and shown by ps/inspect."""
        return {
            "status": self.status, "desired": self.desired, "pid": self.pid,
            "create_time": self.create_time, "exit_code": self.exit_code, "signal": self.signal,
            "since": self.since, "started_at": self.started_at, "restarts": self.restarts,
            "reason": self.reason, "gave_up": self.gave_up,
        }

    def restore(self, saved):
        """Take back the state a previous daemon recorded; no process belongs to us yet."""
        for key in ("desired", "exit_code", "signal", "since", "restarts", "reason", "gave_up"):
            if key in saved:
                setattr(self, key, saved[key])
        status = saved.get("status", states.STOPPED)
        self.status = status if status in states.TERMINAL else states.STOPPED

    def _set_state(self, status, **changes):
        states.check_transition(self.status, status)
        if status != self.status:
            log.info("%s/%s: %s -> %s%s", self.project.name, self.name, self.status, status,
                     f" ({changes['reason']})" if changes.get("reason") else "")
        self.status = status
        self.since = time.time()
        for key, value in changes.items():
            setattr(self, key, value)
        self.project.service_changed(self)

    @property
    def supervised(self):
        return self._supervisor is not None and not self._supervisor.dead

    # -- commands --------------------------------------------------------------

    def start(self, restarting=False):
        """Make the service run; returns once its supervisor is on its way.

        *restarting*: the start half of a restart (log retention ``on_restart``, not ``on_start``).
        """
        self._idle.wait()
        self.desired = UP
        if self.supervised:
            self.project.persist()
            return
        self.project.logs.apply_retention(self.name, "on_restart" if restarting else "on_start")
        self._stop_requested = False
        self.gave_up = False
        self._set_state(states.STARTING, reason=None, exit_code=None, signal=None)
        self._supervisor = self.project.spawn(self._supervise)

    def stop(self, signum=None, by_user=True, restarting=False):
        """Stop the service and everything it spawned; returns when it is stopped.

        *by_user* is False when the daemon itself shuts down: the desired state then
        stays as it is, so the next daemon brings the service back. *restarting*:
        the stop half of a restart, which leaves log retention to the start half.
        """
        if by_user:
            self.desired = DOWN
        if not self.supervised:
            self.project.persist()
            return
        if self._stop_requested:
            self._supervisor.join()
            return
        self._idle.clear()
        try:
            self._stop_requested = True
            child = self._child
            if child is not None and child.returncode is None:
                self._set_state(states.STOPPING)
                child.stop(signum or self.spec["stop_signal"], self.spec["stop_grace_period"])
                self._supervisor.join()
            else:
                self._supervisor.kill()
            self._child = None
            retention = "on_stop" if by_user and not restarting else None
            self.project.logs.apply_retention(self.name, retention)
            self._set_state(states.STOPPED, pid=None)
        finally:
            self._idle.set()

    # -- supervision -----------------------------------------------------------

    def _supervise(self):
        backoff = Backoff.from_spec(self.spec["restart"])
        while True:
            outcome = self._run_once()
            if outcome is None or self._stop_requested:
                return
            returncode, ran_for = outcome
            delay = backoff.next_delay(ran_for)
            self.project.logs.apply_retention(self.name, "on_exit")
            if not wants_restart(self.spec["restart"]["policy"], returncode) or delay is None:
                self._finish(returncode, gave_up=delay is None)
                return
            self.project.logs.apply_retention(self.name, "on_restart")
            self.restarts += 1
            self._set_state(states.STARTING, reason=f"restarting after exit {_describe(returncode)}")
            if delay:
                gevent.sleep(delay)

    def _run_once(self):
        """Spawn and wait once; return ``(returncode, seconds run)`` or None if it failed."""
        try:
            child, pumps = self._spawn()
        except process.SpawnError as error:
            self._fail(str(error))
            return None
        self._child = child
        started = time.monotonic()
        self._set_state(states.RUNNING, pid=child.pid, create_time=child.create_time,
                        started_at=time.time(), reason=None)
        returncode = child.wait()
        ran_for = time.monotonic() - started
        if not self._stop_requested:
            # The main process is gone; what it left in its group goes too (as systemd does).
            process.kill_all(child.pgid, [])
        gevent.joinall(pumps, timeout=PUMP_DRAIN_SECONDS)
        self.exit_code, self.signal = _split_returncode(returncode)
        self._child = None
        return returncode, ran_for

    def _spawn(self):
        spec = self.spec
        out_read, out_write = os.pipe2(os.O_CLOEXEC)
        err_read, err_write = os.pipe2(os.O_CLOEXEC)
        try:
            child = process.spawn(
                spec["command"], spec["env"], spec["working_dir"], user=spec.get("user"),
                group=spec.get("group"), limits=spec.get("limits"), stdout=out_write, stderr=err_write,
            )
        except BaseException:
            for fd in (out_read, err_read):
                os.close(fd)
            raise
        finally:
            for fd in (out_write, err_write):
                process.close_now(fd)
        pumps = []
        for stream, fd in (("stdout", out_read), ("stderr", err_read)):
            os.set_blocking(fd, False)
            pumps.append(self.project.spawn(self.log.pump, stream, fd))
        return child, pumps

    def _finish(self, returncode, gave_up):
        exit_code, signum = _split_returncode(returncode)
        status = states.KILLED if signum else states.EXITED
        reason = "gave up after repeated quick exits" if gave_up else None
        self._set_state(status, pid=None, exit_code=exit_code, signal=signum, gave_up=gave_up, reason=reason)

    def _fail(self, reason):
        self.log.write("stderr", now_stamp() + f"kepler: {self.name} failed: {reason}\n".encode())
        self._set_state(states.FAILED, pid=None, reason=reason)


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
