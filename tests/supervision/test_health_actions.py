"""Health drives action (SPEC §10, §18) on a fake OS: on_unhealthy restarts, notify readiness, the wait."""

import gevent
import pytest

from keplerd.model import states
from keplerd.supervise import readywait

ON_UNHEALTHY = ("services:\n  web: {command: [web], healthcheck: {test: [probe], interval: 1ms, retries: 1},\n"
                "        restart: {policy: always, on_unhealthy: true, max_retries: %d}}\n")


def test_unhealthy_restarts_count_back_off_and_give_up(stack):
    stack.load(ON_UNHEALTHY % 2)
    stack.system.probe_results["web"] = [(False, 1)] * 10
    stack.start()
    stack.wait_status("web", states.FAILED)
    web = stack["web"]
    assert stack.system.spawns("web") == ["web", "web", "web"]
    assert [signum for _, signum in stack.system.stops()] == [15, 15, 15], "each run stopped with stop_signal"
    assert stack.system.delays() == [0.1], "the second quick restart backs off"
    assert (web.restarts, web.restart_reason, web.gave_up) == (2, "unhealthy", True)
    assert web.reason == "unhealthy, gave up after 2 retries"
    assert not any(name == "web.post_exit" for name in stack.system.spawns()), "no post_exit: it did not exit"


def test_a_healthy_run_resets_the_back_off(stack):
    stack.load(ON_UNHEALTHY % 1)
    # healthy then unhealthy, three runs in a row: never a give-up, never a delay.
    stack.system.probe_results["web"] = [(True, 0), (False, 1)] * 3 + [(False, 1)]
    stack.start()
    stack.wait_status("web", states.FAILED)
    assert stack["web"].restarts == 3 and stack.system.delays() == []


def test_without_on_unhealthy_an_unhealthy_service_keeps_running(stack):
    stack.load("services:\n  web: {command: [web], healthcheck: {test: [probe], interval: 1ms, retries: 1},\n"
               "        restart: always}\n")
    stack.system.hold_probes("web")
    stack.start()
    stack.wait_status("web", states.RUNNING)
    stack.system.answer_probe("web", False)
    stack.wait_status("web", states.UNHEALTHY)
    stack.system.answer_probe("web", False)
    assert stack.system.spawns("web") == ["web"] and stack.system.stops() == []


NOTIFY = "services:\n  app: {command: [app], notify: true%s}\n  web: {command: [web], depends_on: [app]}\n"


def test_notify_service_is_ready_on_ready_1_and_its_dependents_wait(stack):
    stack.load(NOTIFY % ", hooks: {post_start: {run: 'true'}}")
    stack.start()
    stack.system.wait_spawn("app")
    stack.system.notify("app", "STATUS=loading")
    stack.wait_for(lambda: stack["app"].status_text == "loading", "STATUS=loading")
    assert stack.status("app") == states.STARTING and stack.status("web") == states.STARTING
    assert stack.system.spawns() == ["app"], "post_start waits for READY=1"
    stack.system.notify("app", "READY=1\nSTATUS=serving")
    stack.wait_status("web", states.RUNNING)
    assert stack.status("app") == states.RUNNING and stack["app"].status_text == "serving"
    assert stack.system.spawns()[:2] == ["app", "app.post_start"]


def test_notify_without_ready_within_start_period_fails_and_stops_the_process(stack):
    stack.load(NOTIFY % ", healthcheck: {test: [probe], start_period: 10ms}")
    stack.start()
    stack.wait_status("app", states.FAILED)
    assert stack["app"].reason == "no READY=1 within 0.01s"
    assert stack.system.stops() == [("app", 15)] and stack.system.notify_sockets[0].closed


def test_wait_fails_at_once_on_a_crash_even_when_the_policy_restarts(stack):
    stack.load("services:\n  web: {command: [web], restart: always, healthcheck: {test: [probe], interval: 1ms}}\n")
    stack.system.hold_probes("web")
    names = stack.start()
    waiter = gevent.spawn(readywait.wait_ready, stack.project, names)
    stack.system.wait_spawn("web").exit(3)
    with pytest.raises(readywait.WaitFailed, match="^web exited with code 3 before it was healthy"):
        waiter.get(timeout=5)


def test_wait_reports_one_line_per_service(stack):
    stack.load("services:\n  web: {command: [web]}\n"
               "  report: {command: [r], depends_on: {web: {condition: service_unhealthy}}}\n")
    names = stack.start()
    lines = []
    readywait.wait_ready(stack.project, names, timeout=5, on_line=lambda name, text: lines.append((name, text)))
    assert lines == [("report", "deferred: waits on web (service_unhealthy)"), ("web", "running")]
