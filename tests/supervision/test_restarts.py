"""Restarts (SPEC §10): the policy, the back-off, max_retries, counting, and propagation."""

import signal

import pytest

from keplerd.model import states


def job(policy, extra=""):
    return f"services:\n  job: {{command: [job], restart: {{policy: {policy}{extra}}}}}\n"


@pytest.mark.parametrize(("policy", "returncode", "restarts"), [
    ("no", 0, False), ("no", 1, False), ("no", -9, False),
    ("always", 0, True), ("always", 1, True), ("always", -9, True),
    ("on-failure", 0, False), ("on-failure", 1, True), ("on-failure", -9, True),
])
def test_restart_policy(stack, policy, returncode, restarts):
    stack.load(job(policy))
    stack.start()
    stack.system.wait_spawn("job").exit(returncode)
    if restarts:
        stack.system.wait_spawn("job", count=2)
        stack.wait_status("job", states.RUNNING)
        assert stack["job"].restarts == 1 and stack["job"].restart_reason == "policy"
    else:
        stack.wait_status("job", states.EXITED, states.KILLED)
        assert stack["job"].restarts == 0 and stack.system.spawns() == ["job"]


def test_a_policy_restart_says_why_while_it_waits(stack):
    stack.load(job("always", ", backoff: 0"))
    stack.start()
    seen = []
    stack.project.subscribers.add(type("S", (), {"offer": lambda self, event, size=0: seen.append(event)})())
    stack.system.wait_spawn("job").exit(3)
    stack.system.wait_spawn("job", count=2)
    assert any(event.get("reason") == "restarting after exit code 3" for event in seen)


def test_the_crash_loop_backs_off_with_doubling_delays(stack):
    stack.load(job("on-failure", ", backoff: 100ms, max_backoff: 1s"))
    stack.start()
    for count in range(1, 8):
        stack.system.wait_spawn("job", count=count).exit(1)
    stack.system.wait_spawn("job", count=8)
    assert stack.system.delays() == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]  # the first restart is immediate


def test_a_zero_backoff_restarts_at_once_every_time(stack):
    stack.load(job("always", ", backoff: 0"))
    stack.start()
    for count in range(1, 5):
        stack.system.wait_spawn("job", count=count).exit(0)
    stack.system.wait_spawn("job", count=5)
    assert stack.system.delays() == []


def test_max_retries_gives_up_with_the_last_exit(stack):
    stack.load(job("always", ", backoff: 0, max_retries: 3"))
    stack.start()
    for count in range(1, 5):
        stack.system.wait_spawn("job", count=count).exit(2)
    stack.wait_status("job", states.EXITED)
    service = stack["job"]
    assert (service.restarts, service.exit_code, service.gave_up) == (3, 2, True)
    assert "gave up" in service.reason
    assert len(stack.system.spawns()) == 4


def test_max_retries_zero_never_restarts(stack):
    stack.load(job("always", ", max_retries: 0"))
    stack.start()
    stack.system.wait_spawn("job").exit(1)
    stack.wait_status("job", states.EXITED)
    assert stack["job"].gave_up and stack.system.spawns() == ["job"]


def test_a_new_start_forgets_giving_up(stack):
    stack.load(job("always", ", backoff: 0, max_retries: 0"))
    stack.start()
    stack.system.wait_spawn("job").exit(1)
    stack.wait_status("job", states.EXITED)
    stack.start()
    stack.wait_status("job", states.RUNNING)
    assert not stack["job"].gave_up and stack["job"].reason is None


def test_a_stop_during_the_backoff_ends_the_restart(stack):
    stack.load(job("always", ", backoff: 0"))
    stack.start()
    stack.system.wait_spawn("job").exit(1)
    stack.wait_status("job", states.RUNNING, states.STARTING)
    stack.stop()
    assert stack.status("job") == states.STOPPED
    assert not stack.system.running("job")


def test_a_user_restart_is_not_counted(stack):
    stack.load(job("always"))
    stack.start()
    stack.wait_status("job", states.RUNNING)
    stack.restart("job")
    stack.wait_status("job", states.RUNNING)
    assert (stack["job"].restarts, stack["job"].restart_reason) == (0, "user")
    assert stack.system.spawns() == ["job", "job"]


def test_a_restart_stops_the_old_process_before_spawning_the_new_one(stack):
    stack.load(job("always"))
    stack.start()
    first = stack.system.wait_spawn("job")
    stack.restart("job")
    second = stack.system.wait_spawn("job", count=2)
    assert first.signals == [signal.SIGTERM] and second.running
    assert stack.system.journal.index(("exit", "job", -signal.SIGTERM)) < stack.system.journal.index(
        ("spawn", "job", ("job",)), 1)


def test_a_restart_of_a_stopped_service_starts_it(stack):
    stack.load(job("no"))
    stack.restart("job")
    stack.wait_status("job", states.RUNNING)
    assert stack.system.spawns() == ["job"]


PROPAGATING = """
services:
  db: {command: [db], restart: {policy: always, backoff: 0}}
  api:
    command: [api]
    depends_on: {db: {condition: service_started, restart: true}}
  web:
    command: [web]
    depends_on: {api: {condition: service_started, restart: true}}
  report:
    command: [report]
    depends_on: {db: {condition: service_started}}
"""


def test_a_manual_restart_propagates_to_restart_true_dependents_transitively(stack):
    stack.load(PROPAGATING)
    stack.start()
    stack.wait_status("web", states.RUNNING)
    stack.wait_status("report", states.RUNNING)
    stack.restart("db")
    stack.system.wait_spawn("web", count=2)
    stack.wait_status("web", states.RUNNING)
    assert stack.system.spawns().count("report") == 1
    assert [stack[name].restart_reason for name in ("db", "api", "web")] == ["user", "dependency", "dependency"]
    assert [stack[name].restarts for name in ("db", "api", "web")] == [0, 0, 0]


def test_a_crash_restart_propagates_to_restart_true_dependents(stack):
    stack.load(PROPAGATING)
    stack.start()
    stack.wait_status("web", states.RUNNING)
    stack.system.child("db").exit(1)
    stack.system.wait_spawn("api", count=2)
    stack.system.wait_spawn("web", count=2)
    stack.wait_status("web", states.RUNNING)
    assert stack["db"].restarts == 1 and stack["api"].restart_reason == "dependency"
    assert stack.system.spawns().count("report") == 1


def test_a_stopped_dependent_is_not_brought_back_by_a_crash_restart(stack):
    stack.load(PROPAGATING)
    stack.start()
    stack.wait_status("web", states.RUNNING)
    stack.stop("web")
    stack.system.child("db").exit(1)
    stack.system.wait_spawn("api", count=2)
    stack.wait_status("api", states.RUNNING)
    assert stack.status("web") == states.STOPPED


def test_restarting_everything_keeps_the_dependency_order(stack):
    stack.load(PROPAGATING)
    stack.start()
    stack.wait_status("web", states.RUNNING)
    stack.wait_status("report", states.RUNNING)
    stack.system.journal.clear()
    stack.restart()
    stack.wait_status("web", states.RUNNING)
    stack.wait_status("report", states.RUNNING)
    stopped = [name for name, _ in stack.system.stops()]
    assert stopped.index("web") < stopped.index("api") < stopped.index("db")
    spawned = stack.system.spawns()
    assert spawned.index("db") < spawned.index("api") < spawned.index("web")


def test_a_watch_restart_is_counted_and_says_why(stack):
    stack.load(job("always"))
    stack.start()
    stack.wait_status("job", states.RUNNING)
    started, error = stack.project.request_restart(["job"], "watch").get()
    assert (started, error) == (["job"], None)
    assert (stack["job"].restarts, stack["job"].restart_reason) == (1, "watch")


def test_an_automatic_restart_leaves_a_stopped_service_alone(stack):
    stack.load(job("always"))
    for reason in ("watch", "dependency"):
        assert stack.project.request_restart(["job"], reason).get() == ([], None)
    assert stack.system.spawns() == [] and stack.status("job") == states.STOPPED


def test_a_users_restart_reports_why_it_failed(stack):
    stack.load("services:\n  job: {command: [job], hooks: {pre_restart: {run: 'false'}}}\n")
    stack.system.script("job.pre_restart", exit_code=1)
    stack.start()
    stack.wait_status("job", states.RUNNING)
    started, error = stack.project.request_restart(["job"], "user").get()
    assert started is None and error == "job: pre_restart hook exited with code 1"
