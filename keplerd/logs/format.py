"""The stored line format: ``<unix-epoch-ms> <text>\\n``, and turning raw output into it.

This is the hot path of the daemon: every byte a service prints goes through
``LineFormatter.feed``. It works on whole chunks, one timestamp per read: the C
part (``_stamp.c``, built where there is a compiler) copies a chunk once, stamping
as it goes; without it, one ``replace`` for all the lines of a chunk and one copy
to put the pieces together. Only a line longer than ``MAX_LINE`` takes a per-line
loop.
"""

import time

try:
    from keplerd.logs._stamp import stamp_lines
except ImportError:  # installed without a compiler: stamp with bytes methods
    stamp_lines = None

MAX_LINE = 16 * 1024
# The C stamper's pieces stay under glibc's mmap threshold (128 KiB, fixed in osproc/heap.py): a
# piece then comes from the heap, already in memory, where a mapping of its own faults in every
# page (S3, issue #25, daemon CPU: 54 ms with 1 MiB pieces, 42 ms with these).
PIECE_SIZE = 112 * 1024
_NEWLINE = b"\n"


def now_stamp():
    """Return the line prefix for this instant: epoch milliseconds and a space."""
    return b"%d " % int(time.time() * 1000)


def kepler_note(text):
    """Return a stored line of the daemon's own, ``kepler: <text>``, stamped now (for a service's log)."""
    return now_stamp() + f"kepler: {text}\n".encode()


class LineFormatter:
    """Turn raw chunks of one stream into complete, timestamped log lines.

    ``feed`` yields and ``finish`` returns ``(lines, count)``: the stored bytes
    and how many lines they hold. Text after the last newline of a chunk waits for the
    next chunk (or for ``finish``). Lines longer than ``MAX_LINE`` bytes are
    split into pieces.

    >>> f = LineFormatter()
    >>> [*f.feed(b"a\\nb", b"1 "), *f.feed(b"c\\n", b"2 "), f.finish(b"3 ")]
    [(b'1 a\\n', 1), (b'2 bc\\n', 1), (b'', 0)]
    """

    def __init__(self, partial=b""):
        self._partial = partial

    @property
    def pending(self):
        """The text after the last newline seen, waiting for the rest of its line."""
        return self._partial

    def feed(self, chunk, stamp):
        """Yield the complete lines of *chunk* (plus what was pending), each prefixed with *stamp*.

        They come as ``(stored, count)`` pieces, never empty. *chunk* is bytes or a view of a
        buffer that is reused once this is done (the pump's). The C stamper makes pieces of at
        most ``PIECE_SIZE`` bytes; Python, one piece per chunk.
        """
        while stamp_lines is not None:
            stamped = stamp_lines(chunk, stamp, self._partial, MAX_LINE, PIECE_SIZE)
            if stamped is None:
                break  # no newline, or a long line: the rest of the chunk goes the Python way
            stored, count, end, more = stamped
            self._partial = b"" if more else bytes(chunk[end:])
            yield stored, count
            if not more:
                return
            chunk = chunk[end:]
        stored, count = self._feed_in_python(bytes(chunk), stamp)
        if stored:
            yield stored, count

    def _feed_in_python(self, chunk, stamp):
        """``feed`` with bytes methods: one piece, the whole chunk's lines (maybe empty)."""
        end = chunk.rfind(_NEWLINE) + 1
        partial = self._partial
        if end and len(partial) + chunk.find(_NEWLINE) <= MAX_LINE and not has_long_line(chunk, end):
            return self._stamp_short_lines(chunk, end, stamp)
        data = partial + chunk if partial else chunk
        end = data.rfind(_NEWLINE) + 1
        complete, self._partial = data[:end], data[end:]
        formatted = format_lines(complete, stamp) if complete else b""
        if len(self._partial) > MAX_LINE:
            formatted += self._cut_partial(stamp)
        return formatted, formatted.count(_NEWLINE)

    def _stamp_short_lines(self, chunk, end, stamp):
        """The common case: no line of *chunk* up to *end* is long. One replace, one join.

        The replace also stamps the text after the last newline; that stamp and
        text are left out of the result by a memoryview (no copy), and the count
        of newlines falls out of the lengths (no second pass over the chunk).
        """
        stamped = chunk.replace(_NEWLINE, _NEWLINE + stamp)
        count = (len(stamped) - len(chunk)) // len(stamp)
        self._partial, partial = chunk[end:], self._partial
        complete = memoryview(stamped)[:len(stamped) - len(self._partial) - len(stamp)]
        formatted = b"".join((stamp, partial, complete))
        if len(self._partial) > MAX_LINE:
            pieces = self._cut_partial(stamp)
            return formatted + pieces, count + pieces.count(_NEWLINE)
        return formatted, count

    def finish(self, stamp):
        """Return the pending last line (the stream closed without a newline), if any."""
        partial, self._partial = self._partial, b""
        formatted = format_lines(partial + _NEWLINE, stamp) if partial else b""
        return formatted, formatted.count(_NEWLINE)

    def _cut_partial(self, stamp):
        """Store the full-size pieces of an overlong unfinished line; keep the rest pending."""
        pieces = split_long(self._partial)
        self._partial = pieces.pop()
        return stamp + (_NEWLINE + stamp).join(pieces) + _NEWLINE


def format_lines(complete, stamp):
    """Return *complete* (whole lines, ending with a newline) with *stamp* before each line."""
    if not has_long_line(complete):
        # Stamp after every newline, then drop the one after the last: a plain
        # replace and a copy cost less than counting lines for a bounded replace
        # (28 against 43 microseconds per 64 KiB chunk).
        return (stamp + complete.replace(_NEWLINE, _NEWLINE + stamp))[:-len(stamp)]
    lines = [piece for line in complete[:-1].split(_NEWLINE) for piece in split_long(line)]
    return stamp + (_NEWLINE + stamp).join(lines) + _NEWLINE


def has_long_line(data, end=None):
    """Tell whether ``data[:end]`` holds a line longer than ``MAX_LINE`` bytes (its newline aside).

    *data* up to *end* (default: all of it) is whole lines. Jumps from newline to
    newline ``MAX_LINE`` bytes at a time, so short lines cost nothing per line.
    """
    size = len(data) if end is None else end
    start = 0
    while size - start > MAX_LINE:
        last = data.rfind(_NEWLINE, start, start + MAX_LINE + 1)
        if last < 0:
            return True
        start = last + 1
    return False


def split_long(line):
    """Return *line* cut into pieces of at most ``MAX_LINE`` bytes, never inside a UTF-8 character."""
    pieces = []
    while len(line) > MAX_LINE:
        cut = MAX_LINE
        # Back up over UTF-8 continuation bytes (10xxxxxx), at most three.
        while cut > MAX_LINE - 3 and line[cut] & 0xC0 == 0x80:
            cut -= 1
        pieces.append(line[:cut])
        line = line[cut:]
    pieces.append(line)
    return pieces


def parse_line(raw, previous_stamp=0):
    """Return ``(timestamp_ms, text)`` of one stored line (without its newline).

    A line without a valid stamp (a damaged file) takes the previous line's time.
    """
    stamp, space, text = raw.partition(" ")
    if space and stamp.isdigit():
        return int(stamp), text
    return previous_stamp, raw


def parse_lines(text, stamp=0):
    """Return ``[(timestamp_ms, text), ...]`` of stored lines (``<ms> <text>\\n``...) and the last stamp.

    Split on ``\\n`` only (a line may hold ``\\r`` or other separators); the reader
    of files and the CLI's live output both parse with this.
    """
    raws = text.split("\n")
    if raws[-1] == "":
        raws.pop()
    parsed = []
    append = parsed.append
    for raw in raws:
        stamp, line = parse_line(raw, stamp)
        append((stamp, line))
    return parsed, stamp


def owner_of(name):
    """Return the service instance (or ``global``) a log name belongs to.

    ``web.pre_start`` -> ``web``; a replica's ``web.2`` and ``web.2.pre_start`` -> ``web.2``
    (hook names never start with a digit, instance numbers always do).
    """
    return split_log_name(name)[0]


def split_log_name(name):
    """Return ``(owner, hook)`` of a log name; *hook* is empty for a service's own log."""
    base, _, rest = name.partition(".")
    index, _, hook = rest.partition(".")
    if index.isdigit():
        return f"{base}.{index}", hook
    return base, rest
