"""The daemon's heap: glibc's thresholds, and its free pages given back after big work, paced.

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


M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 128 * 1024
TRIM_THRESHOLD = 1024 * 1024


def keep_big_buffers_out_of_the_heap():
    """Keep glibc from moving big buffers into its heap, where freed memory is never given back.

    By default glibc raises its mmap threshold each time a large mmapped block is
    freed (up to 32 MiB): after one client sent a 16 MiB frame, later big frames came
    from the heap and the daemon's RSS stayed high after they were freed. A fixed
    threshold keeps every buffer over 128 KiB in its own mapping, unmapped when freed.

    Fixing it also fixes the trim threshold, at 128 KiB unless set: the heap then
    shrinks and grows again around every block of a chatty service's output (the log
    pump's pieces, up to 112 KiB, ``logs/format.py``), faulting its pages in anew each
    time (S3, issue #25: keplerd 40-45 ms of CPU, 38 with TRIM_THRESHOLD). Up to
    TRIM_THRESHOLD stays free at the heap's top instead; ``Trimmer`` gives it back
    after big work.
    """
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    except (OSError, AttributeError):
        pass  # not glibc: its allocator decides


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
