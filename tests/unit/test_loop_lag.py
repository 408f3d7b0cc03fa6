"""The loop lag (SPEC §19, `daemon status`): a blocked loop shows, the worst is kept for the window."""

import time

import gevent

from keplerd.supervise.loop_lag import LoopLag


def _until(predicate, timeout=10.0):
    """Let the loop run until *predicate* holds (or the deadline passes); return whether it held."""
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        gevent.sleep(0.01)
    return predicate()


def test_a_blocked_loop_shows_as_lag_and_the_next_ticks_measure_again():
    lag = LoopLag(gevent.get_hub().loop, interval=0.05)
    lag.start()
    try:
        gevent.sleep(0.2)
        assert lag.seconds < 0.05
        time.sleep(0.3)  # the loop is held: the timer cannot fire on time
        gevent.sleep(0.01)
        assert lag.seconds >= 0.2
        assert _until(lambda: lag.seconds < 0.05), "later ticks are measured again"
        assert lag.worst() >= 0.2, "the window still holds the stall"
    finally:
        lag.close()


def test_the_worst_is_forgotten_after_the_window():
    lag = LoopLag(gevent.get_hub().loop, interval=0.02, window=0.3)
    assert lag.worst() == 0.0, "nothing measured yet"
    lag.start()
    try:
        gevent.sleep(0.05)
        time.sleep(0.2)
        gevent.sleep(0.01)
        assert lag.worst() >= 0.15
        assert _until(lambda: lag.worst() < 0.15), "a stall older than the window no longer counts"
    finally:
        lag.close()


def test_a_closed_lag_measures_nothing():
    lag = LoopLag(gevent.get_hub().loop, interval=0.02)
    lag.start()
    gevent.sleep(0.05)
    lag.close()
    time.sleep(0.1)
    gevent.sleep(0.05)
    assert lag.seconds < 0.1, "no tick after close"
