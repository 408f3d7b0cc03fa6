"""Reading logs back: merge order, head and tail, positions across rotation and truncation."""

import os

from keplerd.logs import reader
from keplerd.logs.cursor import LogCursor
from keplerd.logs.files import SegmentedFile
from keplerd.logs.format import owner_of, split_log_name
from keplerd.logs.reader import StreamFiles, belongs_to, log_names, selected_names


def write(directory, name, stream, text, mode="a"):
    with open(os.path.join(directory, f"{name}.{stream}.log"), mode) as file:
        file.write(text)


def stored_lines(stamps_and_texts):
    return "".join(f"{stamp} {text}\n" for stamp, text in stamps_and_texts)


def read_all(cursor, max_lines=3):
    lines = []
    while not cursor.exhausted:
        lines.extend(cursor.read(max_lines=max_lines))
    return [tuple(line) for line in lines]


# -- names ------------------------------------------------------------------------------------


def test_log_names_include_hook_logs_and_lone_previous_segments(tmp_path):
    for entry in ("web.stdout.log", "web.pre_start.stderr.log", "global.on_init.stdout.log",
                  "db.stdout.log.1", "notes.txt", "x.stdout.log.2"):
        (tmp_path / entry).write_text("")
    assert log_names(str(tmp_path)) == ["db", "global.on_init", "web", "web.pre_start"]


def test_hook_logs_belong_to_their_service_and_no_hook_leaves_them_out():
    assert belongs_to("web.pre_start", ["web"], no_hook=False)
    assert not belongs_to("web.pre_start", ["web"], no_hook=True)
    assert not belongs_to("web-api", ["web"], no_hook=False)
    assert not belongs_to("global.pre_start", ["web"], no_hook=False)
    assert belongs_to("global.pre_start", [], no_hook=False)
    assert not belongs_to("global.pre_start", [], no_hook=True)


def test_selected_names_filters_by_service(tmp_path):
    for entry in ("web.stdout.log", "web.post_start.stdout.log", "api.stdout.log", "global.on_init.stdout.log"):
        (tmp_path / entry).write_text("")
    assert selected_names(str(tmp_path), ["web"]) == ["web", "web.post_start"]
    assert selected_names(str(tmp_path), [], no_hook=True) == ["api", "web"]


# -- merging ------------------------------------------------------------------------------------


def test_streams_are_merged_by_timestamp(tmp_path):
    write(tmp_path, "web", "stdout", stored_lines([(1, "w1"), (4, "w4"), (6, "w6")]))
    write(tmp_path, "web", "stderr", stored_lines([(2, "e2"), (5, "e5")]))
    write(tmp_path, "db", "stdout", stored_lines([(3, "d3"), (7, "d7")]))
    cursor = LogCursor(str(tmp_path), ["db", "web"])
    assert [line[3] for line in read_all(cursor)] == ["w1", "e2", "d3", "w4", "e5", "w6", "d7"]


def test_equal_timestamps_keep_stream_order_then_file_order(tmp_path):
    write(tmp_path, "web", "stdout", stored_lines([(5, "out-a"), (5, "out-b")]))
    write(tmp_path, "web", "stderr", stored_lines([(5, "err-a"), (5, "err-b")]))
    write(tmp_path, "api", "stdout", stored_lines([(5, "api-a")]))
    cursor = LogCursor(str(tmp_path), ["api", "web"])
    assert [line[1:] for line in read_all(cursor, max_lines=1)] == [
        ("api", "stdout", "api-a"), ("web", "stdout", "out-a"), ("web", "stdout", "out-b"),
        ("web", "stderr", "err-a"), ("web", "stderr", "err-b")]


def test_lines_keep_their_text_exactly(tmp_path):
    write(tmp_path, "web", "stdout", "1 two  spaces \r and a return\n2 \n3 ünïcödé\n")
    assert [line[3] for line in read_all(LogCursor(str(tmp_path), ["web"]))] == [
        "two  spaces \r and a return", "", "ünïcödé"]


def test_previous_segment_is_read_before_the_current_file(tmp_path):
    write(tmp_path, "web", "stdout", stored_lines([(3, "new")]))
    (tmp_path / "web.stdout.log.1").write_text(stored_lines([(1, "old"), (2, "older-but-later")]))
    assert [line[3] for line in read_all(LogCursor(str(tmp_path), ["web"]))] == ["old", "older-but-later", "new"]


# -- head and tail ----------------------------------------------------------------------------------


def test_head_stops_after_n_merged_lines(tmp_path):
    write(tmp_path, "web", "stdout", stored_lines([(i, f"o{i}") for i in range(0, 100, 2)]))
    write(tmp_path, "web", "stderr", stored_lines([(i, f"e{i}") for i in range(1, 100, 2)]))
    cursor = LogCursor(str(tmp_path), ["web"], head=5)
    assert [line[3] for line in read_all(cursor)] == ["o0", "e1", "o2", "e3", "o4"]


def test_tail_gives_the_last_n_lines_of_the_merge(tmp_path):
    write(tmp_path, "web", "stdout", stored_lines([(i, f"o{i}") for i in range(0, 100, 2)]))
    write(tmp_path, "web", "stderr", stored_lines([(i, f"e{i}") for i in range(1, 100, 2)]))
    write(tmp_path, "db", "stdout", stored_lines([(1000, "db-last")]))
    cursor = LogCursor(str(tmp_path), ["db", "web"], tail=4)
    assert [line[3] for line in read_all(cursor)] == ["e97", "o98", "e99", "db-last"]


def test_tail_larger_than_the_log_gives_everything(tmp_path):
    write(tmp_path, "web", "stdout", stored_lines([(1, "a"), (2, "b")]))
    assert [line[3] for line in read_all(LogCursor(str(tmp_path), ["web"], tail=50))] == ["a", "b"]
    assert read_all(LogCursor(str(tmp_path), ["web"], tail=0)) == []


def test_tail_spans_the_previous_segment(tmp_path):
    (tmp_path / "web.stdout.log.1").write_text(stored_lines([(1, "a"), (2, "b"), (3, "c")]))
    write(tmp_path, "web", "stdout", stored_lines([(4, "d")]))
    assert [line[3] for line in read_all(LogCursor(str(tmp_path), ["web"], tail=3))] == ["b", "c", "d"]


class CountingFile:
    """A file that counts the bytes read through it."""

    def __init__(self, file, counter):
        self.file, self.counter = file, counter

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()

    def seek(self, *args):
        return self.file.seek(*args)

    def read(self, size=-1):
        data = self.file.read(size)
        self.counter.append(len(data))
        return data


def test_tail_reads_only_the_end_of_a_large_file(tmp_path, monkeypatch):
    big = stored_lines([(i, f"line {i} " + "x" * 80) for i in range(100_000)])  # ~9.5 MB
    write(tmp_path, "web", "stdout", big)
    files = StreamFiles(str(tmp_path), "web", "stdout")
    reads = []
    monkeypatch.setattr(reader, "open", lambda *args: CountingFile(open(*args), reads), raising=False)
    position, found = files.tail_start(100, files.end())
    assert found == 100
    assert sum(reads) <= 64 * 1024 + 1, "only the last block (and the last byte) is read"
    data, _ = files.read(position, files.end())
    assert data.decode().count("\n") == 100 and data.decode().startswith("99900 ")


# -- positions and bounds ---------------------------------------------------------------------------


def test_a_cursor_reads_up_to_where_the_logs_ended_when_it_was_made(tmp_path):
    write(tmp_path, "web", "stdout", stored_lines([(1, "before")]))
    cursor = LogCursor(str(tmp_path), ["web"])
    write(tmp_path, "web", "stdout", stored_lines([(2, "after")]))
    assert [line[3] for line in read_all(cursor)] == ["before"]


def test_a_position_follows_its_file_when_it_is_rotated(tmp_path):
    path = str(tmp_path / "web.stdout.log")
    writer = SegmentedFile(path, max_size=2 * 60)
    writer.write(stored_lines([(1, "a" * 20), (2, "b" * 20)]).encode())  # 2 x 23 bytes
    files = StreamFiles(str(tmp_path), "web", "stdout")
    data, position = files.read(None, None, size=30)
    assert data == b"1 " + b"a" * 20 + b"\n"
    writer.write(stored_lines([(3, "c" * 20)]).encode())  # no room: the file becomes .1
    assert os.path.exists(path + ".1")
    rest, position = files.read(position, None)
    assert rest == b"2 " + b"b" * 20 + b"\n"
    rest, position = files.read(position, None)
    assert rest == b"3 " + b"c" * 20 + b"\n"


def test_a_truncated_file_resets_the_offset(tmp_path):
    write(tmp_path, "web", "stdout", stored_lines([(1, "one"), (2, "two")]))
    files = StreamFiles(str(tmp_path), "web", "stdout")
    data, position = files.read(None, None)
    assert data.count(b"\n") == 2
    write(tmp_path, "web", "stdout", stored_lines([(3, "3")]), mode="w")  # shorter than our offset
    data, position = files.read(position, None)
    assert data == b"3 3\n"


def test_a_file_that_was_replaced_starts_again(tmp_path):
    write(tmp_path, "web", "stdout", stored_lines([(1, "one"), (2, "two")]))
    files = StreamFiles(str(tmp_path), "web", "stdout")
    _, position = files.read(None, None)
    os.unlink(tmp_path / "web.stdout.log")
    write(tmp_path, "web", "stdout", stored_lines([(3, "three"), (4, "four"), (5, "five")]))
    data, _ = files.read(position, None)
    assert data.startswith(b"3 three\n")


def test_a_cursor_whose_files_were_cleared_ends(tmp_path):
    write(tmp_path, "web", "stdout", stored_lines([(i, f"l{i}") for i in range(10)]))
    cursor = LogCursor(str(tmp_path), ["web"])
    first = cursor.read(max_lines=2)
    os.unlink(tmp_path / "web.stdout.log")
    write(tmp_path, "web", "stdout", stored_lines([(99, "new run")]))
    rest = read_all(cursor)
    assert [line[3] for line in first] == ["l0", "l1"]
    assert "new run" not in [line[3] for line in rest], "lines after the cursor began are not its"


def test_damaged_lines_take_the_previous_time(tmp_path):
    write(tmp_path, "web", "stdout", "5 ok\nno stamp here\n7 fine\n")
    assert [line[0] for line in read_all(LogCursor(str(tmp_path), ["web"]))] == [5, 5, 7]


def test_tail_counts_an_unfinished_last_line_as_a_line(tmp_path):
    write(tmp_path, "web", "stdout", "1 a\n2 b\n3 c\n4 unfinished")
    assert [line[3] for line in read_all(LogCursor(str(tmp_path), ["web"], tail=2))] == ["c", "unfinished"]
    assert [line[3] for line in read_all(LogCursor(str(tmp_path), ["web"], tail=9))] == ["a", "b", "c", "unfinished"]


def test_since_finds_the_first_line_by_binary_search_as_a_scan_would(tmp_path):
    import random

    rng = random.Random(16)
    stamps, stamp = [], 1_000
    for _ in range(20_000):
        stamp += rng.choice((0, 0, 1, 3, 50))  # equal stamps happen: the first of them is the start
        stamps.append(stamp)
    lines = [f"{stamp} line {index} {'x' * rng.randrange(0, 300)}" for index, stamp in enumerate(stamps)]
    write(str(tmp_path), "web", "stdout", "".join(line + "\n" for line in lines))
    files = StreamFiles(str(tmp_path), "web", "stdout")
    bound = files.end()
    for since in [0, stamps[0], stamps[1], *rng.sample(stamps, 40), stamps[-1], stamps[-1] + 1]:
        expected = next((index for index, stamp in enumerate(stamps) if stamp >= since), len(stamps))
        cursor = LogCursor(str(tmp_path), ["web"], since=since)
        texts = [text for batch in iter(cursor.read, []) for _, _, _, text in batch]
        assert [int(text.split()[1]) for text in texts[:1]] == ([expected] if expected < len(stamps) else [])
        assert len(texts) == len(stamps) - expected
    assert files.since_start(stamps[-1] + 1, bound) == bound


def test_an_instance_owns_its_logs_and_its_hook_logs():
    assert split_log_name("web.2.pre_start") == ("web.2", "pre_start")
    assert split_log_name("web.2") == ("web.2", "")
    assert split_log_name("web.pre_start") == ("web", "pre_start")
    assert owner_of("web.12") == "web.12" and owner_of("global.on_init") == "global"
    assert belongs_to("web.2.pre_start", {"web"}, no_hook=False)
    assert belongs_to("web.2", {"web.2"}, no_hook=True)
    assert not belongs_to("web.2.pre_start", {"web.2"}, no_hook=True)
    assert not belongs_to("web.3", {"web.2"}, no_hook=False)
