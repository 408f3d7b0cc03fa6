"""The daemon's loop lag: how late the loop runs a timer due every second (SPEC §19).

It is the number that tells an operator the daemon is healthy: every greenlet (log
pumps, probes, restarts, clients) waits as long as the loop is late. ``keplerctl
daemon status`` shows the last reading and the worst of the last minute, the
metrics endpoint the last reading (``kepler_daemon_loop_lag_seconds``).
"""

import collections
import time

INTERVAL = 1.0
WINDOW = 60.0  # seconds the worst reading is kept for: a stall an operator comes looking for after the fact


class LoopLag:
    """How late a one-second libev timer fires: a busy or stuck loop shows here.

    A libev timer, not a greenlet: one callback a second, a few microseconds, and
    always armed (a lag measured only on demand could not say what the last minute
    was like). Each reading samples the loop once: sustained busyness always
    shows, a stall shorter than the interval shows when it overlaps a tick.
    """

    def __init__(self, loop, interval=INTERVAL, window=WINDOW):
        self.seconds = 0.0  # the last tick's lateness
        self._loop = loop
        self._interval = interval
        self._window = window
        self._recent = collections.deque()  # (monotonic time, lateness) of the ticks of the window
        self._timer = None
        self._due = 0.0

    def start(self):
        if self._timer is None:
            self._arm()

    def worst(self):
        """Return the largest lateness of the last WINDOW seconds (0 before the first tick)."""
        self._forget_older_than(time.monotonic() - self._window)
        return max((lateness for _, lateness in self._recent), default=0.0)

    def close(self):
        if self._timer is not None:
            self._timer.close()
            self._timer = None

    def _arm(self):
        # A fresh one-shot timer each time: a repeating one that runs late fires again at
        # once (libev catches up), which would hide the lateness it just showed.
        self._due = time.monotonic() + self._interval
        self._timer = self._loop.timer(self._interval, ref=False)
        self._timer.start(self._tick)

    def _tick(self):
        now = time.monotonic()
        self.seconds = max(0.0, now - self._due)
        self._recent.append((now, self.seconds))
        self._forget_older_than(now - self._window)
        self._timer.close()
        self._arm()

    def _forget_older_than(self, moment):
        while self._recent and self._recent[0][0] < moment:
            self._recent.popleft()
