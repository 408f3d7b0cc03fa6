"""Start supervisors in turns at the fork gate: a service waiting for its fork holds no greenlet.

Forks go one at a time (``System.spawn_logged``). A supervisor started at once and
waiting at that gate behind 299 others keeps its saved C stack and a page of
Python frames, ~8.7 KiB: 2.6 MiB of the daemon's peak while 300 services start
(issue #25, S1-300). ``StartTurns`` keeps the supervisors unstarted, in the order
they were started, and starts the next one each time the gate is free: the one
before has forked, or waits for something else (a dependency, a hook), or ended.
"""

import collections

import gevent
from gevent.pool import Group


class StartTurns:
    """Starts queued greenlets one after the other, each once *gate* (a ``Semaphore``) is free.

    The greenlets belong to their callers (a project ``hold``s its supervisors): one
    killed before its turn never runs. The starter greenlet is this object's own and
    runs only while greenlets are queued.
    """

    def __init__(self, gate):
        self._gate = gate
        self._queue = collections.deque()
        self._starter = Group()
        self._starting = False  # a starter runs (a flag: an ended greenlet leaves its Group a loop turn later)

    def start(self, greenlet):
        """Start the unstarted *greenlet* in its turn (at once when nobody waits for the gate)."""
        self._queue.append(greenlet)
        if not self._starting:
            self._starting = True
            self._starter.spawn(self._start_queued)

    def _start_queued(self):
        try:
            while self._queue:
                greenlet = self._queue.popleft()
                if greenlet.dead:
                    continue  # killed before its turn (a stop, a shutdown): it never runs
                greenlet.start()
                gevent.sleep(0)  # it runs until it waits: for the gate (which it then holds) or for anything else
                with self._gate:  # free again: its fork is done, or it never asked
                    pass
        finally:
            self._starting = False  # nothing yields between the empty queue and here
