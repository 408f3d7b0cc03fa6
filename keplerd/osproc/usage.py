"""What a service instance costs: CPU seconds, resident memory, processes (SPEC §19).

Read straight from ``/proc`` (a few small unbuffered reads per process) rather
than through psutil objects, so that ``ps --stats`` of a thousand services stays cheap. The
cgroup readings are in ``cgroups.reading``; this module also serves the
process-group fallback, summing over the main process and its descendants.
"""

import collections
import os

Reading = collections.namedtuple("Reading", "cpu_seconds memory_bytes processes")
NOTHING = Reading(0.0, 0, 0)

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def resident_bytes(pid):
    """Return the resident memory of *pid* in bytes (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/statm", "rb", buffering=0) as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return 0


def cpu_seconds(pid):
    """Return the user + system CPU time of *pid* in seconds (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb", buffering=0) as stat:
            data = stat.read()
    except OSError:
        return 0.0
    fields = data[data.rfind(b")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def children(pid):
    """Return the pids of *pid*'s children (empty when it is gone)."""
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children", "rb") as file:
                found.extend(int(child) for child in file.read().split())
    except OSError:
        pass  # gone meanwhile: no children to count
    return found


def tree_reading(pid):
    """Return the Reading of *pid* and its descendants (the process-group fallback)."""
    cpu, memory, count = 0.0, 0, 0
    pending = [pid]
    while pending:
        current = pending.pop()
        memory_now = resident_bytes(current)
        if not memory_now and not os.path.exists(f"/proc/{current}"):
            continue
        cpu += cpu_seconds(current)
        memory += memory_now
        count += 1
        pending.extend(children(current))
    return Reading(cpu, memory, count)


class Sampler:
    """CPU % of each instance over its last sample, a sample being at most *max_age* seconds old.

    Keeps the last reading per key (one per service: bounded). ``sample`` reuses
    a reading younger than *max_age*, else takes a new one; the CPU % is the CPU
    time between the two readings over the time between them, or, for the first
    reading of a run (*run* changed), the average since the run started.
    """

    def __init__(self, clock, max_age=1.0):
        self._clock = clock
        self.max_age = max_age
        self._last = {}   # key -> (run, when, reading, cpu_percent)

    def sample(self, key, run, started_at, read):
        """Return ``(reading, cpu_percent)`` for *key*; *read()* takes a fresh Reading."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and last[0] != run:
            last = None
        if last is not None and now - last[1] < self.max_age:
            return last[2], last[3]
        fresh = read()
        if last is not None and fresh.cpu_seconds >= last[2].cpu_seconds:
            since, before = last[1], last[2].cpu_seconds
        else:
            since, before = started_at, 0.0
        elapsed = now - since if since is not None else 0.0
        percent = round(100.0 * (fresh.cpu_seconds - before) / elapsed, 1) if elapsed > 0 else 0.0
        self._last[key] = (run, now, fresh, percent)
        return fresh, percent

    def forget(self, key):
        self._last.pop(key, None)
