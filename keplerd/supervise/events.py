"""Per-client event queues that never block the daemon, and the daemon's event feed.

A publisher offers events; a subscriber that falls behind by more than its byte
budget is dropped (it learns so on its next ``get``) instead of slowing anyone.
``FEED`` carries every config's events (SPEC §19) to ``keplerctl events`` readers.
"""

import collections

from gevent.queue import Empty, Queue

DEFAULT_BUDGET = 16 * 1024 * 1024
EVENT_READER_BUDGET = 8 * 1024 * 1024
# The feed's latest events, for a reader that reconnects (``daemon reexec``) and asks from its last ``seq``.
RECENT_EVENTS = 1000


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
    """Every config's events, offered to each reader whose filter accepts them.

    Each event gets the next ``seq``; the latest ``RECENT_EVENTS`` are kept, so that a
    reader whose connection was cut (``daemon reexec``) asks from its last ``seq`` and
    misses none. ``id`` names the sequence: it survives a reexec, not a restart.
    """

    def __init__(self, feed_id="", recent=RECENT_EVENTS):
        self.id = feed_id
        self.next_seq = 1
        self._recent = collections.deque(maxlen=recent)
        self._readers = {}   # Subscriber -> accept(event)

    def join(self, subscriber, accept, after=None, feed_id=None):
        """Add a reader; return ``(events after seq *after* it accepts, how many it missed)``.

        *after* counts only in the sequence *feed_id* (this feed's, across reexecs): from
        another one (a daemon restarted since) nothing is replayed and ``missed`` is None.
        Joining and replaying yield nowhere between: every later event reaches the reader live.
        """
        self._readers[subscriber] = accept
        if after is None:
            return [], 0
        if feed_id != self.id:
            return [], None
        oldest = self._recent[0]["seq"] if self._recent else self.next_seq
        replay = [event for event in self._recent if event["seq"] > after and accept(event)]
        return replay, max(0, oldest - after - 1)

    def leave(self, subscriber):
        self._readers.pop(subscriber, None)

    def publish(self, event):
        """Number *event*, keep it, and offer it to the readers that want it."""
        event["seq"] = self.next_seq
        self.next_seq += 1
        self._recent.append(event)
        if not self._readers:
            return
        size = 128 + sum(len(value) for value in event.values() if isinstance(value, str))
        for subscriber, accept in tuple(self._readers.items()):
            if accept(event):
                subscriber.offer(event, size)

    def hand_over(self):
        """Return what the next image of the daemon needs to carry the sequence on (SPEC §20)."""
        return {"id": self.id, "next_seq": self.next_seq, "recent": list(self._recent)}

    def take_over(self, record):
        self.id, self.next_seq = record["id"], record["next_seq"]
        self._recent.clear()
        self._recent.extend(record["recent"])


FEED = Feed()
