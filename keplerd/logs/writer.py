"""Write what services print into their log files, and hand every line to live listeners.

Each log name (a service, ``<service>.<hook>``, ``global.<hook>``) has one file per
stream, ``<name>.stdout.log`` and ``<name>.stderr.log`` (format in ``format.py``,
rotation and buffering in ``files.py``). Listeners see every line, stored or not:
that is how followers and attached clients get output with ``store: false``.
"""

import os

from keplerd.logs.files import StreamLog, log_path
from keplerd.logs.format import LineFormatter, now_stamp
from keplerd.logs.settings import STREAMS, LogSettings

READ_SIZE = 64 * 1024  # a pipe holds 64 KiB; bigger chunks measured slower (cache, mmap-sized buffers)
# A pump that always finds data would never yield; let others run after this many reads.
READS_BEFORE_YIELD = 8


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
        self._stored = {
            stream: StreamLog(log_path(logs_dir, name, stream), self.settings.max_size,
                              self.settings.buffer_size, timers)
            for stream in STREAMS if self.settings.stores(stream)
        }

    def write(self, stream, data):
        """Store formatted lines *data* of *stream* (if stored) and hand them to listeners."""
        if not data:
            return
        stored = self._stored.get(stream)
        if stored is not None:
            stored.append(data)
        for listener in tuple(self._listeners):
            listener(self.name, stream, data)

    def pump(self, stream, fd):
        """Copy the pipe *fd* into *stream* until EOF, then flush and close it. Runs in a greenlet."""
        import gevent

        hub = gevent.get_hub()
        readable = hub.loop.io(fd, 1)
        formatter = LineFormatter()
        reads = 0
        try:
            while True:
                try:
                    chunk = os.read(fd, READ_SIZE)
                except BlockingIOError:
                    reads = 0
                    hub.wait(readable)
                    continue
                if not chunk:
                    break
                self.write(stream, formatter.feed(chunk, now_stamp()))
                reads += 1
                if reads >= READS_BEFORE_YIELD:
                    reads = 0
                    gevent.sleep(0)
            self.write(stream, formatter.finish(now_stamp()))
            self.flush()
        finally:
            readable.close()
            os.close(fd)

    def flush(self):
        for stored in self._stored.values():
            stored.flush()

    def clear(self):
        for stored in self._stored.values():
            stored.clear()

    def close(self):
        for stored in self._stored.values():
            stored.close()
