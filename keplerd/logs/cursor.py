"""A server-side log cursor: a place in every selected stream, read in batches merged by time.

A cursor fixes, when it is made, where each stream's stored lines end (its
*bound*): it reads up to there and no further, so a chatty service cannot make a
read endless, and a follower's live lines (``follow.py``) start exactly where the
stored ones stop. Lines of different streams are merged by timestamp; equal
timestamps keep the order of the streams (log names sorted, stdout before stderr)
and, within a stream, the order of the file.
"""

import heapq
from collections import deque

from keplerd.logs.reader import parse_block, stream_files

MAX_BATCH_LINES = 5000
MAX_BATCH_BYTES = 1024 * 1024
MAX_SCANNED_LINES = 50_000  # lines looked at per batch when a filter drops most of them


class StreamReader:
    """One stream's lines from a position up to its bound, parsed a block at a time."""

    def __init__(self, files, bound, position=None, until=None):
        self.files = files
        self.bound = bound
        self.position = position
        self.until = until
        self._lines = []
        self._next = 0
        self._stamp = 0

    def peek(self):
        """Return the next ``(stamp, text)`` without taking it, or None when the stream is done."""
        if self._next >= len(self._lines) and not self._fill():
            return None
        line = self._lines[self._next]
        return None if self.until is not None and line[0] > self.until else line

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
    """Stored lines of the selected log names, oldest first, with the filters of SPEC §11 applied.

    *since*/*until* (epoch ms) bound the lines' stamps: each stream's first line
    is found by binary search (``StreamFiles.since_start``), and a stream ends at
    its first line past *until*. *grep* (a compiled pattern) keeps the matching
    lines, before *head*/*tail* count: ``--tail 10 --grep x`` is the last 10
    matches. Plain ``--tail`` reads backwards from the end; with a filter the
    last lines are kept while reading forward instead.

    >>> cursor = LogCursor("/nonexistent", ["web"])
    >>> cursor.read(), cursor.exhausted
    ([], True)
    """

    def __init__(self, logs_dir, names, head=None, tail=None, since=None, until=None, grep=None):
        self.names = list(names)
        self._remaining = head
        self._grep = grep
        count_back = tail is not None and grep is None and since is None
        self._last = deque(maxlen=tail) if tail is not None and not count_back else None
        self._skip = 0
        self._readers = []
        for files in stream_files(logs_dir, self.names):
            bound = files.end()
            if bound is None:
                continue  # nothing stored yet: what comes later is live, not stored
            position = None if since is None else files.since_start(since, bound)
            if count_back:
                position, found = files.tail_start(tail, bound)
                self._skip += found
            self._readers.append(StreamReader(files, bound, position, until))
        if count_back:
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
        return (not self._heap and not self._last) or self._remaining == 0

    def read(self, max_lines=MAX_BATCH_LINES, max_bytes=MAX_BATCH_BYTES):
        """Return the next batch as ``[[stamp, name, stream, text], ...]``; empty when exhausted.

        A batch may be empty before the end when a filter dropped every line looked at.
        """
        batch, size, scanned = [], 0, 0
        while self._heap and self._remaining != 0 and len(batch) < max_lines and size < max_bytes \
                and scanned < MAX_SCANNED_LINES:
            stamp, index = heapq.heappop(self._heap)
            reader = self._readers[index]
            _, text = reader.take()
            self._push(index)
            scanned += 1
            if self._grep is not None and not self._grep.search(text):
                continue
            if self._skip:
                self._skip -= 1  # a --tail line older than the newest N of the merge
                continue
            line = [stamp, reader.files.name, reader.files.stream, text]
            if self._last is not None:
                self._last.append(line)  # only the last N count: they are sent at the end
                continue
            batch.append(line)
            size += len(text)
            if self._remaining is not None:
                self._remaining -= 1
        if not self._heap and self._last:
            batch, self._last = list(self._last), deque()
        self.exhausted = self._done()
        return batch
