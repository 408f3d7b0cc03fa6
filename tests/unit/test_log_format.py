"""The stored line format: timestamps per chunk, split long lines, a last line without newline.

Every test runs twice: with the C stamper (``logs/_stamp.c``) and with the Python one
it stands in for where there is no compiler.
"""

import random

import pytest

from keplerd.logs import format as log_format
from keplerd.logs.format import MAX_LINE, LineFormatter, format_lines, has_long_line, parse_line, split_long

C_STAMPER = log_format.stamp_lines


@pytest.fixture(autouse=True, params=["c", "python"])
def stamper(request, monkeypatch):
    if request.param == "python":
        monkeypatch.setattr(log_format, "stamp_lines", None)
    elif C_STAMPER is None:
        pytest.skip("the C stamper is not built here")
    return request.param


def lines_of(result):
    """The stored bytes of a ``feed`` (pieces) or ``finish`` result, after checking its counts of lines."""
    pieces = [result] if isinstance(result, tuple) else list(result)
    for data, count in pieces:
        assert count == data.count(b"\n")
        assert len(pieces) == 1 or 0 < len(data) <= log_format.PIECE_SIZE
    return b"".join(data for data, _ in pieces)


def test_every_line_of_a_chunk_gets_the_chunk_stamp():
    assert lines_of(LineFormatter().feed(b"a\nb\nc\n", b"7 ")) == b"7 a\n7 b\n7 c\n"


def test_text_after_the_last_newline_waits_for_the_next_chunk():
    formatter = LineFormatter()
    assert lines_of(formatter.feed(b"one\ntw", b"1 ")) == b"1 one\n"
    assert lines_of(formatter.feed(b"o\nthr", b"2 ")) == b"2 two\n"
    assert lines_of(formatter.finish(b"3 ")) == b"3 thr\n"


def test_a_last_line_without_newline_is_kept_when_the_stream_closes():
    formatter = LineFormatter()
    assert lines_of(formatter.feed(b"no newline", b"1 ")) == b""
    assert lines_of(formatter.finish(b"2 ")) == b"2 no newline\n"
    assert lines_of(formatter.finish(b"3 ")) == b""


def test_empty_lines_are_lines():
    assert lines_of(LineFormatter().feed(b"\n\nx\n", b"1 ")) == b"1 \n1 \n1 x\n"


def test_a_line_over_16_kib_is_split_into_pieces():
    line = b"x" * (MAX_LINE * 2 + 10)
    out = lines_of(LineFormatter().feed(b"short\n" + line + b"\nafter\n", b"5 "))
    assert out.split(b"\n")[:-1] == [b"5 short", b"5 " + b"x" * MAX_LINE, b"5 " + b"x" * MAX_LINE,
                                     b"5 " + b"x" * 10, b"5 after"]


def test_a_line_of_exactly_16_kib_is_not_split():
    line = b"y" * MAX_LINE
    assert lines_of(LineFormatter().feed(line + b"\n", b"1 ")) == b"1 " + line + b"\n"


def test_an_unfinished_line_over_16_kib_is_stored_in_pieces_as_it_grows():
    formatter = LineFormatter()
    out = lines_of(formatter.feed(b"z" * (MAX_LINE + 100), b"1 "))
    assert out == b"1 " + b"z" * MAX_LINE + b"\n"
    assert lines_of(formatter.feed(b"end\n", b"2 ")) == b"2 " + b"z" * 100 + b"end\n"


def test_splitting_never_cuts_a_utf8_character():
    line = ("é" * MAX_LINE).encode()  # two bytes each: a cut at 16384 would be mid-character... or not
    line = b"a" + line  # ...so shift by one to make sure it is
    pieces = split_long(line)
    assert b"".join(pieces) == line
    assert all(len(piece) <= MAX_LINE for piece in pieces)
    for piece in pieces:
        piece.decode("utf-8")  # raises if a character was cut


def test_has_long_line_looks_at_each_line_not_the_chunk():
    short_lines = b"".join(b"%05d " % i + b"x" * 94 + b"\n" for i in range(2000))
    assert not has_long_line(short_lines)
    assert has_long_line(short_lines + b"y" * (MAX_LINE + 1) + b"\n")
    assert not has_long_line(short_lines + b"y" * MAX_LINE + b"\n")
    assert has_long_line(b"y" * (MAX_LINE + 1) + b"\n" + short_lines)


def test_format_lines_matches_a_per_line_reference():
    chunk = b"".join(b"line %d\n" % i for i in range(1000))
    expected = b"".join(b"9 " + line + b"\n" for line in chunk.split(b"\n")[:-1])
    assert format_lines(chunk, b"9 ") == expected


def test_has_long_line_stops_at_the_given_end():
    data = b"x" * 10 + b"\n" + b"y" * (MAX_LINE + 1)
    assert not has_long_line(data, 11)
    assert has_long_line(data + b"\n")


def test_an_unfinished_line_joined_with_the_next_chunk_over_16_kib_is_split():
    formatter = LineFormatter()
    assert lines_of(formatter.feed(b"a" * (MAX_LINE - 1), b"1 ")) == b""
    out = lines_of(formatter.feed(b"bb\nc\n", b"2 "))
    assert out == b"2 " + b"a" * (MAX_LINE - 1) + b"b\n2 b\n2 c\n"


def reference_lines(chunks):
    """What the formatter must store for *chunks* ``[(stamp, bytes), ...]``, one line at a time."""
    out, pending = [], b""
    for stamp, chunk in chunks:
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            out += [stamp + piece + b"\n" for piece in split_long(line)]
        if len(pending) > MAX_LINE:
            *pieces, pending = split_long(pending)
            out += [stamp + piece + b"\n" for piece in pieces]
    return b"".join(out), pending


def random_output(rng, size, long_lines=True):
    """Service output of about *size* bytes: short, empty, 16 KiB-edge and long lines, some UTF-8."""
    lengths = (0, 1, 80, 200, MAX_LINE - 1, MAX_LINE, MAX_LINE + 1, 3 * MAX_LINE + 7)
    text, total = [], 0
    while total < size:
        length = rng.choice(lengths) if long_lines and rng.random() < 0.2 else rng.randrange(0, 150)
        text.append((("é" if rng.random() < 0.3 else "x") * length).encode()[:length] + b"\n")
        total += len(text[-1])
    return b"".join(text)[:size]  # the cut may leave a last line without newline


def random_chunks(rng, long_lines=True):
    """Random output cut at random places; without *long_lines*, in chunks of up to 1 MiB."""
    data = random_output(rng, rng.choice((300, 70_000, 200_000) if long_lines else (300, 400_000, 1_000_000)),
                         long_lines)
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randrange(1, 30 if long_lines else 5))))
    return [(b"%d " % (1000 + i), data[a:b]) for i, (a, b) in enumerate(zip([0, *cuts], [*cuts, len(data)]))]


@pytest.mark.parametrize("long_lines", [True, False], ids=["with-long-lines", "big-chunks"])
def test_any_chunking_stores_what_a_per_line_reference_stores(long_lines):
    for seed in range(40):
        chunks = random_chunks(random.Random(seed), long_lines)
        formatter = LineFormatter()
        stored = b"".join(lines_of(formatter.feed(chunk, stamp)) for stamp, chunk in chunks)
        expected, pending = reference_lines(chunks)
        assert stored == expected, f"seed {seed}"
        assert formatter.pending == pending, f"seed {seed}"


def test_chunks_read_into_one_reused_buffer_are_stored_as_they_were():
    """The pump reads every chunk into one buffer and passes a view: nothing may keep the view."""
    buffer = bytearray(1_000_000)
    for seed in range(40):
        chunks = random_chunks(random.Random(seed), long_lines=seed % 2)
        formatter = LineFormatter()
        stored = []
        for stamp, chunk in chunks:
            buffer[:len(chunk)] = chunk
            stored.append(lines_of(formatter.feed(memoryview(buffer)[:len(chunk)], stamp)))
            buffer[:len(chunk)] = b"#" * len(chunk)  # the next read
        expected, pending = reference_lines(chunks)
        assert b"".join(stored) == expected, f"seed {seed}"
        assert formatter.pending == pending, f"seed {seed}"


def test_parse_line_reads_the_stamp_and_keeps_text_spaces():
    assert parse_line("1700000000000 hello  world ") == (1700000000000, "hello  world ")
    assert parse_line("garbage without stamp", 42) == (42, "garbage without stamp")
    assert parse_line("123 ", 0) == (123, "")
