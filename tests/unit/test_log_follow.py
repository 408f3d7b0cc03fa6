"""Followers and cursors: bounded live feeds, batches of a reading, cursor expiry."""

import json

import pytest

from keplerd.logs.cursor import LogCursor
from keplerd.logs.cursor_table import CursorTable, FollowerDropped, Reading
from keplerd.control.protocol import RawJSON, decode, encode, encode_parts
from keplerd.logs.batch_json import SHARED, Chunk, SharedBatches, encode_runs, merge_runs
from keplerd.logs.follow import LiveFeed
from keplerd.model.errors import UnknownName

# -- live feed ---------------------------------------------------------------------------------


def test_a_live_feed_queues_chunks_of_selected_logs_only():
    listeners = set()
    feed = LiveFeed(services=["web"], no_hook=True)
    feed.attach(listeners)
    for listener in tuple(listeners):
        listener("web", "stdout", b"1 a\n")
        listener("web.pre_start", "stdout", b"1 hook\n")
        listener("api", "stdout", b"1 other\n")
        listener("web", "stdout", b"2 b\n")
        listener("web", "stderr", b"3 c\n")
    assert feed.take(1 << 20) == [["web", "stdout", "1 a\n2 b\n"], ["web", "stderr", "3 c\n"]]
    assert not feed.pending


def test_take_returns_about_max_bytes_and_keeps_the_rest():
    feed = LiveFeed()
    for index in range(10):
        feed("web", "stdout", b"%d %s\n" % (index, b"x" * 100))
    first = feed.take(300)
    assert len(first[0][2]) <= 300 and feed.pending
    rest = feed.take(1 << 20)
    assert (first[0][2] + rest[0][2]).count("\n") == 10


def test_a_follower_over_its_budget_is_dropped_and_unhooked():
    listeners = set()
    feed = LiveFeed(budget=1000)
    feed.attach(listeners)
    for _ in range(20):
        for listener in tuple(listeners):
            listener("web", "stdout", b"1 " + b"x" * 97 + b"\n")
    assert feed.dropped
    assert listeners == set(), "a dropped follower costs the writers nothing more"
    assert feed.wait(0), "a reader waiting for lines learns at once"


def test_a_dropped_follower_raises_on_its_next_read(tmp_path):
    feed = LiveFeed(budget=10)
    reading = Reading("id", LogCursor(str(tmp_path), []), feed)
    feed("web", "stdout", b"1 more than ten bytes\n")
    with pytest.raises(FollowerDropped):
        reading.next_batch(wait=0)


def test_a_reading_gives_stored_lines_then_live_chunks(tmp_path):
    (tmp_path / "web.stdout.log").write_text("1 stored\n")
    feed = LiveFeed()
    reading = Reading("id", LogCursor(str(tmp_path), ["web"]), feed)
    feed("web", "stdout", b"2 live\n")
    assert reading.next_batch() == {"lines": [[1, "web", "stdout", "stored"]], "done": False}
    assert plain(reading.next_batch()) == {"chunks": [["web", "stdout", "2 live\n"]], "done": False}
    assert plain(reading.next_batch(wait=0.01)) == {"chunks": [], "done": False}


def plain(batch):
    """The batch as the client decodes it (live chunks come encoded already)."""
    return {key: json.loads(value.data) if isinstance(value, RawJSON) else value for key, value in batch.items()}


def test_followers_at_one_place_share_one_encoded_batch_and_each_gets_every_chunk():
    listeners = set()
    feeds = [LiveFeed() for _ in range(3)]
    try:
        for feed in feeds:
            feed.attach(listeners)
        for write in [("web", "stdout", b"1 a\n"), ("web", "stdout", b"2 \xc3\xa9\"\\\n"), ("web", "stderr", b"3 c\n")]:
            for listener in tuple(listeners):  # as LogWriter.write hands each write to every listener
                listener(*write)
        first, second = feeds[0].take_encoded(1 << 20), feeds[1].take_encoded(1 << 20)
        assert second is first, "encoded once for both"
        assert json.loads(first.data) == [["web", "stdout", '1 a\n2 \u00e9"\\\n'], ["web", "stderr", "3 c\n"]]
        for listener in tuple(listeners):
            listener("web", "stdout", b"4 d\n")
        assert json.loads(feeds[0].take_encoded(1 << 20).data) == [["web", "stdout", "4 d\n"]]
        behind = feeds[2].take_encoded(1 << 20)
        assert json.loads(behind.data) == json.loads(first.data) + [["web", "stdout", "4 d\n"]], \
            "a follower elsewhere gets its own batch: every chunk once, in order"
    finally:
        for feed in feeds:
            feed.detach()


def test_shared_batches_are_few_and_go_with_the_last_follower():
    shared = SharedBatches(size=2)
    shared.users = 1
    batches = [(shared.chunk("web", "stdout", b"%d x\n" % index),) for index in range(3)]
    kept = [shared.encoded(batch) for batch in batches]
    assert shared.encoded(batches[2]) is kept[2]
    assert shared.encoded(batches[0]) is not kept[0], "only the newest two are kept"
    shared.leave()
    assert shared.encoded(batches[2]) is not kept[2], "no follower left: nothing kept"


def test_one_write_is_one_chunk_for_every_follower():
    listeners = set()
    feeds = [LiveFeed() for _ in range(2)]
    try:
        for feed in feeds:
            feed.attach(listeners)
        for listener in tuple(listeners):
            listener("web", "stdout", b"1 a\n")
        assert feeds[0]._pop(100)[0] is feeds[1]._pop(100)[0]
    finally:
        for feed in feeds:
            feed.detach()


@pytest.mark.parametrize("writes", [
    [b"1 a\n", b"2 b\n"],
    [b"1 \xc3", b"\xa9\n"],               # a character cut between two writes: the run is encoded whole
    [b"1 \xc3\n", b"2 \xff\x00\t\"\\/\n"],  # bytes that are not UTF-8, controls, quotes
])
def test_a_batch_encoded_chunk_by_chunk_is_the_batch_encoded_whole(writes):
    chunks = [Chunk("web", "stdout", data) for data in writes] + [Chunk("web.1", "stderr", b"3 \xe2\x82\xac\n")]
    assert json.loads(encode_runs(chunks).data) == merge_runs(chunks)
    assert encode_runs(chunks).data == json.dumps(merge_runs(chunks), separators=(",", ":"),
                                                  ensure_ascii=False).encode()


def test_every_follower_that_stops_listening_leaves_the_shared_batches_once():
    users = SHARED.users
    listeners = set()
    feed = LiveFeed()
    feed.attach(listeners)
    feed.attach(listeners)  # a recreated project: attached again
    assert SHARED.users == users + 1
    feed.detach()
    feed.detach()
    assert SHARED.users == users


def test_a_frame_with_a_raw_field_is_the_frame_of_its_value():
    chunks = [["web", "stdout", "1 \u00e9\n"]]
    raw = RawJSON(json.dumps(chunks, ensure_ascii=False).encode())
    for response in ({"ok": True, "chunks": raw, "done": False}, {"chunks": raw}):
        frame = encode({"id": 7, "response": response})
        expected = {"id": 7, "response": {**response, "chunks": chunks}}
        assert decode(frame[4:]) == expected
        assert int.from_bytes(frame[:4], "big") == len(frame) - 4
        parts = encode_parts({"id": 7, "response": response})
        assert b"".join(parts) == frame
        assert any(part is raw.data for part in parts), "the shared bytes are sent as they are, not copied"


def test_a_frame_with_two_raw_fields_and_nothing_else():
    frame = encode({"id": None, "response": {"a": RawJSON(b"[1]"), "b": RawJSON(b'"x"')}})
    assert decode(frame[4:]) == {"id": None, "response": {"a": [1], "b": "x"}}


def test_a_reading_without_follow_is_done_after_the_stored_lines(tmp_path):
    (tmp_path / "web.stdout.log").write_text("1 stored\n")
    reading = Reading("id", LogCursor(str(tmp_path), ["web"]))
    assert reading.next_batch()["done"] is True


# -- cursor table --------------------------------------------------------------------------------


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Owner:
    closed = False


def make_reading(tmp_path, owner=None):
    listeners = set()
    feed = LiveFeed()
    feed.attach(listeners)
    return Reading("id", LogCursor(str(tmp_path), []), feed, owner), listeners


def test_idle_cursors_expire_after_five_minutes(tmp_path):
    clock = Clock()
    table = CursorTable(clock=clock)
    try:
        reading, listeners = make_reading(tmp_path)
        cursor_id = table.open(reading)
        clock.now += 299
        assert table.get(cursor_id) is reading
        clock.now += 299
        assert table.get(cursor_id) is reading, "using a cursor keeps it alive"
        clock.now += 300
        with pytest.raises(UnknownName, match="unknown or expired"):
            table.get(cursor_id)
        assert listeners == set(), "an expired follower stops listening"
    finally:
        table.close_all()


def test_cursors_of_a_client_that_left_are_closed(tmp_path):
    table = CursorTable(clock=Clock())
    try:
        owner = Owner()
        cursor_id = table.open(make_reading(tmp_path, owner)[0])
        other_id = table.open(make_reading(tmp_path, Owner())[0])
        owner.closed = True
        assert table.expire() == 1
        with pytest.raises(UnknownName):
            table.get(cursor_id)
        assert table.get(other_id)
    finally:
        table.close_all()


def test_a_client_that_ends_its_session_has_its_cursors_closed_at_once(tmp_path):
    table = CursorTable(clock=Clock())
    try:
        owner = Owner()
        reading, listeners = make_reading(tmp_path, owner)
        cursor_id = table.open(reading)
        other_id = table.open(make_reading(tmp_path, Owner())[0])
        table.close_owned_by(owner)
        with pytest.raises(UnknownName):
            table.get(cursor_id)
        assert listeners == set(), "its follower stops listening"
        assert table.get(other_id), "another client's cursor stays"
    finally:
        table.close_all()
