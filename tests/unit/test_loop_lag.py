"""The loop-lag gauge (SPEC §19): a blocked loop shows, and the timer keeps measuring after it."""

import time

import gevent

from keplerd.metrics.exporter import LoopLag


def test_a_blocked_loop_shows_as_lag_and_the_next_ticks_measure_again():
    lag = LoopLag(gevent.get_hub().loop, interval=0.05)
    lag.watched()
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


def test_nobody_watching_no_timer_and_it_stops_after_the_watch():
    lag = LoopLag(gevent.get_hub().loop, interval=0.02, watched_for=0.1)
    try:
        time.sleep(0.2)
        gevent.sleep(0.05)
        assert lag.seconds == 0.0, "not armed before a scrape"
        lag.watched()
        gevent.sleep(0.3)   # past the watch: the timer has stopped re-arming
        time.sleep(0.2)
        gevent.sleep(0.05)
        assert lag.seconds < 0.1, "a stopped timer measures nothing"
    finally:
        lag.close()
