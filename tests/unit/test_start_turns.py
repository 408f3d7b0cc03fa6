"""StartTurns: queued supervisors start one at a time, each once the fork gate is free."""

import gevent
import pytest
from gevent.event import Event
from gevent.lock import Semaphore

from keplerd.supervise.start_turns import StartTurns

WAIT_SECONDS = 5


def until(predicate, what):
    with gevent.Timeout(WAIT_SECONDS, AssertionError(f"timed out waiting for {what}")):
        while not predicate():
            gevent.sleep(0.001)


@pytest.fixture
def gate():
    return Semaphore()


def forker(gate, journal, name, fork_done):
    """A supervisor that forks: it holds the gate until *fork_done* is set."""
    def run():
        journal.append(f"{name} started")
        with gate:
            fork_done.wait()
            journal.append(f"{name} forked")
    return gevent.Greenlet(run)


def test_the_next_starts_only_once_the_one_before_has_forked(gate):
    journal, forks = [], [Event() for _ in range(3)]
    greenlets = [forker(gate, journal, f"s{i}", forks[i]) for i in range(3)]
    turns = StartTurns(gate)
    for greenlet in greenlets:
        turns.start(greenlet)
    until(lambda: journal == ["s0 started"], "s0 at the gate")
    assert not greenlets[1].started and not greenlets[2].started  # waiting, they hold no stack
    forks[0].set()
    until(lambda: journal[-1:] == ["s1 started"], "s1 at the gate")
    assert not greenlets[2].started
    forks[1].set()
    forks[2].set()
    gevent.joinall(greenlets, timeout=WAIT_SECONDS)
    assert journal == ["s0 started", "s0 forked", "s1 started", "s1 forked", "s2 started", "s2 forked"]


def test_one_that_waits_for_something_else_does_not_hold_up_the_next(gate):
    dependency_up, fork_done = Event(), Event()
    journal = []
    waiting = gevent.Greenlet(lambda: (dependency_up.wait(), journal.append("dependent ran")))
    turns = StartTurns(gate)
    turns.start(waiting)
    turns.start(forker(gate, journal, "next", fork_done))
    until(lambda: journal == ["next started"], "the next one at the gate")
    fork_done.set()
    until(lambda: "next forked" in journal, "the next one's fork")
    dependency_up.set()
    until(lambda: waiting.dead, "the dependent to finish")
    assert journal == ["next started", "next forked", "dependent ran"]


def test_one_killed_before_its_turn_never_runs_and_the_rest_still_start(gate):
    journal, fork_done = [], Event()
    first = forker(gate, journal, "first", fork_done)
    stopped = gevent.Greenlet(lambda: journal.append("stopped ran"))
    last = gevent.Greenlet(lambda: journal.append("last ran"))
    turns = StartTurns(gate)
    for greenlet in (first, stopped, last):
        turns.start(greenlet)
    until(lambda: journal == ["first started"], "first at the gate")
    stopped.kill()  # a stop while it waits for its turn
    fork_done.set()
    until(lambda: last.dead, "the last one to run")
    assert journal == ["first started", "first forked", "last ran"]
    assert stopped.dead and not stopped.started


def test_greenlets_queued_after_the_queue_emptied_start_too(gate):
    turns = StartTurns(gate)
    ran = []
    first = gevent.Greenlet(ran.append, "first")
    turns.start(first)
    until(lambda: first.dead, "the first to run")
    gevent.sleep(0)  # the starter has ended (the queue was empty)
    second = gevent.Greenlet(ran.append, "second")
    turns.start(second)
    until(lambda: second.dead, "the second to run")
    assert ran == ["first", "second"]
