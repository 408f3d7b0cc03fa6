"""Dependency conditions and their timeouts (SPEC §7), as the supervisor awaits them."""

import pytest

from keplerd.model import states


def pair(condition, extra="", dependency="restart: no"):
    return f"""
services:
  dep: {{command: [dep], {dependency}}}
  app:
    command: [app]
    depends_on: {{dep: {{condition: {condition}{extra}}}}}
"""


def test_completed_successfully_waits_for_exit_zero(stack):
    stack.load(pair("service_completed_successfully"))
    stack.start()
    stack.system.wait_spawn("dep")
    stack.wait_for(lambda: stack["app"].waiting_on == ["dep (service_completed_successfully)"], "waiting_on")
    assert stack.status("app") == states.STARTING
    stack.system.child("dep").exit(0)
    stack.wait_status("app", states.RUNNING)
    assert stack["app"].waiting_on is None


@pytest.mark.parametrize("returncode", [1, -9])
def test_completed_successfully_fails_at_once_when_the_dependency_failed(stack, returncode):
    stack.load(pair("service_completed_successfully"))
    stack.start()
    stack.system.wait_spawn("dep").exit(returncode)
    stack.wait_status("app", states.FAILED)
    assert "can never be satisfied" in stack["app"].reason
    assert "app" not in stack.system.spawns()


@pytest.mark.parametrize(("returncode", "met"), [(1, True), (4, True), (5, True), (2, False), (0, False)])
def test_service_failed_with_exit_code_filters(stack, returncode, met):
    stack.load(pair("service_failed", ", exit_code: [1, '4:5']"))
    stack.start()
    stack.system.wait_spawn("dep").exit(returncode)
    stack.wait_status("app", states.RUNNING if met else states.FAILED)


@pytest.mark.parametrize("returncode", [0, 3, -15])
def test_service_stopped_is_met_by_any_end(stack, returncode):
    stack.load(pair("service_stopped"))
    stack.start()
    stack.system.wait_spawn("dep").exit(returncode)
    stack.wait_status("app", states.RUNNING)


def test_service_stopped_is_met_by_a_stop(stack):
    stack.load(pair("service_stopped"))
    stack.start()
    stack.system.wait_spawn("dep")
    stack.stop("dep")
    stack.wait_status("app", states.RUNNING)


def test_service_started_is_met_once_the_dependency_runs_its_post_start(stack):
    stack.load(pair("service_started", dependency="hooks: {post_start: {run: 'true'}}"))
    stack.system.script("dep.post_start", exit_code=None)
    stack.start()
    stack.system.wait_spawn("dep.post_start")
    stack.wait_status("dep", states.RUNNING)
    assert stack.status("app") == states.STARTING
    stack.system.child("dep.post_start").exit(0)
    stack.wait_status("app", states.RUNNING)


def test_service_started_is_met_by_a_dependency_that_already_ended(stack):
    stack.load(pair("service_started"))
    stack.start("dep")
    stack.system.wait_spawn("dep").exit(0)
    stack.wait_status("dep", states.EXITED)
    stack.start("app")
    stack.wait_status("app", states.RUNNING)


def test_service_healthy_waits_for_a_passing_probe(stack):
    stack.load(pair("service_healthy", dependency="healthcheck: {test: [probe], interval: 10ms}"))
    stack.system.probe_results["dep"] = [(False, 1), (False, 1), (True, 0)]
    stack.start()
    stack.wait_status("dep", states.HEALTHY)
    stack.wait_status("app", states.RUNNING)
    probes = [entry for entry in stack.system.journal if entry[0] == "probe"]
    assert [passed for _, _, passed in probes[:3]] == [False, False, True]


def test_service_unhealthy_needs_healthy_then_unhealthy(stack):
    stack.load(pair("service_unhealthy", dependency="healthcheck: {test: [probe], interval: 10ms, retries: 2}"))
    stack.system.probe_results["dep"] = [(True, 0), (False, 1), (False, 1)] + [(False, 1)] * 100
    stack.start()
    stack.wait_status("app", states.RUNNING)
    assert stack["dep"].was_healthy and stack.status("dep") == states.UNHEALTHY


def test_an_edge_timeout_fails_the_dependent_with_the_reason(stack):
    stack.load(pair("service_completed_successfully", ", timeout: 50ms"))
    stack.start()
    stack.wait_status("app", states.FAILED)
    assert stack["app"].reason == "timed out after 0.05s waiting for dep (service_completed_successfully)"
    assert stack.status("dep") == states.RUNNING


def test_the_global_timeout_applies_when_the_edge_has_none(stack):
    stack.load("kepler: {timeout: 50ms}\n" + pair("service_completed_successfully"))
    stack.start()
    stack.wait_status("app", states.FAILED)
    assert stack["app"].reason.startswith("timed out after 0.05s")


def test_an_edge_timeout_overrides_the_global_one(stack):
    stack.load("kepler: {timeout: 10m}\n" + pair("service_completed_successfully", ", timeout: 50ms"))
    stack.start()
    stack.wait_status("app", states.FAILED)
    assert stack["app"].reason.startswith("timed out after 0.05s")


def test_a_condition_met_before_the_timeout_wins(stack):
    stack.load(pair("service_completed_successfully", ", timeout: 10s"))
    stack.start()
    stack.system.wait_spawn("dep").exit(0)
    stack.wait_status("app", states.RUNNING)


def test_waiting_on_lists_every_pending_condition(stack):
    stack.load("""
        services:
          one: {command: [one], restart: no}
          two: {command: [two], restart: no}
          app:
            command: [app]
            depends_on:
              one: {condition: service_completed_successfully}
              two: {condition: service_completed_successfully}
    """)
    stack.start()
    stack.wait_for(lambda: stack["app"].waiting_on and len(stack["app"].waiting_on) == 2, "two pending")
    stack.system.child("one").exit(0)
    stack.wait_for(lambda: stack["app"].waiting_on == ["two (service_completed_successfully)"], "one pending")
    stack.system.child("two").exit(0)
    stack.wait_status("app", states.RUNNING)


def test_wait_startup_names_what_is_still_starting(stack):
    from keplerd.supervise import lifecycle

    stack.load(pair("service_completed_successfully"))
    names = stack.start()
    failed, pending = lifecycle.wait_startup(stack.project, names, timeout=0.05)
    assert (failed, pending) == ([], ["app"])
