"""A follower's live feed: the chunks written after its cursor began, bounded by bytes.

It is a listener of the config's log writers, called from the pump's loop watcher
callback (in the hub: a pump has no greenlet) for every chunk, stored or not. It
never blocks and never copies: it keeps a reference to the chunk (one ``Chunk``
shared by every follower), or, when the follower has fallen more than its budget
behind, drops the follower and unhooks itself so it costs the pumps nothing more.
"""

from collections import deque

from gevent.event import Event

from keplerd.logs.batch_json import SHARED, merge_runs
from keplerd.logs.reader import belongs_to

DEFAULT_BUDGET = 8 * 1024 * 1024


class LiveFeed:
    """Chunks (``batch_json.Chunk``) of the selected log names, waiting to be read."""

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
            SHARED.users += 1

    def detach(self):
        if self._listeners is not None:
            self._listeners.discard(self)
            self._listeners = None
            SHARED.leave()

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
        self._chunks.append(SHARED.chunk(name, stream, data))
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
        return SHARED.encoded(self._pop(max_bytes))

    def _pop(self, max_bytes):
        chunks, size = [], 0
        while self._chunks and (not chunks or size + len(self._chunks[0].data) <= max_bytes):
            chunk = self._chunks.popleft()
            self._queued -= len(chunk.data)
            size += len(chunk.data)
            chunks.append(chunk)
        if not self._chunks:
            self._arrived.clear()
        return tuple(chunks)

    def wait(self, timeout):
        """Block until something arrives (or the follower is dropped), at most *timeout* seconds."""
        return self._arrived.wait(timeout)

