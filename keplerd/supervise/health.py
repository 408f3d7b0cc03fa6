"""Health probes (SPEC §8): run a service's check on its interval and judge the verdicts.

One ``HealthMonitor`` greenlet per run of a service with a healthcheck. A probe
runs with the service's user, environment and working dir in its own process
group, which is killed whole when the probe outlives its timeout.
"""

import os
import signal
import time

import gevent

from keplerd.osproc import process

OUTPUT_LIMIT = 4096


class ProbeResult:
    """What one probe said: passed or not, its exit code and (truncated) output."""

    def __init__(self, passed, exit_code, output):
        self.passed = passed
        self.exit_code = exit_code
        self.output = output
        self.at = time.time()


def probe(test, spec, timeout):
    """Run *test* once as the service *spec* would run; return a ``ProbeResult``."""
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        child = process.spawn(test, spec["env"], spec["working_dir"], user=spec.get("user"),
                              group=spec.get("group"), limits=spec.get("limits"), stdout=write_end,
                              stderr=write_end)
    except process.SpawnError as error:
        os.close(read_end)
        return ProbeResult(False, None, f"cannot run probe: {error}")
    finally:
        process.close_now(write_end)
    os.set_blocking(read_end, False)
    reader = gevent.spawn(_read_output, read_end)
    try:
        returncode = child.wait(timeout)
    except BaseException:
        # The service stopped (its monitor is being killed): the probe goes with it.
        child.stop(signal.SIGKILL, 0)
        reader.kill()
        raise
    if returncode is None:
        child.stop(signal.SIGKILL, 0)
        reader.join(timeout=1.0)
        return ProbeResult(False, None, (reader.value or "") + f"\n(probe timed out after {timeout:g}s)")
    reader.join(timeout=1.0)
    return ProbeResult(returncode == 0, returncode, reader.value or "")


def _read_output(fd):
    """Return the first OUTPUT_LIMIT bytes written to *fd*, draining the rest."""
    from gevent.socket import wait_read

    kept = bytearray()
    try:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                wait_read(fd)
                continue
            if not chunk:
                break
            kept += chunk[:max(0, OUTPUT_LIMIT - len(kept))]
    finally:
        os.close(fd)
    return kept.decode("utf-8", "replace")


class HealthMonitor:
    """Probes one run of *service* until it is killed with the run.

    Reports to the service through ``health_verdict(result, consecutive_failures, unhealthy)``.
    """

    def __init__(self, service, check):
        self.service = service
        self.check = check
        self.failures = 0

    def run(self):
        if self.check["start_period"]:
            gevent.sleep(self.check["start_period"])
        while True:
            result = self.service.system.probe(self.check["test"], self.service.spec, self.check["timeout"])
            self.failures = 0 if result.passed else self.failures + 1
            self.service.health_verdict(result, self.failures, self.failures >= self.check["retries"])
            gevent.sleep(self.check["interval"])
