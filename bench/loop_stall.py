"""How long keplerd's loop stalls while 300 services start (issue #15, point 3).

Run as root from the repository, with the project's venv:

    .venv/bin/python bench/loop_stall.py [--services 300] [--runs 3]

One config of N services (``sleep 1000`` as ``user: root``, so every spawn resolves
an identity) is baked and loaded in this process, exactly as the daemon holds it
(keplerd.daemon is imported first: patched gevent, its resolver; cgroups found as
keplerd finds them at boot, unless --no-cgroups). A timer greenlet asks to wake
every millisecond; how late each wake-up comes is a stall of the loop that every
greenlet (log pumps, the watchdog, clients) suffered too. Measured from the start
request until every service runs (issue #25's S8 is this part), then while they
all stop. Reported: p50, p99 and max lateness in milliseconds, of the start and
of the stop, per run and over all runs.
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
from keplerd.osproc import cgroups
from keplerd.supervise import lifecycle
from keplerd.supervise.project import Project

TICK = 0.001


def config(count):
    lines = ["services:"]
    lines += [f"  s{index}: {{command: [sleep, '1000'], user: root}}" for index in range(count)]
    return "\n".join(lines) + "\n"


class StallMeter:
    """A greenlet that wakes every TICK and records how late each wake-up was, with when."""

    def __init__(self):
        self.late = []   # (when it woke, how late)
        self._greenlet = gevent.spawn(self._run)

    def _run(self):
        while True:
            asked = time.monotonic()
            gevent.sleep(TICK)
            woke = time.monotonic()
            self.late.append((woke, max(0.0, woke - asked - TICK)))

    def stop(self):
        self._greenlet.kill()
        return self.late

    def between(self, began, ended):
        return [late for woke, late in self.late if began < woke <= ended]


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
        up = time.monotonic()
        lifecycle.stop(project)
        down = time.monotonic()
    finally:
        meter.stop()
        project.shutdown()
    return meter.between(began, up), meter.between(up, down), up - began


def summary(late):
    ordered = sorted(late)
    p50, p99 = (ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000 for share in (0.5, 0.99))
    return f"p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  max {ordered[-1] * 1000:7.2f} ms  ({len(ordered)} ticks)"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-cgroups", action="store_true", help="contain by process group, as without cgroup2")
    options = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the services switch to user root")
    mode, detail = cgroups.activate(not options.no_cgroups)
    print(f"containment: {mode} ({detail})")
    starts, stops, ups = [], [], []
    for run in range(options.runs):
        workdir = tempfile.mkdtemp(prefix="kepler-stall-")
        try:
            start_late, stop_late, up = one_run(options.services, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        starts += start_late
        stops += stop_late
        ups.append(up)
        print(f"run {run + 1}: start {summary(start_late)}; all up after {up:.2f}s")
        print(f"       stop  {summary(stop_late)}")
    print(f"all:   start {summary(starts)}; median time to all up {statistics.median(ups):.2f}s")
    print(f"       stop  {summary(stops)}")


if __name__ == "__main__":
    main()
