"""Read log files back: parse lines, merge streams by time, take the head or the tail.

Pure file reading without gevent, so it is unit-tested on plain files.
"""

import heapq
import os
import re

from keplerd.logs.writer import STREAMS, log_path

_LOG_FILE = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)\.(?P<stream>stdout|stderr)\.log(?:\.1)?$")
_BLOCK = 64 * 1024


class Source:
    """One stream of one log name: the previous segment (if any) and the current file."""

    def __init__(self, logs_dir, name, stream):
        self.name = name
        self.stream = stream
        current = log_path(logs_dir, name, stream)
        self.paths = [current + ".1", current]

    def lines(self):
        """Yield ``(timestamp_ms, text)`` for every stored line, oldest first."""
        for path in self.paths:
            yield from _parse_file(path)

    def tail(self, count):
        """Return the last *count* lines, reading the files backwards from the end."""
        found = []
        for path in reversed(self.paths):
            found[:0] = _tail_file(path, count - len(found))
            if len(found) >= count:
                break
        return found


def log_names(logs_dir):
    """Return the sorted log names that have files in *logs_dir*."""
    try:
        entries = os.listdir(logs_dir)
    except FileNotFoundError:
        return []
    return sorted({match["name"] for entry in entries if (match := _LOG_FILE.match(entry))})


def owner_of(name):
    """Return the service (or ``global``) a log name belongs to: ``web.pre_start`` → ``web``."""
    return name.partition(".")[0]


def belongs_to(name, services, no_hook):
    """Tell whether log *name* is selected by the service filter and ``--no-hook``.

    A hook's log ``<service>.<hook>`` belongs to its service; ``global.<hook>``
    belongs to the whole config.
    """
    owner, _, hook = name.partition(".")
    if hook and no_hook:
        return False
    if not services:
        return True
    return owner in services


def sources(logs_dir, services=(), no_hook=False):
    """Return a ``Source`` per selected log name and stream, in a stable order."""
    return [
        Source(logs_dir, name, stream)
        for name in log_names(logs_dir)
        if belongs_to(name, services, no_hook)
        for stream in STREAMS
    ]


def merged(selected, head=None, tail=None):
    """Yield ``(timestamp_ms, name, stream, text)`` in time order, stable for ties.

    With *tail*, only the last *tail* lines of the merge are produced, and each file
    is read backwards for at most that many lines. With *head*, reading stops early.
    """
    if tail is not None:
        streams = [_labelled(source, source.tail(tail)) for source in selected]
        lines = list(heapq.merge(*streams, key=_stamp))
        yield from lines[max(0, len(lines) - tail):]
        return
    streams = [_labelled(source, source.lines()) for source in selected]
    for count, line in enumerate(heapq.merge(*streams, key=_stamp)):
        if head is not None and count >= head:
            return
        yield line


def _labelled(source, lines):
    for stamp, text in lines:
        yield stamp, source.name, source.stream, text


def _stamp(line):
    return line[0]


def parse_line(raw, previous_stamp=0):
    """Return ``(timestamp_ms, text)`` of one stored line (without its newline)."""
    stamp, space, text = raw.partition(b" ")
    if space and stamp.isdigit():
        return int(stamp), text.decode("utf-8", "replace")
    return previous_stamp, raw.decode("utf-8", "replace")


def _parse_file(path):
    try:
        file = open(path, "rb")
    except FileNotFoundError:
        return
    with file:
        stamp = 0
        for raw in file:
            stamp, text = parse_line(raw.rstrip(b"\n"), stamp)
            yield stamp, text


def _tail_file(path, count):
    """Return the last *count* parsed lines of *path*, reading blocks from the end."""
    if count <= 0:
        return []
    try:
        file = open(path, "rb")
    except FileNotFoundError:
        return []
    with file:
        end = file.seek(0, os.SEEK_END)
        position, data = end, b""
        while position > 0 and data.count(b"\n") <= count:
            step = min(_BLOCK, position)
            position -= step
            file.seek(position)
            data = file.read(step) + data
    raw_lines = data.split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()
    if position > 0:
        raw_lines = raw_lines[1:]  # the first piece may be the end of an earlier line
    parsed, stamp = [], 0
    for raw in raw_lines[-count:]:
        stamp, text = parse_line(raw, stamp)
        parsed.append((stamp, text))
    return parsed
