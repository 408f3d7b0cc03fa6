"""Start and stop: order, signals, states and spawn failures, on fake children."""

import signal

import gevent
import pytest

from keplerd.model import states
from keplerd.model.errors import UnknownName
from keplerd.supervise import lifecycle

TWO = """
services:
  db: {command: [db]}
  web:
    command: [web]
    depends_on: {db: {condition: service_started}}
"""

CHAIN = """
services:
  a: {command: [a]}
  b: {command: [b], depends_on: [a]}
  c: {command: [c], depends_on: [b]}
"""

DIAMOND = """
services:
  base: {command: [base]}
  left: {command: [left], depends_on: [base]}
  right: {command: [right], depends_on: [base]}
  top: {command: [top], depends_on: [left, right]}
"""


def test_start_spawns_dependencies_first_and_both_run(stack):
    stack.load(TWO)
    assert stack.start() == ["db", "web"]
    stack.wait_status("web", states.RUNNING)
    assert stack.system.spawns() == ["db", "web"]
    assert stack.status("db") == states.RUNNING


def test_a_chain_starts_in_dependency_order(stack):
    stack.load(CHAIN)
    stack.start()
    stack.wait_status("c", states.RUNNING)
    assert stack.system.spawns() == ["a", "b", "c"]


def test_a_diamond_starts_its_top_last(stack):
    stack.load(DIAMOND)
    stack.start()
    stack.wait_status("top", states.RUNNING)
    spawned = stack.system.spawns()
    assert spawned[0] == "base" and spawned[-1] == "top"


def test_a_dependent_waits_while_its_dependency_is_not_up(stack):
    stack.load(TWO)
    stack.system.script("db", spawn_error="program not found: db")
    stack.start()
    stack.wait_status("web", states.FAILED)
    assert stack.system.spawns() == []
    assert "db (service_started) can never be satisfied" in stack["web"].reason


def test_stop_stops_dependents_first_with_the_stop_signal(stack):
    stack.load(TWO)
    stack.start()
    stack.wait_status("web", states.RUNNING)
    stack.stop()
    assert stack.system.stops() == [("web", signal.SIGTERM), ("db", signal.SIGTERM)]
    assert stack.statuses() == {"db": states.STOPPED, "web": states.STOPPED}
    assert stack["web"].desired == "down"


def test_stop_of_a_diamond_stops_the_base_last(stack):
    stack.load(DIAMOND)
    stack.start()
    stack.wait_status("top", states.RUNNING)
    stack.stop()
    stopped = [name for name, _ in stack.system.stops()]
    assert stopped[0] == "top" and stopped[-1] == "base" and len(stopped) == 4


def test_stopping_one_service_leaves_the_others_running(stack):
    stack.load(TWO)
    stack.start()
    stack.wait_status("web", states.RUNNING)
    stack.stop("web")
    assert stack.status("web") == states.STOPPED
    assert stack.status("db") == states.RUNNING


def test_stop_all_then_start_all_again_gives_new_processes(stack):
    stack.load(TWO)
    stack.start()
    stack.wait_status("web", states.RUNNING)
    first = stack["web"].pid
    stack.stop()
    stack.start()
    stack.wait_status("web", states.RUNNING)
    assert stack["web"].pid != first
    assert stack.system.spawns() == ["db", "web", "db", "web"]


def test_the_configured_stop_signal_is_sent(stack):
    stack.load("services:\n  pg: {command: [pg], stop_signal: SIGINT}\n")
    stack.start()
    stack.wait_status("pg", states.RUNNING)
    stack.stop()
    assert stack.system.stops() == [("pg", signal.SIGINT)]


def test_stop_with_a_signal_sends_that_signal(stack):
    stack.load(TWO)
    stack.start()
    stack.wait_status("web", states.RUNNING)
    stack.stop("web", signum=signal.SIGUSR1)
    assert stack.system.stops() == [("web", signal.SIGUSR1)]


def test_a_child_ignoring_the_stop_signal_is_killed_after_the_grace_period(stack):
    stack.load("services:\n  stubborn: {command: [s], stop_grace_period: 50ms}\n")
    stack.system.script("stubborn", ignores_stop=True)
    stack.start()
    stack.wait_status("stubborn", states.RUNNING)
    stack.stop()
    assert stack.system.child("stubborn").signals == [signal.SIGTERM, signal.SIGKILL]
    assert stack.status("stubborn") == states.STOPPED


def test_stopping_a_stopped_service_is_a_no_op(stack):
    stack.load(TWO)
    stack.stop("web")
    assert stack.status("web") == states.STOPPED and stack.system.journal == []


def test_starting_a_running_service_spawns_nothing_new(stack):
    stack.load(TWO)
    stack.start("db")
    stack.wait_status("db", states.RUNNING)
    stack.start("db")
    assert stack.system.spawns() == ["db"]


def test_a_missing_program_fails_the_service_with_the_reason(stack):
    stack.load("services:\n  ghost: {command: [ghost]}\n")
    stack.system.script("ghost", spawn_error="program not found: ghost")
    stack.start()
    stack.wait_status("ghost", states.FAILED)
    assert stack["ghost"].reason == "program not found: ghost"
    assert b"kepler: ghost failed: program not found: ghost" in _log_bytes(stack, "ghost", "stderr")


def test_an_exit_by_a_signal_shows_killed(stack):
    stack.load("services:\n  job: {command: [job], restart: no}\n")
    stack.start()
    stack.system.wait_spawn("job").exit(-signal.SIGKILL)
    stack.wait_status("job", states.KILLED)
    assert stack["job"].signal == signal.SIGKILL and stack["job"].exit_code is None


def test_an_exit_records_its_code_and_clears_the_pid(stack):
    stack.load("services:\n  job: {command: [job], restart: no}\n")
    stack.start()
    stack.system.wait_spawn("job").exit(7)
    stack.wait_status("job", states.EXITED)
    assert (stack["job"].exit_code, stack["job"].pid) == (7, None)


def test_the_group_of_a_process_that_ended_on_its_own_is_killed(stack):
    stack.load("services:\n  job: {command: [job], restart: no}\n")
    stack.start()
    child = stack.system.wait_spawn("job")
    signalled = []
    stack.system.signal_group = lambda pgid, signum: signalled.append((pgid, signum))
    child.exit(0)
    stack.wait_status("job", states.EXITED)
    assert signalled == [(child.pgid, signal.SIGKILL)]


def test_the_group_of_a_stopped_process_is_left_to_the_stop(stack):
    stack.load("services:\n  job: {command: [job]}\n")
    stack.start()
    stack.wait_status("job", states.RUNNING)
    stack.stop()
    assert [entry for entry in stack.system.journal if entry[0] == "signal"] == []


def test_unknown_names_are_refused(stack):
    stack.load(TWO)
    with pytest.raises(UnknownName, match="no such service: nope"):
        stack.start("nope")


def test_start_named_starts_its_dependencies_too(stack):
    stack.load(CHAIN)
    stack.start("b")
    stack.wait_status("b", states.RUNNING)
    assert stack.system.spawns() == ["a", "b"] and stack.status("c") == states.STOPPED


def test_no_deps_starts_only_the_named_service_without_waiting(stack):
    stack.load(CHAIN)
    stack.start("c", no_deps=True)
    stack.wait_status("c", states.RUNNING)
    assert stack.system.spawns() == ["c"]


def test_runtime_records_pid_and_start_time_of_the_child(stack):
    stack.load(TWO)
    stack.start("db")
    stack.wait_status("db", states.RUNNING)
    child = stack.system.child("db")
    runtime = stack["db"].runtime()
    assert (runtime["pid"], runtime["create_time"]) == (child.pid, child.create_time)


def test_state_json_follows_the_states(stack):
    stack.load(TWO)
    stack.start("db")
    stack.wait_status("db", states.RUNNING)
    stack.wait_for(lambda: _saved(stack)["db"]["status"] == states.RUNNING, "state.json")
    stack.stop()
    stack.wait_for(lambda: _saved(stack)["db"]["status"] == states.STOPPED, "state.json")


def test_shutdown_stops_everything_but_keeps_what_the_user_wanted(stack):
    stack.load(TWO)
    stack.start()
    stack.wait_status("web", states.RUNNING)
    stack.project.shutdown()
    assert stack.statuses() == {"db": states.STOPPED, "web": states.STOPPED}
    assert stack["web"].desired == "up"
    assert _saved(stack)["web"]["desired"] == "up"


def test_requests_in_parallel_stop_once(stack):
    stack.load(TWO)
    stack.start()
    stack.wait_status("web", states.RUNNING)
    stoppers = [stack.in_background(stack.stop) for _ in range(3)]
    gevent.joinall(stoppers, raise_error=True)
    assert stack.system.stops() == [("web", signal.SIGTERM), ("db", signal.SIGTERM)]


def test_wait_startup_reports_started_and_failed(stack):
    stack.load("services:\n  ok: {command: [ok]}\n  bad: {command: [bad]}\n")
    stack.system.script("bad", spawn_error="nope")
    names = stack.start()
    failed, pending = lifecycle.wait_startup(stack.project, names, timeout=5)
    assert (failed, pending) == (["bad"], [])


def _saved(stack):
    from keplerd import persist

    return persist.read_json(stack.project.paths.state)["services"]


def _log_bytes(stack, name, stream):
    import os

    stack.project.logs.flush()
    path = os.path.join(stack.project.paths.logs, f"{name}.{stream}.log")
    return open(path, "rb").read() if os.path.exists(path) else b""


def test_a_bug_in_the_supervisor_fails_the_service_visibly(stack, monkeypatch):
    def broken_spawn(writer, spec, env=None, instance=None):
        raise RuntimeError("boom")  # not a SpawnError: a bug, which nothing expects

    stack.load("services:\n  web: {command: [web], restart: always}\n")
    monkeypatch.setattr(stack.system, "spawn_logged", broken_spawn)
    stack.start()
    stack.wait_status("web", states.FAILED)
    assert stack["web"].reason == "internal error: RuntimeError('boom')"
    assert b"kepler: web failed: internal error" in _log_bytes(stack, "web", "stderr")
    assert stack.system.stray_sweeps == [stack["web"].mark], "the crash handler still sweeps strays"
