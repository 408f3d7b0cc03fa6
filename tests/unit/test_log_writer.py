"""Log files: two-segment rotation, write buffers and their flush triggers, store and listeners."""

import os

import pytest

from keplerd.logs.files import FLUSH_SECONDS, SegmentedFile, StreamLog
from keplerd.logs.settings import LogSettings
from keplerd.logs.writer import LogWriter


class FakeTimers:
    """Timers that fire only when the test says so."""

    def __init__(self):
        self.pending = []

    def __call__(self, seconds, callback):
        timer = FakeTimer(self, seconds, callback)
        self.pending.append(timer)
        return timer

    def fire_all(self):
        for timer in list(self.pending):
            timer.callback()


class FakeTimer:
    def __init__(self, timers, seconds, callback):
        self.timers, self.seconds, self.callback = timers, seconds, callback

    def cancel(self):
        self.timers.pending.remove(self)


def lines(count, start=0, width=40):
    return b"".join(b"1700000000000 " + (b"line %06d " % i).ljust(width, b".") + b"\n"
                    for i in range(start, start + count))


def read(path):
    try:
        with open(path, "rb") as file:
            return file.read()
    except FileNotFoundError:
        return b""


def stored(path):
    return read(path + ".1") + read(path)


def disk_size(path):
    return sum(os.path.getsize(each) for each in (path, path + ".1") if os.path.exists(each))


# -- rotation --------------------------------------------------------------------------


def test_without_max_size_everything_goes_to_one_file(tmp_path):
    path = str(tmp_path / "web.stdout.log")
    file = SegmentedFile(path)
    for start in range(0, 1000, 100):
        file.write(lines(100, start))
    file.close()
    assert read(path) == lines(1000)
    assert not os.path.exists(path + ".1")


def test_rotation_keeps_disk_under_max_size_and_the_newest_lines(tmp_path):
    path = str(tmp_path / "web.stdout.log")
    file = SegmentedFile(path, max_size=4096)
    for start in range(0, 2000, 7):
        file.write(lines(7, start))
        assert disk_size(path) <= 4096
    file.close()
    kept = stored(path)
    assert kept.endswith(lines(1, 2001))  # the last chunk started at 1995
    assert len(kept) >= 2048 - 64, "at least the newest half (minus one line) is kept"
    assert os.path.getsize(path) <= 2048 and os.path.getsize(path + ".1") <= 2048


def test_rotation_never_cuts_a_line_between_segments(tmp_path):
    path = str(tmp_path / "web.stdout.log")
    file = SegmentedFile(path, max_size=1000)
    for start in range(0, 300, 3):
        file.write(lines(3, start))
    file.close()
    for each in (path, path + ".1"):
        data = read(each)
        assert data.endswith(b"\n")
        assert all(line.startswith(b"1700000000000 line ") for line in data.split(b"\n")[:-1])
    kept = [int(line.split()[2]) for line in stored(path).split(b"\n")[:-1]]
    assert kept == list(range(kept[0], 300)), "the kept lines are the newest, in order, none missing"


def test_a_chunk_bigger_than_max_size_keeps_its_newest_lines(tmp_path):
    path = str(tmp_path / "web.stdout.log")
    file = SegmentedFile(path, max_size=2000)
    file.write(lines(1000))
    file.close()
    assert disk_size(path) <= 2000
    assert stored(path).endswith(lines(1, 999))


def test_a_line_longer_than_a_segment_is_shortened_to_fit(tmp_path):
    path = str(tmp_path / "web.stdout.log")
    file = SegmentedFile(path, max_size=2000)
    file.write(b"1 " + b"x" * 1500 + b"\n" + b"2 short\n")
    file.close()
    assert disk_size(path) <= 2000
    assert stored(path).endswith(b"2 short\n")
    assert b"1 xxxx" in stored(path)


def test_an_existing_file_counts_towards_its_segment(tmp_path):
    path = str(tmp_path / "web.stdout.log")
    with open(path, "wb") as file:
        file.write(lines(20))
    segmented = SegmentedFile(path, max_size=2 * len(lines(20)))
    segmented.write(lines(1, 20))
    segmented.close()
    assert read(path + ".1") == lines(20)
    assert read(path) == lines(1, 20)


def test_write_errors_are_logged_and_do_not_raise(tmp_path, caplog):
    path = str(tmp_path / "missing-dir" / "web.stdout.log")
    file = SegmentedFile(path)
    file.write(b"1 x\n")
    file.write(b"1 y\n")
    assert sum("cannot write" in record.message for record in caplog.records) == 1


def test_a_symlink_in_place_of_the_log_is_not_followed(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_bytes(b"")
    path = str(tmp_path / "web.stdout.log")
    os.symlink(target, path)
    SegmentedFile(path).write(b"1 x\n")
    assert target.read_bytes() == b""


# -- buffering ---------------------------------------------------------------------------


def test_buffer_size_zero_writes_each_chunk_at_once(tmp_path):
    path = str(tmp_path / "web.stdout.log")
    timers = FakeTimers()
    stream = StreamLog(path, buffer_size=0, timers=timers)
    stream.append(b"1 a\n")
    assert read(path) == b"1 a\n"
    assert timers.pending == []


def test_a_buffer_is_written_when_it_is_full(tmp_path):
    path = str(tmp_path / "web.stdout.log")
    stream = StreamLog(path, buffer_size=150, timers=FakeTimers())  # lines of 55 bytes
    stream.append(lines(1, width=40))
    assert read(path) == b""
    stream.append(lines(1, 1, width=40))
    assert read(path) == b""
    stream.append(lines(1, 2, width=40))
    assert read(path) == lines(3, width=40)


def test_a_flush_timer_runs_only_while_something_is_buffered(tmp_path):
    path = str(tmp_path / "web.stdout.log")
    timers = FakeTimers()
    stream = StreamLog(path, buffer_size=1 << 20, timers=timers)
    assert timers.pending == []
    stream.append(b"1 a\n")
    stream.append(b"1 b\n")
    assert [timer.seconds for timer in timers.pending] == [FLUSH_SECONDS], "one timer, at most a second"
    timers.fire_all()
    assert read(path) == b"1 a\n1 b\n"
    assert timers.pending == [], "nothing buffered, no timer"
    stream.append(b"1 c\n")
    assert len(timers.pending) == 1


def test_flush_writes_the_buffer_and_cancels_the_timer(tmp_path):
    path = str(tmp_path / "web.stdout.log")
    timers = FakeTimers()
    stream = StreamLog(path, buffer_size=1 << 20, timers=timers)
    stream.append(b"1 a\n")
    stream.flush()
    assert read(path) == b"1 a\n" and timers.pending == []


def test_close_flushes(tmp_path):
    path = str(tmp_path / "web.stdout.log")
    stream = StreamLog(path, buffer_size=1 << 20, timers=FakeTimers())
    stream.append(b"1 a\n")
    stream.close()
    assert read(path) == b"1 a\n"


def test_buffered_writes_rotate_like_direct_ones(tmp_path):
    path = str(tmp_path / "web.stdout.log")
    timers = FakeTimers()
    stream = StreamLog(path, max_size=2000, buffer_size=300, timers=timers)
    for index in range(500):
        stream.append(lines(1, index))
    stream.flush()
    assert disk_size(path) <= 2000
    assert stored(path).endswith(lines(1, 499))


def test_clear_drops_the_buffer_and_the_files(tmp_path):
    path = str(tmp_path / "web.stdout.log")
    timers = FakeTimers()
    stream = StreamLog(path, max_size=200, buffer_size=1 << 20, timers=timers)
    stream.append(lines(10))
    stream.flush()
    stream.append(b"1 pending\n")
    stream.clear()
    assert not os.path.exists(path) and not os.path.exists(path + ".1")
    assert timers.pending == []
    stream.append(b"1 after\n")
    stream.flush()
    assert read(path) == b"1 after\n"


# -- writer --------------------------------------------------------------------------------


@pytest.mark.parametrize("store", [True, False, {"stdout": True, "stderr": False}])
def test_listeners_see_every_line_stored_or_not(tmp_path, store):
    store = {"stdout": store, "stderr": store} if isinstance(store, bool) else store
    seen = []
    writer = LogWriter(str(tmp_path), "web", {lambda *args: seen.append(args)}, LogSettings({"store": store}),
                       FakeTimers())
    writer.write("stdout", b"1 out\n")
    writer.write("stderr", b"1 err\n")
    writer.close()
    assert seen == [("web", "stdout", b"1 out\n"), ("web", "stderr", b"1 err\n")]
    for stream in ("stdout", "stderr"):
        expected = b"1 out\n" if stream == "stdout" else b"1 err\n"
        assert read(str(tmp_path / f"web.{stream}.log")) == (expected if store[stream] else b"")
