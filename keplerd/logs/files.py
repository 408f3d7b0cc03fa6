"""One stream's log file on disk: appended, rotated into two segments, optionally buffered.

With ``max_size`` the stream keeps the current file and at most one previous
segment ``<file>.1``, each at most half of ``max_size``: when the current file
would grow past its half, it is renamed to ``<file>.1`` (replacing the older
segment) and a new file begins. Disk use per stream therefore never exceeds
``max_size``, and at least the newest half of it is always kept. Lines are never
cut between segments; a single line longer than a segment is shortened to fit.
"""

import errno
import logging
import os
import stat
import time

log = logging.getLogger("keplerd.logs")

FLUSH_SECONDS = 1.0
SEGMENT_SUFFIX = ".1"
CHECK_SECONDS = 1.0  # how often a written file is checked for a deletion or rename from outside


def log_path(logs_dir, name, stream):
    return os.path.join(logs_dir, f"{name}.{stream}.log")


def segment_paths(path):
    """Return the files of a stream, oldest first: the previous segment, then the current file."""
    return [path + SEGMENT_SUFFIX, path]


def remove_files(path):
    """Delete the current file and the previous segment of a stream, if they exist."""
    for each in segment_paths(path):
        try:
            os.unlink(each)
        except FileNotFoundError:
            pass  # nothing to clear


class SegmentedFile:
    """The on-disk side of one stream: appends whole lines, rotating at half of *max_size*.

    Opened lazily, never through anything planted at its path (see
    ``open_for_append``), so a service user cannot make the daemon write
    elsewhere. Write errors (disk
    full) are logged once and the data is dropped: a service must never block
    because its log cannot be written.
    """

    def __init__(self, path, max_size=None):
        self.path = path
        self.limit = None if max_size is None else max_size // 2
        self._fd = None
        self._size = 0
        self._failing = False
        self._next_check = 0.0

    def write(self, data):
        """Append *data* (complete lines), rotating when the current segment is full."""
        try:
            if self.limit is None:
                self._append(data)
            else:
                self._write_rotating(data)
            self._failing = False
        except OSError as error:
            if not self._failing:
                log.error("cannot write %s: %s (log lines are dropped until it works again)", self.path, error)
            self._failing = True
            self.close()

    def _write_rotating(self, data):
        limit = self.limit
        if len(data) > 2 * limit:
            # Whatever comes before the last two segments' worth would be rotated away at once.
            data = data[_line_start_at_or_after(data, len(data) - 2 * limit):]
        if self._fd is None:
            self._open()
        while data:
            room = limit - self._size
            if len(data) <= room:
                self._append(data)
                return
            cut = data.rfind(b"\n", 0, room) + 1
            if cut:
                self._append(data[:cut])
                data = data[cut:]
            elif self._size == 0:
                # One line longer than a whole segment: keep what fits.
                end = data.find(b"\n") + 1 or len(data)
                if limit > 1:
                    self._append(data[:limit - 1] + b"\n")
                data = data[end:]
                continue
            self._rotate()

    def _append(self, data):
        if self._fd is not None and time.monotonic() >= self._next_check:
            self._reopen_if_gone()
        if self._fd is None:
            self._open()
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self._size += len(data)

    def _open(self):
        self._fd = open_for_append(self.path)
        self._size = os.fstat(self._fd).st_size
        self._next_check = time.monotonic() + CHECK_SECONDS

    def _reopen_if_gone(self):
        """Reopen the file when it was deleted or renamed from outside (link count 0, other inode).

        Checked at most every ``CHECK_SECONDS``: otherwise every line written after
        an ``rm`` would go to a file no one can see any more.
        """
        self._next_check = time.monotonic() + CHECK_SECONDS
        mine = os.fstat(self._fd)
        try:
            there = os.stat(self.path, follow_symlinks=False)
            replaced = (there.st_ino, there.st_dev) != (mine.st_ino, mine.st_dev)
        except FileNotFoundError:
            replaced = True
        if mine.st_nlink == 0 or replaced:
            log.warning("log file %s was deleted or replaced from outside: reopening it", self.path)
            self.close()

    def _rotate(self):
        """Make the current file the previous segment and start a new, empty one."""
        self.close()
        try:
            os.rename(self.path, self.path + SEGMENT_SUFFIX)
        except FileNotFoundError:
            pass  # deleted behind our back: the new file starts the stream afresh
        self._open()

    def close(self):
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def clear(self):
        """Delete the file and its previous segment; the next write starts a new file."""
        self.close()
        remove_files(self.path)


# O_NOFOLLOW: never through a symlink; O_NONBLOCK: a planted FIFO cannot block the
# daemon (it has no effect on a regular file); O_NOCTTY: nor can a planted terminal.
_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def open_for_append(path):
    """Open the log file at *path* for appending; never write into anything planted there.

    Whatever is at *path* and is not a regular file with a single link (a symlink,
    a FIFO, a device, a hard link to some other file) is removed and replaced by a
    new file, so the daemon only ever appends to files it created itself.
    """
    try:
        fd = os.open(path, _APPEND, 0o660)
    except OSError as error:
        if error.errno not in (errno.ELOOP, errno.ENXIO):  # a symlink; a FIFO nobody reads
            raise
    else:
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode) and info.st_nlink == 1:
            return fd
        os.close(fd)
    log.warning("log path %s is not a regular file of its own: replacing it", path)
    os.unlink(path)
    return os.open(path, _APPEND | os.O_EXCL, 0o660)


def _line_start_at_or_after(data, position):
    """Return the index of the first line of *data* that starts at or after *position*.

    When the last line alone is longer, return the start of the last line.
    """
    start = data.find(b"\n", max(position - 1, 0)) + 1
    if start >= len(data):
        start = data.rfind(b"\n", 0, len(data) - 1) + 1
    return start


class StreamLog:
    """What one stream stores: a ``SegmentedFile`` behind an optional write buffer.

    With *buffer_size* 0 every chunk is written at once. Otherwise chunks gather
    in memory until *buffer_size* bytes are pending, ``flush`` is called (stop,
    exit, reads) or ``FLUSH_SECONDS`` pass: the timer runs only while something
    is buffered. *timers* makes that timer (``timers(seconds, callback)`` returns
    an object with ``cancel()``); the daemon passes gevent's loop timers.
    """

    def __init__(self, path, max_size=None, buffer_size=0, timers=None):
        self.file = SegmentedFile(path, max_size)
        self.buffer_size = buffer_size
        self._timers = timers
        self._buffer = bytearray()
        self._timer = None

    def append(self, data):
        if not self.buffer_size or not self._buffer and len(data) >= self.buffer_size:
            self.file.write(data)  # nothing to gather: spare the copy into the buffer
            return
        self._buffer += data
        if len(self._buffer) >= self.buffer_size:
            self.flush()
        elif self._timer is None:
            self._timer = self._timers(FLUSH_SECONDS, self.flush)

    def flush(self):
        """Write what is buffered now."""
        if self._timer is not None:
            timer, self._timer = self._timer, None
            timer.cancel()
        if self._buffer:
            self.file.write(self._buffer)
            self._buffer.clear()

    def close(self):
        self.flush()
        self.file.close()

    def clear(self):
        """Forget what is buffered and delete the files."""
        self._buffer.clear()
        self.flush()
        self.file.clear()
