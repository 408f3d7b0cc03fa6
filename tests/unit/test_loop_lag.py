"""The loop-lag gauge (SPEC §19): a blocked loop shows, and the timer keeps measuring after it."""

import time

import gevent

from keplerd.metrics.exporter import LoopLag


def test_a_blocked_loop_shows_as_lag_and_the_next_ticks_measure_again():
    lag = LoopLag(gevent.get_hub().loop, interval=0.05)
    try:
        gevent.sleep(0.2)
        assert lag.seconds < 0.05
        time.sleep(0.3)  # the loop is held: the timer cannot fire on time
        gevent.sleep(0.01)
        assert lag.seconds >= 0.2
        deadline = time.monotonic() + 10
        while lag.seconds >= 0.05 and time.monotonic() < deadline:
            gevent.sleep(0.05)
        assert lag.seconds < 0.05, "later ticks are measured again"
    finally:
        lag.close()
