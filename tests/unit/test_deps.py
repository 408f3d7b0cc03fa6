from types import SimpleNamespace

import pytest

from keplerd.model import states
from keplerd.model.deps import condition_met, exit_code_matches, never_satisfiable, startup_outcome


def dep(status, exit_code=None, reached_up=False, was_healthy=False):
    return SimpleNamespace(status=status, exit_code=exit_code, reached_up=reached_up, was_healthy=was_healthy)


@pytest.mark.parametrize(("dependency", "met"), [
    (dep(states.RUNNING, reached_up=True), True),
    (dep(states.RUNNING, reached_up=False), False),   # spawned, but post_start still runs
    (dep(states.HEALTHY, reached_up=True), True),
    (dep(states.UNHEALTHY, reached_up=True), True),
    (dep(states.STARTING), False),
    (dep(states.EXITED, 0, reached_up=True), True),   # it started, did its job and ended
    (dep(states.STARTING, reached_up=True), True),    # restarting by policy after having run
    (dep(states.FAILED), False),
    (dep(states.STOPPED), False),
])
def test_service_started(dependency, met):
    assert condition_met(dependency, "service_started") is met


def test_service_healthy_only_when_healthy_now():
    assert condition_met(dep(states.HEALTHY, reached_up=True), "service_healthy")
    assert not condition_met(dep(states.RUNNING), "service_healthy")
    assert not condition_met(dep(states.UNHEALTHY, was_healthy=True), "service_healthy")


def test_service_completed_successfully_needs_exit_zero():
    assert condition_met(dep(states.EXITED, 0), "service_completed_successfully")
    assert not condition_met(dep(states.EXITED, 1), "service_completed_successfully")
    assert not condition_met(dep(states.RUNNING), "service_completed_successfully")


def test_service_unhealthy_needs_a_healthy_past_in_this_run():
    assert condition_met(dep(states.UNHEALTHY, was_healthy=True), "service_unhealthy")
    assert not condition_met(dep(states.UNHEALTHY, was_healthy=False), "service_unhealthy")


def test_service_failed_covers_nonzero_exits_signals_and_failures():
    assert condition_met(dep(states.EXITED, 2), "service_failed")
    assert condition_met(dep(states.KILLED), "service_failed")
    assert condition_met(dep(states.FAILED), "service_failed")
    assert not condition_met(dep(states.EXITED, 0), "service_failed")
    assert not condition_met(dep(states.STOPPED), "service_failed")


def test_exit_code_filters_apply_to_failed_and_stopped():
    ranges = [[1, 1], [5, 10]]
    assert condition_met(dep(states.EXITED, 7), "service_failed", ranges)
    assert not condition_met(dep(states.EXITED, 3), "service_failed", ranges)
    assert not condition_met(dep(states.KILLED), "service_failed", ranges), "no exit code to match"
    assert condition_met(dep(states.EXITED, 1), "service_stopped", ranges)
    assert not condition_met(dep(states.STOPPED), "service_stopped", ranges)
    assert condition_met(dep(states.STOPPED), "service_stopped")


def test_exit_code_ranges_are_inclusive():
    assert exit_code_matches(5, [[5, 10]]) and exit_code_matches(10, [[5, 10]])
    assert not exit_code_matches(11, [[5, 10]])
    assert exit_code_matches(None, None)


def test_terminal_unmet_dependencies_can_never_be_satisfied():
    assert never_satisfiable(dep(states.EXITED, 1), "service_completed_successfully")
    assert never_satisfiable(dep(states.STOPPED), "service_started")
    assert never_satisfiable(dep(states.EXITED, 0), "service_failed")
    assert not never_satisfiable(dep(states.STARTING), "service_completed_successfully")
    assert not never_satisfiable(dep(states.RUNNING), "service_failed"), "it may still fail"


@pytest.mark.parametrize(("dependency", "outcome"), [
    (dep(states.RUNNING, reached_up=True), "started"),
    (dep(states.EXITED, 0), "started"),
    (dep(states.STARTING), "pending"),
    (dep(states.STARTING, reached_up=True), "started"),
    (dep(states.FAILED), "failed"),
    (dep(states.EXITED, 1), "failed"),
    (dep(states.KILLED), "failed"),
])
def test_startup_outcome(dependency, outcome):
    assert startup_outcome(dependency) == outcome
