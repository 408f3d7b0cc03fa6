"""The daemon's open log reads, by cursor id: each client's place in a config's logs.

A client reads a config's logs in batches through a cursor. Cursors whose client
has gone, or that have not been used for ``IDLE_SECONDS``, are closed by a sweeper
greenlet that exists only while some cursor is open.
"""

import logging
import os
import time

import gevent
from gevent.pool import Group

from keplerd.logs.cursor import MAX_BATCH_BYTES, LogCursor
from keplerd.logs.follow import LiveFeed
from keplerd.logs.reader import selected_names
from keplerd.model.errors import UnknownName

log = logging.getLogger("keplerd.logs")

IDLE_SECONDS = 300.0
SWEEP_SECONDS = 30.0
MAX_WAIT_SECONDS = 30.0
GATHER_SECONDS = 0.05  # what a follower's lines may lag, at most, to travel in fewer answers


class FollowerDropped(Exception):
    """The follower fell too far behind the services and was dropped."""


class Reading:
    """One client's read of one config's logs: stored lines first, then, when following, live ones.

    *stored* is a ``LogCursor``; *live* a ``LiveFeed`` already attached (or None);
    *owner* the client session (its ``closed`` tells when the client is gone).
    """

    def __init__(self, config_id, stored, live=None, owner=None, grep=None):
        self.config_id = config_id
        self.stored = stored
        self.live = live
        self.owner = owner
        self.grep = grep
        self.project = None

    @property
    def owner_gone(self):
        return bool(getattr(self.owner, "closed", False))

    def next_batch(self, wait=0.0):
        """Return the next batch: ``{"lines": [...]}`` or ``{"chunks": [...]}``, and ``done``.

        Live chunks without a filter come as ``RawJSON``, encoded once for every follower at this place.

        Following, with nothing new, waits up to *wait* seconds for live output.
        Raises ``FollowerDropped`` when the live feed overflowed.
        """
        if not self.stored.exhausted:
            lines = self.stored.read()
            return {"lines": lines, "done": self.stored.exhausted and self.live is None}
        if self.live is None:
            return {"lines": [], "done": True}
        idle = not self.live.dropped and not self.live.pending
        if idle and self.live.wait(min(max(wait, 0.0), MAX_WAIT_SECONDS)):
            # Woken by the first chunk of a burst: let the rest of it gather, so that a
            # follower costs one answer per burst, not one per chunk the pumps read.
            gevent.sleep(GATHER_SECONDS)
        if self.live.dropped:
            raise FollowerDropped("log follower dropped: it fell too far behind the services' output")
        if self.grep is None:
            return {"chunks": self.live.take_encoded(MAX_BATCH_BYTES), "done": False}
        chunks = [[name, stream, text] for name, stream, data in self.live.take(MAX_BATCH_BYTES)
                  if (text := _matching_lines(data, self.grep))]
        return {"chunks": chunks, "done": False}

    def follow(self, project):
        """Listen to *project*'s writers (again, after a recreate made a new one)."""
        if self.live is not None and project is not self.project:
            self.live.attach(project.log_listeners)
        self.project = project

    def close(self):
        if self.live is not None:
            self.live.detach()


def _matching_lines(data, grep):
    """Return the stored-format lines (``<ms> <text>``) of *data* whose text matches *grep*."""
    lines = data.split("\n")
    if lines[-1] == "":
        lines.pop()
    return "".join(line + "\n" for line in lines if grep.search(line.partition(" ")[2]))


def open_reading(project, services=(), no_hook=False, head=None, tail=None, follow=False, owner=None,
                 since=None, until=None, grep=None):
    """Return a ``Reading`` of *project*'s logs as they are now (and, following, from now on).

    Buffers are flushed, the stored lines' ends fixed and the live feed hooked up
    in one go, without yielding: every line is either stored before the bounds or
    live after them, never both, never neither.
    """
    project.logs.flush()
    names = selected_names(project.paths.logs, services, no_hook)
    stored = LogCursor(project.paths.logs, names, head=head, tail=tail, since=since, until=until, grep=grep)
    reading = Reading(project.id, stored, LiveFeed(services, no_hook) if follow else None, owner, grep)
    reading.follow(project)
    return reading


class CursorTable:
    """Open ``Reading`` objects by cursor id, closed when idle or orphaned."""

    def __init__(self, idle_seconds=IDLE_SECONDS, clock=time.monotonic):
        self.idle_seconds = idle_seconds
        self._clock = clock
        self._open = {}
        self._used = {}
        self._sweeper = Group()

    def __len__(self):
        return len(self._open)

    def open(self, reading):
        """Register *reading*; return its new cursor id."""
        cursor_id = os.urandom(8).hex()  # not `secrets`: it loads OpenSSL (~4 MiB) for this
        self._open[cursor_id] = reading
        self._used[cursor_id] = self._clock()
        if not len(self._sweeper):
            self._sweeper.spawn(self._sweep_while_open)
        return cursor_id

    def get(self, cursor_id):
        """Return the reading of *cursor_id* and mark it used; raise ``UnknownName`` if unknown or expired."""
        self.expire()
        reading = self._open.get(cursor_id)
        if reading is None:
            raise UnknownName(f"unknown or expired log cursor: {cursor_id}")
        self._used[cursor_id] = self._clock()
        return reading

    def touch(self, cursor_id):
        if cursor_id in self._used:
            self._used[cursor_id] = self._clock()

    def close(self, cursor_id):
        reading = self._open.pop(cursor_id, None)
        self._used.pop(cursor_id, None)
        if reading is not None:
            reading.close()

    def close_owned_by(self, owner):
        """Close the cursors of a client that has gone (at once, not at the next sweep)."""
        for cursor_id in [cursor_id for cursor_id, reading in self._open.items() if reading.owner is owner]:
            self.close(cursor_id)

    def expire(self):
        """Close the cursors idle for too long or whose client has gone; return how many."""
        now = self._clock()
        stale = [cursor_id for cursor_id, reading in self._open.items()
                 if reading.owner_gone or now - self._used[cursor_id] >= self.idle_seconds]
        for cursor_id in stale:
            log.debug("closing log cursor %s (idle or client gone)", cursor_id)
            self.close(cursor_id)
        return len(stale)

    def close_all(self):
        """Close every cursor and stop sweeping (the daemon shuts down)."""
        self._sweeper.kill()
        for cursor_id in list(self._open):
            self.close(cursor_id)

    def _sweep_while_open(self):
        while self._open:
            gevent.sleep(min(SWEEP_SECONDS, self.idle_seconds))
            self.expire()
