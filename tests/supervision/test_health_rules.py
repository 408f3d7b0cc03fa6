"""Health verdicts (SPEC §8) on fake probes: transitions, retries, hooks and the probe's lifetime."""

from keplerd.model import states

CHECKED = "services:\n  web: {command: [web], healthcheck: {test: [probe], interval: 1ms, retries: 3}%s}\n"


def started(stack, hooks=""):
    stack.load(CHECKED % hooks)
    stack.system.hold_probes("web")
    stack.start()
    stack.wait_status("web", states.RUNNING)
    return stack["web"]


def test_a_passing_probe_makes_the_service_healthy(stack):
    web = started(stack)
    assert web.runtime()["health"] == "starting"
    stack.system.answer_probe("web", True)
    stack.wait_status("web", states.HEALTHY)
    assert web.was_healthy and web.last_probe["passed"] and web.last_probe["exit_code"] == 0


def test_unhealthy_after_exactly_retries_failures_then_recovers(stack):
    web = started(stack)
    stack.system.answer_probe("web", False)
    stack.system.answer_probe("web", False)
    assert web.status == states.RUNNING and web.health_failures == 2
    stack.system.answer_probe("web", False)
    stack.wait_status("web", states.UNHEALTHY)
    assert web.health_failures == 3 and web.last_probe["output"] == "probe failed"
    stack.system.answer_probe("web", True)
    stack.wait_status("web", states.HEALTHY)
    assert web.health_failures == 0


def test_a_single_failure_after_healthy_is_not_yet_unhealthy(stack):
    web = started(stack)
    stack.system.answer_probe("web", True)
    stack.system.answer_probe("web", False)
    assert web.status == states.HEALTHY and web.health_failures == 1


def test_transition_hooks_fire_once_per_transition(stack):
    started(stack, ", hooks: {post_healthcheck_success: {run: 'true'}, post_healthcheck_fail: {run: 'true'}}")
    for passed in (True, True, False, False, False, False, True):
        stack.system.answer_probe("web", passed)
    stack.wait_status("web", states.HEALTHY)
    stack.wait_for(lambda: len(stack.system.spawns("web")) == 4, "three hook runs")
    assert stack.system.spawns("web") == ["web", "web.post_healthcheck_success", "web.post_healthcheck_fail",
                                          "web.post_healthcheck_success"]


def test_start_period_delays_the_first_probe(stack):
    stack.load("services:\n  web: {command: [web], healthcheck: {test: [probe], start_period: 1h}}\n")
    stack.start()
    stack.wait_status("web", states.RUNNING)
    stack.project.spawn(lambda: None).join()
    assert stack.system.probes("web") == 0 and stack["web"].last_probe is None


def test_a_disabled_check_never_probes(stack):
    stack.load("services:\n  web: {command: [web], healthcheck: {test: [NONE]}}\n")
    stack.start()
    stack.wait_status("web", states.RUNNING)
    stack.project.spawn(lambda: None).join()
    assert stack.system.probes("web") == 0 and stack["web"].runtime()["health"] is None


def test_probing_stops_with_the_service_and_a_new_run_starts_afresh(stack):
    web = started(stack)
    stack.system.answer_probe("web", False)
    stack.stop()
    assert stack.system.probes("web") == 1
    stack.start()
    stack.wait_status("web", states.RUNNING)
    assert web.health_failures == 0 and web.last_probe is None


def test_a_verdict_after_the_process_ended_is_ignored(stack):
    web = started(stack)
    stack.system.child("web").exit(0)
    stack.wait_status("web", states.EXITED)
    assert web.runtime()["health"] is None


def test_a_crashing_health_monitor_fails_the_service_with_the_reason(stack, monkeypatch):
    def broken_probe(test, spec, timeout):
        raise RuntimeError("probe bug")

    stack.load(CHECKED % "")
    monkeypatch.setattr(stack.system, "probe", broken_probe)
    stack.start()
    stack.wait_status("web", states.FAILED)
    assert stack["web"].reason == "internal error: health monitor crashed: RuntimeError('probe bug')"
    assert not stack.system.running("web"), "the process goes with its supervisor"
    assert stack.system.spawns() == ["web"], "a crash is not a reason to restart"


def test_probes_that_change_nothing_neither_persist_nor_publish(stack, monkeypatch):
    """100 services probed every second: a probe that changes nothing costs no state.json write or event."""
    web = started(stack)
    stack.system.answer_probe("web", True)
    stack.wait_status("web", states.HEALTHY)
    changes, events = [], []
    monkeypatch.setattr(stack.project, "service_changed", lambda service: changes.append(service.name))
    monkeypatch.setattr(stack.project, "record", lambda service, kind, **fields: events.append(kind))
    for _ in range(5):
        stack.system.answer_probe("web", True)
    assert (changes, events) == ([], [])
    assert web.last_probe["passed"] and stack.system.probes("web") >= 6
    stack.system.answer_probe("web", False)  # a first failure changes the count: written, not an event
    assert (changes, events, web.status, web.health_failures) == (["web"], [], states.HEALTHY, 1)
