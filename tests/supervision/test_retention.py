"""Log retention moments (SPEC §11): which event clears a service's logs, on fake output."""

import os

import pytest

from keplerd.model import states


def job(retention, restart="no"):
    return f"services:\n  job: {{command: [job], restart: {restart}, logs: {{retention: {retention}}}}}\n"


def logged(stack, name="job"):
    stack.project.logs.flush()
    path = os.path.join(stack.project.paths.logs, f"{name}.stdout.log")
    data = open(path, "rb").read() if os.path.exists(path) else b""
    return [line.split(b" ", 1)[1].decode() for line in data.splitlines()]


def run(stack, count, exit_code=None):
    """Wait for spawn number *count* of job, have it say so, and end it with *exit_code*."""
    child = stack.system.wait_spawn("job", count=count)
    child.say(f"run {count}")
    if exit_code is not None:
        child.exit(exit_code)
        stack.wait_for(lambda: stack.status("job") != states.RUNNING or len(stack.system.spawns()) > count,
                       "the exit handled")
    return child


@pytest.mark.parametrize(("setting", "expected"), [("retain", ["run 1", "run 2"]), ("clear", ["run 2"])])
def test_on_start(stack, setting, expected):
    stack.load(job(f"{{on_start: {setting}}}"))
    stack.start()
    run(stack, 1, exit_code=0)
    stack.wait_status("job", states.EXITED)
    stack.start()
    run(stack, 2)
    assert logged(stack) == expected


@pytest.mark.parametrize(("setting", "expected"), [(None, ["run 1"]), ("clear", []), ("retain", ["run 1"])])
def test_on_stop_retains_by_default(stack, setting, expected):
    stack.load(job(f"{{on_stop: {setting}}}" if setting else "{}"))
    stack.start()
    run(stack, 1)
    stack.stop()
    assert logged(stack) == expected


@pytest.mark.parametrize(("setting", "expected"), [(None, ["run 1", "run 2"]), ("clear", ["run 2"])])
def test_on_restart(stack, setting, expected):
    stack.load(job(f"{{on_restart: {setting}}}" if setting else "{}", restart="always"))
    stack.start()
    run(stack, 1)
    stack.restart("job")
    run(stack, 2)
    assert logged(stack) == expected


def test_on_restart_applies_to_policy_restarts(stack):
    stack.load(job("{on_restart: clear}", restart="{policy: on-failure, backoff: 0}"))
    stack.start()
    run(stack, 1, exit_code=1)
    run(stack, 2, exit_code=1)
    run(stack, 3)
    assert logged(stack) == ["run 3"]


@pytest.mark.parametrize(("setting", "expected"), [(None, ["run 1"]), ("clear", [])])
def test_on_exit(stack, setting, expected):
    stack.load(job(f"{{on_exit: {setting}}}" if setting else "{}"))
    stack.start()
    run(stack, 1, exit_code=3)
    stack.wait_status("job", states.EXITED)
    assert logged(stack) == expected


def test_a_daemon_shutdown_keeps_the_logs(stack):
    stack.load(job("{}"))
    stack.start()
    run(stack, 1)
    stack.project.shutdown()
    assert logged(stack) == ["run 1"]


def test_a_restart_of_everything_keeps_the_logs_unless_on_restart_clears(stack):
    stack.load(job("{on_stop: clear}", restart="always"))
    stack.start()
    run(stack, 1)
    stack.restart()
    run(stack, 2)
    assert logged(stack) == ["run 1", "run 2"]


def test_clearing_a_service_clears_its_hook_logs_too(stack):
    stack.load("services:\n  job: {command: [job], hooks: {pre_start: {run: 'true'}},\n"
               "        logs: {retention: {on_stop: clear}}}\n")
    stack.system.script("job.pre_start", exit_code=0, output="migrating")
    stack.start()
    run(stack, 1)
    assert logged(stack, "job.pre_start") == ["migrating"]
    stack.stop()
    assert logged(stack, "job.pre_start") == [] and logged(stack) == []
