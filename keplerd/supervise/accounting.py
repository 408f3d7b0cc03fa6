"""What each service instance costs, for ``ps --stats``, ``top`` and the metrics (SPEC §19).

One sampler for the daemon: CPU % is over the last sample, at most a second old,
however many clients ask.
"""

import time

from keplerd.osproc import usage

SAMPLER = usage.Sampler(time.time)
IDLE = {"cpu_seconds": 0.0, "cpu_percent": 0.0, "memory_bytes": 0, "processes": 0}


def stats_of(project, service):
    """Return the accounting fields of *service* (zeros when no process runs)."""
    child = service.child
    if child is None or child.returncode is not None:
        SAMPLER.forget((project.id, service.name))
        return dict(IDLE)
    reading, percent = SAMPLER.sample((project.id, service.name), child.pid, service.started_at,
                                      lambda: project.system.reading(child))
    return {"cpu_seconds": round(reading.cpu_seconds, 3), "cpu_percent": percent,
            "memory_bytes": reading.memory_bytes, "processes": reading.processes}
