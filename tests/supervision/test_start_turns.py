"""Supervisors start in turns at the fork gate (supervise/start_turns.py): what a wait for a turn may meet."""

from keplerd.model import states

PAIR = """
services:
  a: {command: [a]}
  b: {command: [b]}
"""


def test_a_service_stopped_while_waiting_for_its_turn_never_spawns(stack):
    stack.load(PAIR)
    stack.system.fork_gate.acquire()  # a fork under way elsewhere (a hook, another config's service)
    stack.start()
    assert stack.status("b") == states.STARTING and stack["b"].supervised
    stack.stop("b")
    assert stack.status("b") == states.STOPPED and not stack["b"].supervised
    stack.system.fork_gate.release()
    stack.wait_status("a", states.RUNNING)
    assert stack.system.spawns() == ["a"]
    assert stack.status("b") == states.STOPPED


def test_a_shutdown_while_services_wait_for_their_turn_stops_them_all(stack):
    stack.load(PAIR)
    stack.system.fork_gate.acquire()
    stack.start()
    stack.in_background(stack.project.shutdown)
    stack.wait_for(lambda: all(status == states.STOPPED for status in stack.statuses().values()), "all stopped")
    stack.system.fork_gate.release()
    assert stack.system.spawns() == []
