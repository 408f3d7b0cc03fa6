"""A server-side log cursor: a place in every selected stream, read in batches merged by time.

A cursor fixes, when it is made, where each stream's stored lines end (its
*bound*): it reads up to there and no further, so a chatty service cannot make a
read endless, and a follower's live lines (``follow.py``) start exactly where the
stored ones stop. Lines of different streams are merged by timestamp; equal
timestamps keep the order of the streams (log names sorted, stdout before stderr)
and, within a stream, the order of the file.
"""

import heapq

from keplerd.logs.reader import parse_block, stream_files

MAX_BATCH_LINES = 5000
MAX_BATCH_BYTES = 1024 * 1024


class StreamReader:
    """One stream's lines from a position up to its bound, parsed a block at a time."""

    def __init__(self, files, bound, position=None):
        self.files = files
        self.bound = bound
        self.position = position
        self._lines = []
        self._next = 0
        self._stamp = 0

    def peek(self):
        """Return the next ``(stamp, text)`` without taking it, or None when the stream is done."""
        if self._next >= len(self._lines) and not self._fill():
            return None
        return self._lines[self._next]

    def take(self):
        line = self._lines[self._next]
        self._next += 1
        return line

    def _fill(self):
        data, self.position = self.files.read(self.position, self.bound)
        self._lines, self._stamp = parse_block(data, self._stamp) if data else ([], self._stamp)
        self._next = 0
        return bool(self._lines)


class LogCursor:
    """Stored lines of the selected log names, oldest first, with ``head`` or ``tail`` applied.

    >>> cursor = LogCursor("/nonexistent", ["web"])
    >>> cursor.read(), cursor.exhausted
    ([], True)
    """

    def __init__(self, logs_dir, names, head=None, tail=None):
        self.names = list(names)
        self._remaining = head
        self._skip = 0
        self._readers = []
        for files in stream_files(logs_dir, self.names):
            bound = files.end()
            if bound is None:
                continue  # nothing stored yet: what comes later is live, not stored
            position = None
            if tail is not None:
                position, found = files.tail_start(tail, bound)
                self._skip += found
            self._readers.append(StreamReader(files, bound, position))
        if tail is not None:
            self._skip = max(0, self._skip - tail)
        self._heap = []
        for index in range(len(self._readers)):
            self._push(index)
        self.exhausted = self._done()

    def _push(self, index):
        line = self._readers[index].peek()
        if line is not None:
            heapq.heappush(self._heap, (line[0], index))

    def _done(self):
        return not self._heap or self._remaining == 0

    def read(self, max_lines=MAX_BATCH_LINES, max_bytes=MAX_BATCH_BYTES):
        """Return the next batch as ``[[stamp, name, stream, text], ...]``; empty when exhausted."""
        batch, size = [], 0
        while not self._done() and len(batch) < max_lines and size < max_bytes:
            stamp, index = heapq.heappop(self._heap)
            reader = self._readers[index]
            _, text = reader.take()
            self._push(index)
            if self._skip:
                self._skip -= 1  # a --tail line older than the newest N of the merge
                continue
            batch.append([stamp, reader.files.name, reader.files.stream, text])
            size += len(text)
            if self._remaining is not None:
                self._remaining -= 1
        self.exhausted = self._done()
        return batch
