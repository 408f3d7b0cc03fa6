"""Give the heap's free pages back to the OS after big work (glibc's ``malloc_trim``), paced.

Objects over 512 bytes (a service's runtime dict, a greenlet's saved C stack) come
from glibc's heap. A ``ps`` of 1,000 services, a write of ``state.json`` or a
start of 1,000 services (whose supervisors end as their runs park) frees
thousands of them between objects that live on; glibc keeps those holes resident
and only ``malloc_trim`` returns their pages: ~3 MiB at 1,000 services, in ~0.3 ms
(issue #25, S7). A trim comes at the next turn of the loop, at most one per
``TRIM_PACE`` seconds; one with nothing to give back costs microseconds.
"""

import ctypes
import time

import gevent

# 0.02 s: an answer's holes are gone before its client looks (S7 reads the RSS right after a ps); a trim
# costs ~0.3 ms when it gives back megabytes, microseconds when there is nothing: at most ~1.5 % of a core.
TRIM_PACE = 0.02

try:
    _malloc_trim = ctypes.CDLL(None).malloc_trim
except (OSError, AttributeError):
    _malloc_trim = None  # not glibc: its allocator decides


class Trimmer:
    """Trims the heap once big work is done, never more often than every *pace* seconds."""

    def __init__(self, pace=TRIM_PACE):
        self._pace = pace
        self._timer = None
        self._last = -pace

    def soon(self):
        """Trim at the next turn of the loop, or *pace* seconds after the last trim (one due takes this one too)."""
        if _malloc_trim is None or self._timer is not None:
            return
        # ref=False: a trim due keeps no loop running (a daemon on its way out need not wait for it).
        self._timer = gevent.get_hub().loop.timer(max(0.0, self._last + self._pace - time.monotonic()), ref=False)
        self._timer.start(self._trim)

    def _trim(self):
        self._timer.close()
        self._timer = None
        _malloc_trim(0)
        self._last = time.monotonic()


TRIMMER = Trimmer()
