"""Per-client event queues that never block the daemon, and the daemon's event feed.

A publisher offers events; a subscriber that falls behind by more than its byte
budget is dropped (it learns so on its next ``get``) instead of slowing anyone.
``FEED`` carries every config's events (SPEC §19) to ``keplerctl events`` readers.
"""

from gevent.queue import Empty, Queue

DEFAULT_BUDGET = 16 * 1024 * 1024
EVENT_READER_BUDGET = 8 * 1024 * 1024


class Dropped(Exception):
    """The subscriber fell too far behind and was dropped."""


class Subscriber:
    """A bounded (by bytes) queue of events for one client."""

    def __init__(self, budget=DEFAULT_BUDGET):
        self._queue = Queue()
        self._budget = budget
        self._queued_bytes = 0
        self.dropped = False

    def offer(self, event, size=64):
        """Queue *event* (about *size* bytes) unless the subscriber is over budget."""
        if self.dropped:
            return
        if self._queued_bytes + size > self._budget:
            self.dropped = True
            self._queue.put(None)  # wakes the reader so it notices at once
            return
        self._queued_bytes += size
        self._queue.put((event, size))

    def get(self, timeout=None):
        """Return the next event, ``None`` after *timeout*; raise ``Dropped`` when dropped."""
        try:
            item = self._queue.get(timeout=timeout)
        except Empty:
            return None
        if item is None or self.dropped:
            raise Dropped("client too slow: events were dropped")
        event, size = item
        self._queued_bytes -= size
        return event

    def drain(self):
        """Return every event queued now, without waiting."""
        events = []
        while not self._queue.empty():
            event = self.get(timeout=0)
            if event is not None:
                events.append(event)
        return events


class Feed:
    """Every config's events, offered to each reader whose filter accepts them."""

    def __init__(self):
        self._readers = {}   # Subscriber -> accept(event)

    def join(self, subscriber, accept):
        self._readers[subscriber] = accept

    def leave(self, subscriber):
        self._readers.pop(subscriber, None)

    def publish(self, event):
        """Offer *event* to the readers that want it (nothing at all without readers)."""
        if not self._readers:
            return
        size = 128 + sum(len(value) for value in event.values() if isinstance(value, str))
        for subscriber, accept in tuple(self._readers.items()):
            if accept(event):
                subscriber.offer(event, size)


FEED = Feed()
