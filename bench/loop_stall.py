"""How long keplerd's loop stalls while 300 services start (issue #15, point 3).

Run as root from the repository, with the project's venv:

    .venv/bin/python bench/loop_stall.py [--services 300] [--runs 3]

One config of N services (``sleep 1000`` as ``user: root``, so every spawn resolves
an identity) is baked and loaded in this process, exactly as the daemon holds it
(keplerd.daemon is imported first: patched gevent, its resolver). A timer greenlet
asks to wake every millisecond; how late each wake-up comes is a stall of the loop
that every greenlet (log pumps, the watchdog, clients) suffered too. Measured from
the start request until every service runs, then while they all stop. Reported:
p50, p99 and max lateness in milliseconds, per run and over all runs.
"""

import keplerd.daemon  # noqa: F401  (first: patches gevent as the daemon does)

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

import gevent

from keplerd.config.bake import bake
from keplerd.supervise import lifecycle
from keplerd.supervise.project import Project

TICK = 0.001


def config(count):
    lines = ["services:"]
    lines += [f"  s{index}: {{command: [sleep, '1000'], user: root}}" for index in range(count)]
    return "\n".join(lines) + "\n"


class StallMeter:
    """A greenlet that wakes every TICK and records how late each wake-up was."""

    def __init__(self):
        self.late = []
        self._greenlet = gevent.spawn(self._run)

    def _run(self):
        while True:
            asked = time.monotonic()
            gevent.sleep(TICK)
            self.late.append(max(0.0, time.monotonic() - asked - TICK))

    def stop(self):
        self._greenlet.kill()
        return self.late


def one_run(count, workdir):
    path = os.path.join(workdir, "kepler.yaml")
    with open(path, "w") as file:
        file.write(config(count))
    project = Project.create(os.path.join(workdir, "state"), "bench", bake(path, dict(os.environ), "/root"))
    meter = StallMeter()
    try:
        began = time.monotonic()
        started = lifecycle.start(project)
        failed, pending = lifecycle.wait_startup(project, started, timeout=120)
        assert not failed and not pending, (failed, pending)
        up = time.monotonic() - began
        lifecycle.stop(project)
    finally:
        late = meter.stop()
        project.shutdown()
    return late, up


def summary(late):
    ordered = sorted(late)
    p50, p99 = (ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000 for share in (0.5, 0.99))
    return f"p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  max {ordered[-1] * 1000:7.2f} ms  ({len(ordered)} ticks)"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the services switch to user root")
    everything, ups = [], []
    for run in range(options.runs):
        workdir = tempfile.mkdtemp(prefix="kepler-stall-")
        try:
            late, up = one_run(options.services, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        everything += late
        ups.append(up)
        print(f"run {run + 1}: {summary(late)}; all up after {up:.2f}s")
    print(f"all:   {summary(everything)}; median time to all up {statistics.median(ups):.2f}s")


if __name__ == "__main__":
    main()
