"""Health probes (SPEC §8, §18): run a service's check on its interval and judge the verdicts.

One ``HealthMonitor`` greenlet per run of a service with a healthcheck, owned by
the service. A ``test`` probe runs with the service's user, environment and
working dir in its own process group, which is killed whole after every probe,
passed or not: nothing a probe starts outlives it. ``http`` and ``tcp`` probes
are made by the daemon itself (``netprobe``), without forking.
"""

import os
import signal
import time

import gevent
from gevent.socket import wait_read

from keplerd.osproc import process
from keplerd.supervise import netprobe

OUTPUT_LIMIT = 4096


class ProbeResult:
    """What one probe said: passed or not, its exit code (None for http/tcp) and (truncated) output."""

    def __init__(self, passed, exit_code, output):
        self.passed = passed
        self.exit_code = exit_code
        self.output = output
        self.at = time.time()


def probe(check, spec, spawn):
    """Run *check* once for the service *spec*; return a ``ProbeResult``.

    *spawn* starts the helper greenlet that reads a command probe's output.
    """
    if check.get("http"):
        return _network_probe(netprobe.check_http, check["http"], check["timeout"])
    if check.get("tcp"):
        return _network_probe(netprobe.check_tcp, check["tcp"], check["timeout"])
    return probe_command(check["test"], spec, check["timeout"], spawn)


def _network_probe(check, target, timeout):
    try:
        return ProbeResult(True, None, check(target, timeout))
    except netprobe.ProbeFailed as failure:
        return ProbeResult(False, None, str(failure))


def probe_command(test, spec, timeout, spawn):
    """Run the argv *test* as the service *spec* would run; kill its process group after it."""
    try:
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
    except OSError as error:
        return ProbeResult(False, None, f"cannot run probe: cannot create a pipe: {error.strerror}")
    try:
        child = process.spawn(test, spec["env"], spec["working_dir"], user=spec.get("user"),
                              group=spec.get("group"), limits=spec.get("limits"), stdout=write_end,
                              stderr=write_end)
    except process.SpawnError as error:
        process.close_now(read_end)
        return ProbeResult(False, None, f"cannot run probe: {error}")
    finally:
        process.close_now(write_end)
    output = _Output(read_end)
    reader = spawn(output.pump)
    try:
        returncode = child.wait(timeout)
    finally:
        _end_probe(child)
        reader.kill()
        output.close()
    if returncode is None:
        return ProbeResult(False, None, output.text() + f"\n(probe timed out after {timeout:g}s)")
    return ProbeResult(returncode == 0, returncode, output.text())


def _end_probe(child):
    """Kill whatever the probe left: its whole group, and all descendants if it is still running."""
    if child.returncode is None:
        child.kill()  # timed out, or the service stopped while the probe ran
    else:
        # `sleep 20 & true` passes, and its sleep must not outlive it.
        process.signal_group(child.pgid, signal.SIGKILL)


class _Output:
    """The first OUTPUT_LIMIT bytes a probe writes to its pipe; the rest is drained and dropped."""

    def __init__(self, fd):
        self.fd = fd
        self.kept = bytearray()
        os.set_blocking(fd, False)

    def pump(self):
        """Read until end of file (run in a greenlet, killed when the probe ends)."""
        while self._read_available():
            wait_read(self.fd)

    def _read_available(self):
        """Read what is there now; return False at end of file."""
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                return True
            if not chunk:
                return False
            self.kept += chunk[:max(0, OUTPUT_LIMIT - len(self.kept))]

    def close_at_end(self):
        """Read until end of file, then close."""
        self.pump()
        self.close()

    def close(self):
        """Take what the probe's group wrote before it was killed, then close the pipe."""
        if self.fd is None:
            return
        try:
            self._read_available()
        except OSError:
            pass  # a failing read loses only the tail of the output, which is all we would lose
        process.close_now(self.fd)
        self.fd = None

    def text(self):
        return self.kept.decode("utf-8", "replace")


class HealthMonitor:
    """Probes one run of *service* until it is killed with the run.

    Reports to the service through ``health_verdict(result, consecutive_failures, unhealthy)``.
    *began* is when the run was spawned (``time.monotonic``): ``start_period`` counts from it.
    """

    def __init__(self, service, check, spawn, began=None):
        self.service = service
        self.check = check
        self.spawn = spawn
        self.began = time.monotonic() if began is None else began
        self.failures = 0

    def run(self):
        first = self.check["start_period"] - (time.monotonic() - self.began)
        if first > 0:
            gevent.sleep(first)
        while True:
            result = self.service.system.probe(self.check, self.service.spec, self.spawn)
            self.failures = 0 if result.passed else self.failures + 1
            self.service.health_verdict(result, self.failures, self.failures >= self.check["retries"])
            gevent.sleep(self.check["interval"])
