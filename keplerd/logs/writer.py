"""Write what services print into their log files, one timestamped line at a time.

Each log name (a service, ``<service>.<hook>``, ``global.<hook>``) has one file per
stream, ``<name>.stdout.log`` and ``<name>.stderr.log``, whose lines read
``<unix-epoch-ms> <text>``. The pump is chunk-wise: one timestamp per read, lines
split with ``bytes`` methods, never a Python loop per character.
"""

import errno
import logging
import os
import stat
import time

log = logging.getLogger("keplerd.logs")

MAX_LINE = 16 * 1024
STREAMS = ("stdout", "stderr")


def log_path(logs_dir, name, stream):
    return os.path.join(logs_dir, f"{name}.{stream}.log")


def now_stamp():
    """Return the line prefix for this instant: epoch milliseconds and a space."""
    return b"%d " % int(time.time() * 1000)


class LineFormatter:
    """Turn raw chunks of a stream into complete, timestamped log lines.

    >>> f = LineFormatter()
    >>> f.feed(b"a\\nb", b"1 "), f.feed(b"c\\n", b"2 "), f.finish(b"3 ")
    (b'1 a\\n', b'2 bc\\n', b'')
    """

    def __init__(self):
        self._partial = b""

    def feed(self, chunk, stamp):
        """Return the complete lines of *chunk* (plus what was pending) with *stamp*."""
        data = self._partial + chunk if self._partial else chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > MAX_LINE:
            cut = len(self._partial) - len(self._partial) % MAX_LINE
            lines.extend(_pieces(self._partial[:cut]))
            self._partial = self._partial[cut:]
        if not lines:
            return b""
        if len(data) > MAX_LINE and max(map(len, lines)) > MAX_LINE:
            lines = [piece for line in lines for piece in _pieces(line)]
        return stamp + (b"\n" + stamp).join(lines) + b"\n"

    def finish(self, stamp):
        """Return the pending last line (the stream closed without a newline), if any."""
        partial, self._partial = self._partial, b""
        return stamp + partial + b"\n" if partial else b""


def _pieces(line):
    if len(line) <= MAX_LINE:
        return [line]
    return [line[start:start + MAX_LINE] for start in range(0, len(line), MAX_LINE)]


class LogFile:
    """One stream's log file, appended to by the daemon only.

    Never written through anything planted at its path (see ``_open_for_append``).
    When the file cannot be opened or written, that stream's output is dropped
    with one error in the daemon's log, until the file is closed or cleared: the
    pipe keeps being drained, so the service neither blocks nor gets SIGPIPE.
    """

    def __init__(self, path):
        self.path = path
        self._fd = None
        self._broken = False

    def write(self, data):
        if self._broken:
            return
        try:
            if self._fd is None:
                self._fd = _open_for_append(self.path)
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as error:
            self._broken = True
            log.error("cannot write log file %s, dropping its output: %s", self.path, error)

    def close(self):
        self._broken = False
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def clear(self):
        """Delete the file (and a previous segment); the next write starts a new one."""
        self.close()
        for path in (self.path, self.path + ".1"):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass  # nothing to clear


# O_NOFOLLOW: never through a symlink; O_NONBLOCK: a planted FIFO cannot block the
# daemon (it has no effect on a regular file); O_NOCTTY: nor can a planted terminal.
_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def _open_for_append(path):
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


class LogWriter:
    """The two streams of one log name, and the listeners that see every line.

    *listeners* is a set shared with the project: callables taking
    ``(name, stream, data)`` that must never block (followers queue and drop).
    """

    def __init__(self, logs_dir, name, listeners):
        self.name = name
        self._files = {stream: LogFile(log_path(logs_dir, name, stream)) for stream in STREAMS}
        self._listeners = listeners

    def write(self, stream, data):
        """Store formatted lines *data* of *stream* and hand them to listeners."""
        if not data:
            return
        self._files[stream].write(data)
        for listener in tuple(self._listeners):
            listener(self.name, stream, data)

    def pump(self, stream, fd):
        """Copy the pipe *fd* into *stream* until EOF, then close it. Runs in a greenlet."""
        from gevent.socket import wait_read

        formatter = LineFormatter()
        try:
            while True:
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    wait_read(fd)
                    continue
                if not chunk:
                    break
                self.write(stream, formatter.feed(chunk, now_stamp()))
            self.write(stream, formatter.finish(now_stamp()))
        finally:
            os.close(fd)

    def clear(self):
        for file in self._files.values():
            file.clear()

    def close(self):
        for file in self._files.values():
            file.close()
