"""Write what services print into their log files, and hand every line to live listeners.

Each log name (a service, ``<service>.<hook>``, ``global.<hook>``) has one file per
stream, ``<name>.stdout.log`` and ``<name>.stderr.log`` (format in ``format.py``,
rotation and buffering in ``files.py``). Listeners see every line, stored or not:
that is how followers and attached clients get output with ``store: false``.
"""

import fcntl
import logging
import mmap
import os

from keplerd.logs.files import StreamLog, log_path
from keplerd.logs.format import LineFormatter, now_stamp, stamp_lines
from keplerd.logs.settings import STREAMS, LogSettings

log = logging.getLogger("keplerd.logs")

F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)

# A pipe holds 64 KiB: a read that gets that much found it full.
PIPE_SIZE = 64 * 1024
# A pipe found full is grown to this (once): a chatty service then waits on the daemon far less
# often, and the daemon takes more per read.
BIG_PIPE_SIZE = 1024 * 1024
# With the C stamper, every pump reads into one buffer of this size, made once: the daemon
# runs one callback at a time, and a chunk is stamped into new bytes before the next read.
# Reads into fresh bytes cost more than the copy out of this one: 64 KiB reads into new bytes
# took 44 ms of CPU per 50 MB (S3, issue #25, outside the daemon), 256 KiB ones 49 ms, reads of
# up to 1 MiB into this buffer 32 ms. An anonymous mapping: only the pages a read has reached
# are in memory. Stamping in Python wants bytes, and is fastest with 64 KiB reads into new ones
# (85 ms from this buffer).
READ_BUFFER_SIZE = BIG_PIPE_SIZE
# A pump that always finds data must still let others run: at most this many reads, and about
# this many bytes (under a millisecond of stamping), per wake-up.
READS_BEFORE_YIELD = 8
BYTES_BEFORE_YIELD = 1024 * 1024

_read_buffer = None


def read_chunk(fd):
    """Read what the pipe *fd* holds: a view of the shared buffer (C stamper) or new bytes (none).

    The view is valid until the next read; the formatter copies what it keeps.
    """
    global _read_buffer
    if stamp_lines is None:
        return os.read(fd, PIPE_SIZE)
    if _read_buffer is None:
        _read_buffer = memoryview(mmap.mmap(-1, READ_BUFFER_SIZE))
    return _read_buffer[:os.readv(fd, [_read_buffer])]


class HubTimer:
    """A one-shot timer on gevent's loop (a watcher, not a greenlet); ``cancel`` stops it."""

    def __init__(self, seconds, callback):
        from gevent import get_hub

        self._watcher = get_hub().loop.timer(seconds)
        self._watcher.start(callback)

    def cancel(self):
        self._watcher.close()


class LogWriter:
    """The streams of one log name, and the listeners that see every line.

    *listeners* is a set shared with the project: callables taking
    ``(name, stream, data)`` that must never block (followers queue and drop).
    *timers* makes the flush timers of buffered streams (default: gevent's loop).
    """

    def __init__(self, logs_dir, name, listeners, settings=None, timers=HubTimer):
        self.name = name
        self.settings = settings or LogSettings()
        self._listeners = listeners
        self.lines = dict.fromkeys(STREAMS, 0)  # lines written per stream, stored or not (metrics)
        self._pumps = set()
        self._stored = {
            stream: StreamLog(log_path(logs_dir, name, stream), self.settings.max_size,
                              self.settings.buffer_size, timers)
            for stream in STREAMS if self.settings.stores(stream)
        }

    def write(self, stream, data, lines=None):
        """Store formatted lines *data* of *stream* (if stored) and hand them to listeners.

        *lines* is how many lines *data* holds, when the caller knows (the pumps do):
        counting them again would cost as much as stamping them.
        """
        if not data:
            return
        self.lines[stream] += data.count(b"\n") if lines is None else lines
        stored = self._stored.get(stream)
        if stored is not None:
            stored.append(data)
        for listener in tuple(self._listeners):
            listener(self.name, stream, data)

    def start_pump(self, stream, fd, partial=b""):
        """Copy the non-blocking pipe *fd* into *stream* until EOF; return the ``Pump``.

        *partial* is an unfinished last line an earlier image of the daemon had read (``daemon reexec``).
        """
        pump = Pump(self, stream, fd, partial)
        self._pumps.add(pump)
        return pump

    def rename(self, logs_dir, name):
        """Write under log *name* from now on: the files were renamed, the open ones stay open."""
        self.flush()
        self.name = name
        for stream, stored in self._stored.items():
            stored.file.path = log_path(logs_dir, name, stream)

    def flush(self):
        for stored in self._stored.values():
            stored.flush()

    def clear(self):
        for stored in self._stored.values():
            stored.clear()

    def close(self):
        for pump in tuple(self._pumps):
            pump.stop()
        for stored in self._stored.values():
            stored.close()


class Pump:
    """Copies one pipe into a log stream, from a loop watcher: no greenlet per pipe.

    A suspended greenlet costs about 9 KiB (its saved C stack), a watcher under
    0.5 KiB; with two pipes per service that is most of the daemon's memory at
    hundreds of services. The callback never blocks: it reads what the pipe holds
    (at most BYTES_BEFORE_YIELD, so a flood cannot starve the loop), stores
    and hands it to listeners, and returns. ``join``/``rawlink`` make it waitable
    like a greenlet (``gevent.joinall``); it is done at EOF or when stopped.
    """

    def __init__(self, writer, stream, fd, partial=b""):
        from gevent import get_hub
        from gevent.event import Event

        self._writer = writer
        self._stream = stream
        self._fd = fd
        self._grown = False
        self._formatter = LineFormatter(partial)
        self._done = Event()
        self._links = {}
        self._watcher = get_hub().loop.io(fd, 1)
        self._watcher.start(self._readable)

    def _readable(self):
        taken = 0
        try:
            for _ in range(READS_BEFORE_YIELD):
                chunk = read_chunk(self._fd)
                if len(chunk) == PIPE_SIZE and not self._grown:
                    self._grow_pipe()
                if not chunk:
                    self._writer.write(self._stream, *self._formatter.finish(now_stamp()))
                    self._writer.flush()
                    self.stop()
                    return
                for stored, count in self._formatter.feed(chunk, now_stamp()):
                    self._writer.write(self._stream, stored, count)
                taken += len(chunk)
                if taken >= BYTES_BEFORE_YIELD:
                    return
        except BlockingIOError:
            return  # drained: the watcher calls again when there is more
        except Exception:
            log.exception("log pump of %s.%s failed; its output is lost from here", self._writer.name, self._stream)
            self.stop()

    def _grow_pipe(self):
        """The pipe was full: make it big, so that the service blocks less and we read more per wake-up."""
        self._grown = True  # whether it worked or not: never try again
        try:
            fcntl.fcntl(self._fd, F_SETPIPE_SZ, BIG_PIPE_SIZE)
        except OSError:
            pass  # over the user's pipe budget (pipe-user-pages-soft): it keeps its size, nothing else changes

    def hand_over(self):
        """Stop copying but keep the pipe open for the next image of the daemon: ``{stream, fd, partial}``.

        What the pipe holds now stays in it, and the unfinished last line goes with the record,
        so the next image stores every line once.
        """
        self._watcher.close()
        self._writer._pumps.discard(self)
        os.set_inheritable(self._fd, True)
        return {"stream": self._stream, "fd": self._fd, "partial": self._formatter.pending}

    def stop(self):
        """Stop copying (at EOF, or when the log is closed) and close the pipe."""
        if self._done.is_set():
            return
        self._watcher.close()
        os.close(self._fd)
        self._writer._pumps.discard(self)
        self._done.set()

    @property
    def dead(self):
        return self._done.is_set()

    def join(self, timeout=None):
        return self._done.wait(timeout)

    def rawlink(self, callback):
        self._links[callback] = link = lambda _event: callback(self)
        self._done.rawlink(link)

    def unlink(self, callback):
        link = self._links.pop(callback, None)
        if link is not None:
            self._done.unlink(link)
