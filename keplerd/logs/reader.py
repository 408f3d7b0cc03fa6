"""Read log files back: which logs exist, and one stream's lines forward or from its end.

Pure file reading without gevent, so it is unit-tested on plain files. A place in
a stream is a *position* ``(file key, offset)``. The key names one file whatever
its name: its inode and its first line (inode numbers are reused at once when a
file is deleted and another created). So a reader keeps its place when the writer
renames the current file to ``.1``; a position whose file is gone starts again at
the oldest segment; one past the end of a file that shrank starts that file again.
"""

import errno
import os
import re
import stat

from keplerd.logs.files import log_path, segment_paths
from keplerd.logs.format import MAX_LINE, parse_lines, split_log_name
from keplerd.logs.settings import STREAMS

_LOG_FILE = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)\.(?P<stream>stdout|stderr)\.log(?:\.1)?$")
BLOCK = 256 * 1024
_BACK_BLOCK = 64 * 1024
_HEAD = 64
_PROBE = 32 * 1024  # below this span, --since scans lines instead of bisecting
MAX_STORED_LINE = MAX_LINE + 64  # a stored line: stamp, space, at most MAX_LINE bytes of text, newline


def log_names(logs_dir):
    """Return the sorted log names that have files in *logs_dir*."""
    try:
        entries = os.listdir(logs_dir)
    except FileNotFoundError:
        return []
    return sorted({match["name"] for entry in entries if (match := _LOG_FILE.match(entry))})


def belongs_to(name, services, no_hook):
    """Tell whether log *name* is selected by the service filter and ``--no-hook``.

    A hook's log ``<service>.<hook>`` belongs to its service; ``global.<hook>``
    belongs to the whole config; either may also be selected by its own name.
    """
    owner, hook = split_log_name(name)
    if name in services:
        return True  # a hook's log asked for by name: ``web.pre_start``, ``global.on_init``
    if hook and no_hook:
        return False
    if not services:
        return True
    return owner in services or owner.partition(".")[0] in services


def selected_names(logs_dir, services=(), no_hook=False):
    return [name for name in log_names(logs_dir) if belongs_to(name, services, no_hook)]


class Segment:
    """One existing, non-empty file of a stream: its path, key and size."""

    __slots__ = ("path", "key", "size")

    def __init__(self, path, key, size):
        self.path, self.key, self.size = path, key, size


class StreamFiles:
    """The files of one stream of one log name, read by position."""

    def __init__(self, logs_dir, name, stream):
        self.name = name
        self.stream = stream
        self.paths = segment_paths(log_path(logs_dir, name, stream))

    def segments(self):
        """Return the existing, non-empty segments, oldest first."""
        found = []
        for path in self.paths:
            try:
                fd = open_log(path)
            except OSError:
                continue  # absent, or something planted there: not a segment we read
            try:
                info = os.fstat(fd)
                head = os.pread(fd, _HEAD, 0)
            finally:
                os.close(fd)
            if head:
                first_line = head[:head.find(b"\n") + 1 or len(head)]
                found.append(Segment(path, (info.st_ino, first_line), info.st_size))
        return found

    def end(self):
        """Return the position just past the last stored line, or None when nothing is stored."""
        segments = self.segments()
        return (segments[-1].key, segments[-1].size) if segments else None

    def read(self, position, bound, size=BLOCK):
        """Return ``(data, position)``: whole lines after *position*, up to the position *bound*.

        *position* None means the start; *bound* None means no bound. ``data`` is
        empty once *bound* is reached, or when its file is gone (everything before
        it was rotated away or cleared; what came after is not this reader's).
        """
        segments = self.segments()
        if bound is not None and not any(segment.key == bound[0] for segment in segments):
            return b"", position
        index, offset = _locate(segments, position)
        while index is not None:
            segment = segments[index]
            at_bound = bound is not None and segment.key == bound[0]
            limit = min(segment.size, bound[1]) if at_bound else segment.size
            if offset < limit:
                data = _read_lines(segment, offset, min(size, limit - offset), offset + size >= limit)
                if data is not None:
                    return data, (segment.key, offset + len(data))
            if at_bound or index + 1 >= len(segments):
                break
            index, offset = index + 1, 0
        return b"", position

    def tail_start(self, count, bound):
        """Return ``(position, lines)``: where the last *count* lines before *bound* begin.

        Reads backwards from *bound*, never more than those lines' blocks.
        """
        segments = self.segments()
        index = next((i for i, segment in enumerate(segments) if bound and segment.key == bound[0]), None)
        position, found = bound, 0
        while index is not None and found < count:
            segment = segments[index]
            end = bound[1] if segment.key == bound[0] else segment.size
            try:
                start, lines = _start_of_last_lines(segment.path, min(end, segment.size), count - found)
            except OSError:
                break  # rotated or replaced meanwhile: tail from what we have
            position, found = (segment.key, start), found + lines
            index = index - 1 if start == 0 and index > 0 else None
        return position, found


    def since_start(self, since, bound):
        """Return the position of the first line stamped at or after *since* (ms), before *bound*.

        A binary search on byte offsets, each probe reading the stamp of the line
        after it: a few dozen small reads, whatever the size of the file. None
        means the start; *bound* when every line is older.
        """
        for segment in self.segments():
            at_bound = bound is not None and segment.key == bound[0]
            end = min(segment.size, bound[1]) if at_bound else segment.size
            try:
                offset = _first_line_since(segment.path, end, since)
            except OSError:
                continue  # rotated away meanwhile: the next segment holds newer lines
            if offset < end:
                return (segment.key, offset)
            if at_bound:
                break
        return bound


def _first_line_since(path, end, since):
    """Return the offset of the first line of ``path[:end]`` stamped at or after *since*, or *end*."""
    fd = open_log(path)
    try:
        low, high = 0, end  # low: a line start with every line before it older; high: a candidate
        while high - low > _PROBE:
            middle = (low + high) // 2
            start = _next_line_start(fd, middle, high)
            if start >= high:
                break  # no line starts between middle and high: scan what is left
            stamp, line_end = _stamp_at(fd, start)
            if stamp is not None and stamp >= since:
                high = start
            else:
                low = line_end
        return _scan_since(fd, low, high, since)
    finally:
        os.close(fd)


def _next_line_start(fd, offset, limit):
    """Return the first line start at or after *offset* (a line starts after a newline), or *limit*."""
    if offset == 0:
        return 0
    while offset < limit:
        block = os.pread(fd, min(_PROBE, limit - offset + 1), offset - 1)
        newline = block.find(b"\n")
        if newline >= 0:
            return offset + newline
        if not block:
            break
        offset += len(block)
    return limit


def _stamp_at(fd, start):
    """Return ``(stamp or None, end of that line)`` of the line starting at *start*."""
    data = os.pread(fd, MAX_STORED_LINE, start)
    newline = data.find(b"\n")
    line_end = start + (newline + 1 if newline >= 0 else len(data))
    head, space, _ = data[:32].partition(b" ")
    return (int(head) if space and head.isdigit() else None), line_end


def _scan_since(fd, low, high, since):
    """Return the first line start in [*low*, *high*) stamped at or after *since*, else *high*."""
    offset = low
    while offset < high:
        stamp, line_end = _stamp_at(fd, offset)
        if stamp is not None and stamp >= since:
            return offset
        if line_end <= offset:
            break
        offset = line_end
    return high


def _locate(segments, position):
    """Return ``(segment index, offset)`` of *position* among *segments* (see the module doc)."""
    if not segments:
        return None, 0
    if position is None:
        return 0, 0
    key, offset = position
    for index, segment in enumerate(segments):
        if segment.key == key:
            return index, offset if offset <= segment.size else 0
    return 0, 0


def _read_lines(segment, offset, size, to_limit):
    """Return the whole lines of *size* bytes at *offset* (None if the file changed meanwhile).

    The last piece is kept even without its newline when the read reaches the
    limit (a damaged file), or when no newline is found at all.
    """
    try:
        fd = open_log(segment.path)
    except OSError:
        return None
    try:
        if os.fstat(fd).st_ino != segment.key[0]:
            return None
        data = os.pread(fd, size, offset)
    finally:
        os.close(fd)
    if not data:
        return None
    end = data.rfind(b"\n") + 1
    if end == len(data) or to_limit and len(data) == size or end == 0:
        return data
    return data[:end]


def open_log(path):
    """Open a log file for reading; refuse anything but a regular file (never block on a FIFO).

    Raises ``OSError`` for a missing file, a symlink (``O_NOFOLLOW``) or anything
    else planted at the path: a service user cannot make a reader hang or wander.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", path)
    return fd


def _start_of_last_lines(path, end, count):
    """Return ``(offset, lines)``: where the last *count* lines of ``path[:end]`` start.

    ``lines`` is *count*, or fewer when the file holds fewer (``offset`` is then 0).
    """
    if count <= 0 or end <= 0:
        return end, 0
    with os.fdopen(open_log(path), "rb") as file:
        file.seek(end - 1)
        unfinished = file.read(1) != b"\n"  # a damaged file: its last line has no newline
        # The newline ending the line before the first one we want (an unfinished line has none).
        wanted = count if unfinished else count + 1
        seen, position = 0, end
        while position > 0:
            step = min(_BACK_BLOCK, position)
            position -= step
            file.seek(position)
            block = file.read(step)
            newlines = block.count(b"\n")
            if seen + newlines < wanted:
                seen += newlines
                continue
            cut = len(block)
            for _ in range(wanted - seen):
                cut = block.rfind(b"\n", 0, cut)
            return position + cut + 1, count
    return 0, seen + unfinished


def parse_block(data, stamp=0):
    """Return ``[(timestamp_ms, text), ...]`` of a block of stored lines, and the last stamp."""
    return parse_lines(data.decode("utf-8", "replace"), stamp)


def stream_files(logs_dir, names):
    """Return a ``StreamFiles`` per name and stream, in a stable order (names, then stdout, stderr)."""
    return [StreamFiles(logs_dir, name, stream) for name in names for stream in STREAMS]
