"""The heap trimmer (osproc/heap.py): one trim per burst of calls, paced, at the next turn of the loop."""

import gevent
import pytest

from keplerd.osproc import heap


@pytest.fixture
def trims(monkeypatch):
    calls = []
    monkeypatch.setattr(heap, "_malloc_trim", lambda pad: calls.append(pad))
    return calls


def wait_idle(trimmer):
    with gevent.Timeout(10):
        while trimmer._timer is not None:
            gevent.sleep(0.01)


def test_calls_in_a_burst_make_one_trim_at_the_next_turn_of_the_loop(trims):
    trimmer = heap.Trimmer(pace=0.05)
    for _ in range(100):
        trimmer.soon()
    assert trims == []  # not inside the caller's work: at the next turn of the loop
    wait_idle(trimmer)
    assert trims == [0]


def test_a_call_after_a_trim_waits_out_the_pace_then_trims_again(trims):
    trimmer = heap.Trimmer(pace=0.05)
    trimmer.soon()
    wait_idle(trimmer)
    trimmer.soon()
    trimmer.soon()
    wait_idle(trimmer)
    assert trims == [0, 0]


def test_without_glibc_nothing_is_scheduled(monkeypatch):
    monkeypatch.setattr(heap, "_malloc_trim", None)
    trimmer = heap.Trimmer()
    trimmer.soon()
    assert trimmer._timer is None
