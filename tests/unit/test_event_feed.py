"""The event feed (SPEC §19): filtered per reader, never blocking, a reader too far behind dropped."""

import pytest

from keplerd.supervise.events import Dropped, Feed, Subscriber


def _event(config, n=0, text=""):
    return {"time": 1.0, "config": config, "config_path": f"/{config}", "service": "web", "kind": "state",
            "n": n, "reason": text}


def test_each_reader_gets_the_events_its_filter_accepts_in_order():
    feed = Feed()
    mine, everything = Subscriber(), Subscriber()
    feed.join(mine, lambda event: event["config_path"] == "/a")
    feed.join(everything, lambda event: True)
    for n, config in enumerate(["a", "b", "a"]):
        feed.publish(_event(config, n))
    assert [event["n"] for event in mine.drain()] == [0, 2]
    assert [event["n"] for event in everything.drain()] == [0, 1, 2]


def test_a_reader_over_its_budget_is_dropped_and_the_others_are_not():
    feed = Feed()
    slow, fast = Subscriber(budget=8 * 1024 * 1024), Subscriber(budget=8 * 1024 * 1024)
    feed.join(slow, lambda event: True)
    feed.join(fast, lambda event: True)
    for n in range(100):
        feed.publish(_event("a", n, "x" * 100_000))  # 10 MB in all: more than 8 MiB
        assert fast.get(timeout=0)["n"] == n
    with pytest.raises(Dropped):
        while True:
            slow.get(timeout=0)


def test_a_reader_that_left_gets_nothing():
    feed = Feed()
    reader = Subscriber()
    feed.join(reader, lambda event: True)
    feed.leave(reader)
    feed.publish(_event("a"))
    assert reader.drain() == []
