"""A follower's live feed: the chunks written after its cursor began, bounded by bytes.

It is a listener of the config's log writers, called from the pump's loop watcher
callback (in the hub: a pump has no greenlet) for every chunk, stored or not. It
never blocks and never copies: it keeps a reference to the chunk, or, when the
follower has fallen more than its budget behind, drops the follower and unhooks
itself so it costs the pumps nothing more.
"""

from collections import deque

from gevent.event import Event

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
        self._listeners = listeners
        if not self.dropped:
            listeners.add(self)

    def detach(self):
        if self._listeners is not None:
            self._listeners.discard(self)
            self._listeners = None

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
        runs, size = [], 0
        while self._chunks and (not runs or size + len(self._chunks[0][2]) <= max_bytes):
            name, stream, data = self._chunks.popleft()
            self._queued -= len(data)
            size += len(data)
            if runs and runs[-1][0] == name and runs[-1][1] == stream:
                runs[-1][2].append(data)  # consecutive chunks of one stream travel as one text
            else:
                runs.append((name, stream, [data]))
        if not self._chunks:
            self._arrived.clear()
        return [[name, stream, b"".join(parts).decode("utf-8", "replace")] for name, stream, parts in runs]

    def wait(self, timeout):
        """Block until something arrives (or the follower is dropped), at most *timeout* seconds."""
        return self._arrived.wait(timeout)
