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


def test_events_are_numbered_and_a_reader_back_after_a_cut_gets_those_after_its_last():
    feed = Feed("boot-1")
    for n in range(5):
        feed.publish(_event("a" if n != 3 else "b", n))
    assert [event["seq"] for event in feed.hand_over()["recent"]] == [1, 2, 3, 4, 5]
    reader = Subscriber()
    replay, missed = feed.join(reader, lambda event: event["config_path"] == "/a", after=2, feed_id="boot-1")
    assert [event["seq"] for event in replay] == [3, 5] and missed == 0
    feed.publish(_event("a", 5))
    assert [event["seq"] for event in reader.drain()] == [6], "live events come after the replay, none twice"


def test_the_sequence_goes_on_in_the_next_image_of_the_daemon():
    old = Feed("boot-1")
    for n in range(3):
        old.publish(_event("a", n))
    new = Feed("boot-2")
    new.take_over(old.hand_over())
    new.publish(_event("a", 3))
    replay, missed = new.join(Subscriber(), lambda event: True, after=1, feed_id="boot-1")
    assert [event["seq"] for event in replay] == [2, 3, 4] and missed == 0 and new.id == "boot-1"


def test_a_reader_too_far_behind_learns_how_many_it_missed_and_another_feed_replays_nothing():
    feed = Feed("boot-1", recent=3)
    for n in range(10):
        feed.publish(_event("a", n))
    replay, missed = feed.join(Subscriber(), lambda event: True, after=2, feed_id="boot-1")
    assert [event["seq"] for event in replay] == [8, 9, 10] and missed == 5
    assert feed.join(Subscriber(), lambda event: True, after=2, feed_id="boot-0") == ([], None)
    assert feed.join(Subscriber(), lambda event: True) == ([], 0)
