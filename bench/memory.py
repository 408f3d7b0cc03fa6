"""Where keplerd's memory goes per running service (issue #25, S7): RSS and a tracemalloc top-N.

Run as root from the repository, with the project's venv:

    .venv/bin/python bench/memory.py [--services 1000] [--top 25] [--frames 4] [--rss-only]

One config of N ``sleep`` services is baked and loaded in this process, exactly as
the daemon holds it (keplerd.daemon is imported first: patched gevent), and
started. Reported: RSS growth per service of loading it and of starting it; what tracemalloc
sees of that growth (Python objects), per service; the rest (greenlets' saved C
stacks and frame chunks, malloc overhead) is RSS that tracemalloc cannot see; then
the biggest allocation sites, grouped by traceback. tracemalloc's own records
swell the RSS: ``--rss-only`` measures it without them. Every service is stopped
at the end.
"""

import keplerd.daemon  # noqa: F401  (first: patches gevent as the daemon does)

import argparse
import gc
import os
import shutil
import sys
import tempfile
import tracemalloc

import greenlet

from keplerd.config.bake import bake
from keplerd.supervise import lifecycle
from keplerd.supervise.project import Project


def rss_kib():
    with open("/proc/self/status") as file:
        return next(int(line.split()[1]) for line in file if line.startswith("VmRSS:"))


def live_greenlets():
    return sum(isinstance(thing, greenlet.greenlet) and not thing.dead for thing in gc.get_objects())


def measure(count, workdir, top, frames, trace=True):
    path = os.path.join(workdir, "kepler.yaml")
    with open(path, "w") as file:
        file.write("services:\n" + "".join(f"  s{index:04d}: {{command: [sleep, '1000']}}\n"
                                           for index in range(count)))
    baked = bake(path, dict(os.environ), "/root")
    gc.collect()
    rss_unloaded = rss_kib()
    project = Project.create(os.path.join(workdir, "state"), "memory", baked)
    try:
        gc.collect()
        greenlets_before, rss_before = live_greenlets(), rss_kib()
        print(f"{count} services loaded (baked snapshot, Service objects, log writers): RSS "
              f"{rss_unloaded / 1024:.1f} -> {rss_before / 1024:.1f} MiB "
              f"({(rss_before - rss_unloaded) / count:.1f} KiB per service)")
        if trace:
            tracemalloc.start(frames)
            before = tracemalloc.take_snapshot()
        started = lifecycle.start(project)
        failed, pending = lifecycle.wait_startup(project, started, timeout=300)
        assert not failed and not pending, (failed, pending)
        gc.collect()
        rss_after, greenlets_after = rss_kib(), live_greenlets()
        grown = (rss_after - rss_before) * 1024
        print(f"{count} services running: RSS {rss_before / 1024:.1f} -> {rss_after / 1024:.1f} MiB "
              f"({grown / count / 1024:.1f} KiB per service); live greenlets {greenlets_before} -> "
              f"{greenlets_after}")
        if trace:
            after = tracemalloc.take_snapshot()
            tracemalloc.stop()
            report(after.compare_to(before, "traceback"), count, grown, top, frames)
        lifecycle.stop(project)
    finally:
        project.shutdown()


def report(growth, count, grown, top, frames):
    """Print what tracemalloc saw grow, per service, biggest first."""
    traced = sum(stat.size_diff for stat in growth)
    print(f"  tracemalloc sees {traced / count / 1024:.1f} KiB per service (Python objects, "
          f"with tracemalloc's own overhead); the rest, {(grown - traced) / count / 1024:.1f} KiB, is "
          f"greenlet stacks, frame chunks and malloc overhead")
    print(f"\nthe {top} biggest growths by traceback (per service):")
    for stat in growth[:top]:
        print(f"\n{stat.size_diff / count:8.0f} B  {stat.count_diff / count:5.1f} blocks")
        for line in stat.traceback.format()[-2 * frames:]:
            print("    " + line)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--rss-only", action="store_true", help="no tracemalloc (its records swell the RSS)")
    options = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the services run as root and their logs go under a root-owned state dir")
    workdir = tempfile.mkdtemp(prefix="kepler-memory-")
    try:
        measure(options.services, workdir, options.top, options.frames, trace=not options.rss_only)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
