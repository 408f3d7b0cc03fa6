import os

from keplerd.logs.reader import Source, belongs_to, log_names, merged, parse_line, sources
from keplerd.logs.writer import MAX_LINE, LineFormatter


def test_complete_lines_get_the_stamp_of_their_chunk():
    formatter = LineFormatter()
    assert formatter.feed(b"a\nb\n", b"5 ") == b"5 a\n5 b\n"


def test_a_partial_line_waits_for_its_end():
    formatter = LineFormatter()
    assert formatter.feed(b"hel", b"1 ") == b""
    assert formatter.feed(b"lo\nwor", b"2 ") == b"2 hello\n"
    assert formatter.finish(b"3 ") == b"3 wor\n"
    assert formatter.finish(b"4 ") == b""


def test_empty_lines_are_kept():
    assert LineFormatter().feed(b"\n\nx\n", b"1 ") == b"1 \n1 \n1 x\n"


def test_lines_longer_than_16_kib_are_split():
    formatter = LineFormatter()
    out = formatter.feed(b"x" * (MAX_LINE * 2 + 10) + b"\n", b"1 ")
    assert [len(line) for line in out.split(b"\n")[:-1]] == [MAX_LINE + 2, MAX_LINE + 2, 12]


def test_a_long_partial_line_is_split_before_its_end_arrives():
    formatter = LineFormatter()
    out = formatter.feed(b"y" * (MAX_LINE + 5), b"1 ")
    assert out == b"1 " + b"y" * MAX_LINE + b"\n"
    assert formatter.finish(b"2 ") == b"2 yyyyy\n"


def test_parse_line_reads_stamp_and_text():
    assert parse_line(b"1700000000000 hello world") == (1700000000000, "hello world")
    assert parse_line(b"garbage", previous_stamp=7) == (7, "garbage")


def _write(directory, name, lines):
    with open(os.path.join(directory, name), "w") as file:
        file.writelines(f"{stamp} {text}\n" for stamp, text in lines)


def test_merge_is_by_time_and_stable_for_equal_times(tmp_path):
    _write(tmp_path, "a.stdout.log", [(1, "a1"), (3, "a3"), (3, "a3b")])
    _write(tmp_path, "b.stdout.log", [(2, "b2"), (3, "b3")])
    lines = [(stamp, name, text) for stamp, name, _, text in merged(sources(str(tmp_path)))]
    assert lines == [(1, "a", "a1"), (2, "b", "b2"), (3, "a", "a3"), (3, "a", "a3b"), (3, "b", "b3")]


def test_tail_reads_only_the_end_across_segments(tmp_path):
    _write(tmp_path, "a.stdout.log.1", [(i, f"old{i}") for i in range(5)])
    _write(tmp_path, "a.stdout.log", [(10 + i, f"new{i}") for i in range(3)])
    source = Source(str(tmp_path), "a", "stdout")
    assert [text for _, text in source.tail(4)] == ["old4", "new0", "new1", "new2"]
    assert [line[3] for line in merged([source], tail=2)] == ["new1", "new2"]
    assert [line[3] for line in merged([source], head=2)] == ["old0", "old1"]


def test_tail_of_a_big_file_reads_backwards(tmp_path):
    _write(tmp_path, "a.stdout.log", [(i, "x" * 100) for i in range(20000)])
    source = Source(str(tmp_path), "a", "stdout")
    assert [stamp for stamp, _ in source.tail(3)] == [19997, 19998, 19999]


def test_hook_logs_belong_to_their_service_and_no_hook_drops_them(tmp_path):
    for name in ("web", "web.pre_start", "global.on_init", "db"):
        _write(tmp_path, f"{name}.stdout.log", [(1, name)])
    assert log_names(str(tmp_path)) == ["db", "global.on_init", "web", "web.pre_start"]
    assert belongs_to("web.pre_start", ["web"], no_hook=False)
    assert not belongs_to("web.pre_start", ["web"], no_hook=True)
    assert not belongs_to("global.on_init", ["web"], no_hook=False)
    assert belongs_to("global.on_init", [], no_hook=False)
