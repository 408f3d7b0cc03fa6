"""A follower's live feed: the chunks written after its cursor began, bounded by bytes.

It is a listener of the config's log writers, called from the pump's loop watcher
callback (in the hub: a pump has no greenlet) for every chunk, stored or not. It
never blocks and never copies: it keeps a reference to the chunk, or, when the
follower has fallen more than its budget behind, drops the follower and unhooks
itself so it costs the pumps nothing more.
"""

import json
from collections import deque

from gevent.event import Event

from keplerd.control.protocol import RawJSON
from keplerd.logs.reader import belongs_to

DEFAULT_BUDGET = 8 * 1024 * 1024


class LiveFeed:
    """Chunks ``(name, stream, data)`` of the selected log names, waiting to be read."""

    def __init__(self, services=(), no_hook=False, budget=DEFAULT_BUDGET):
        self.services = set(services)
        self.no_hook = no_hook
        self.budget = budget
        self.dropped = False
        self._chunks = deque()
        self._queued = 0
        self._arrived = Event()
        self._selected = {}
        self._listeners = None

    def attach(self, listeners):
        """Start listening on *listeners* (a config's set), leaving the previous set if any."""
        self.detach()
        if not self.dropped:
            self._listeners = listeners
            listeners.add(self)
            ENCODED.users += 1

    def detach(self):
        if self._listeners is not None:
            self._listeners.discard(self)
            self._listeners = None
            ENCODED.leave()

    def __call__(self, name, stream, data):
        selected = self._selected.get(name)
        if selected is None:
            selected = self._selected[name] = belongs_to(name, self.services, self.no_hook)
        if not selected or self.dropped:
            return
        if self._queued + len(data) > self.budget:
            self.dropped = True
            self._chunks.clear()
            self._queued = 0
            self.detach()
            self._arrived.set()
            return
        self._chunks.append((name, stream, data))
        self._queued += len(data)
        self._arrived.set()

    @property
    def pending(self):
        return bool(self._chunks)

    def take(self, max_bytes):
        """Return queued chunks as ``[[name, stream, text], ...]``, about *max_bytes* at most."""
        return merge_runs(self._pop(max_bytes))

    def take_encoded(self, max_bytes):
        """Return what ``take`` would, as JSON already encoded: one encoding for every follower at this place."""
        return ENCODED.get(self._pop(max_bytes))

    def _pop(self, max_bytes):
        chunks, size = [], 0
        while self._chunks and (not chunks or size + len(self._chunks[0][2]) <= max_bytes):
            chunk = self._chunks.popleft()
            self._queued -= len(chunk[2])
            size += len(chunk[2])
            chunks.append(chunk)
        if not self._chunks:
            self._arrived.clear()
        return tuple(chunks)

    def wait(self, timeout):
        """Block until something arrives (or the follower is dropped), at most *timeout* seconds."""
        return self._arrived.wait(timeout)


def merge_runs(chunks):
    """Return *chunks* ``(name, stream, data)`` as ``[[name, stream, text], ...]``.

    Consecutive chunks of one stream travel as one text.
    """
    runs = []
    for name, stream, data in chunks:
        if runs and runs[-1][0] == name and runs[-1][1] == stream:
            runs[-1][2].append(data)
        else:
            runs.append((name, stream, [data]))
    return [[name, stream, b"".join(parts).decode("utf-8", "replace")] for name, stream, parts in runs]


class SharedEncodings:
    """The JSON of the last few batches taken, by their chunks: followers at one place share one.

    Every follower of a service is handed the same chunks and, woken by the same burst,
    takes the same batch: encoding it once instead of once per follower is most of what
    fifty followers cost. The key is the chunks' content (names, streams and bytes),
    so a hit is right by construction, whoever took the batch first. Kept only while
    some follower listens, and only a few: a batch is at most ``MAX_BATCH_BYTES``.
    """

    def __init__(self, size=4):
        self.size = size
        self.users = 0
        self._encoded = {}

    def get(self, chunks):
        """Return ``RawJSON`` of ``merge_runs(chunks)``, encoded once for all who ask."""
        encoded = self._encoded.get(chunks)
        if encoded is None:
            encoded = RawJSON(json.dumps(merge_runs(chunks), separators=(",", ":"), ensure_ascii=False).encode())
            if chunks:
                if len(self._encoded) >= self.size:
                    del self._encoded[next(iter(self._encoded))]  # the oldest: its followers have moved on
                self._encoded[chunks] = encoded
        return encoded

    def leave(self):
        """A follower stopped listening; with none left, nothing is worth keeping."""
        self.users -= 1
        if self.users <= 0:
            self.users = 0
            self._encoded.clear()


ENCODED = SharedEncodings()
