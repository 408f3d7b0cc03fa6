from keplerd.model.backoff import Backoff, wants_restart


def test_policies_decide_on_the_exit():
    assert wants_restart("always", 0) and wants_restart("always", 1)
    assert not wants_restart("on-failure", 0)
    assert wants_restart("on-failure", 1) and wants_restart("on-failure", -9)
    assert not wants_restart("no", 1)


def test_first_restart_is_immediate_then_delays_double_up_to_the_maximum():
    backoff = Backoff(first=0.1, maximum=0.5, max_retries=None)
    assert [backoff.next_delay(1) for _ in range(6)] == [0.0, 0.1, 0.2, 0.4, 0.5, 0.5]


def test_a_run_of_ten_seconds_resets_the_backoff():
    backoff = Backoff(first=0.1, maximum=30, max_retries=None)
    backoff.next_delay(1), backoff.next_delay(1), backoff.next_delay(1)
    assert backoff.next_delay(10) == 0.0
    assert backoff.next_delay(1) == 0.1


def test_zero_backoff_restarts_at_once():
    backoff = Backoff(first=0, maximum=30, max_retries=None)
    assert {backoff.next_delay(0.01) for _ in range(20)} == {0.0}


def test_max_retries_counts_consecutive_quick_failures():
    backoff = Backoff(first=0, maximum=30, max_retries=2)
    assert backoff.next_delay(1) == 0.0 and backoff.next_delay(1) == 0.0
    assert backoff.next_delay(1) is None
    fresh = Backoff(first=0, maximum=30, max_retries=2)
    fresh.next_delay(1), fresh.next_delay(1)
    assert fresh.next_delay(11) == 0.0, "a long run starts the count again"
