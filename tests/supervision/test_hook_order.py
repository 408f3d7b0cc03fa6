"""Hooks (SPEC §9): their order around start, stop and restart, and what their failures do."""

import signal

import pytest

from keplerd.model import states
from keplerd.supervise.lifecycle import ActionFailed

GLOBAL_HOOKS = ["on_init", "pre_start", "post_start", "pre_stop", "post_stop", "pre_restart", "post_restart"]
SERVICE_HOOKS = GLOBAL_HOOKS + ["post_exit"]


def hooks(names):
    return "{" + ", ".join(f"{name}: {{run: 'true'}}" for name in names) + "}"


RECORDED = f"""
kepler:
  hooks: {hooks(GLOBAL_HOOKS)}
services:
  a: {{command: [a], hooks: {hooks(SERVICE_HOOKS)}}}
  b: {{command: [b], depends_on: [a], hooks: {hooks(SERVICE_HOOKS)}}}
"""


@pytest.fixture
def recorded(stack):
    return stack.load(RECORDED)


def started(stack, *names):
    stack.start(*names)
    for name in names or ("a", "b"):
        stack.wait_for(lambda name=name: stack[name].reached_up, f"{name} up")
    if not names:
        stack.wait_for(lambda: "global.post_start" in stack.system.spawns(), "global.post_start")
    stack.system.journal.clear()


def hook_runs(stack):
    return [name for name in stack.system.spawns() if "." in name]


def test_config_start_runs_hooks_in_order(recorded):
    recorded.start()
    recorded.wait_for(lambda: "global.post_start" in recorded.system.spawns(), "global.post_start")
    assert recorded.system.spawns() == [
        "global.on_init", "global.pre_start",
        "a.on_init", "a.pre_start", "a", "a.post_start",
        "b.on_init", "b.pre_start", "b", "b.post_start",
        "global.post_start"]


def test_config_stop_runs_hooks_in_reverse_order(recorded):
    started(recorded)
    recorded.stop()
    assert hook_runs(recorded) == ["global.pre_stop", "b.pre_stop", "b.post_stop", "a.pre_stop", "a.post_stop",
                                   "global.post_stop"]


def test_config_restart_runs_hooks_in_order(recorded):
    started(recorded)
    recorded.restart()
    recorded.wait_for(lambda: "global.post_restart" in recorded.system.spawns(), "global.post_restart")
    assert hook_runs(recorded) == [
        "global.pre_restart", "global.pre_stop",
        "b.pre_restart", "b.pre_stop", "b.post_stop",
        "a.pre_restart", "a.pre_stop", "a.post_stop",
        "global.post_stop", "global.pre_start",
        "a.pre_start", "a.post_start", "a.post_restart",
        "b.pre_start", "b.post_start", "b.post_restart",
        "global.post_start", "global.post_restart"]


def test_a_named_start_runs_only_service_hooks_and_on_init(recorded):
    recorded.start("a")
    recorded.wait_for(lambda: recorded["a"].reached_up, "a up")
    assert recorded.system.spawns() == ["global.on_init", "a.on_init", "a.pre_start", "a", "a.post_start"]


def test_a_named_restart_and_stop_run_only_service_hooks(recorded):
    started(recorded, "a")
    recorded.restart("a")
    recorded.wait_for(lambda: "a.post_restart" in recorded.system.spawns(), "a.post_restart")
    assert hook_runs(recorded) == ["a.pre_restart", "a.pre_stop", "a.post_stop", "a.pre_start", "a.post_start",
                                   "a.post_restart"]
    recorded.system.journal.clear()
    recorded.stop("a")
    assert hook_runs(recorded) == ["a.pre_stop", "a.post_stop"]


def test_on_init_runs_once_per_bake(recorded):
    started(recorded)
    recorded.stop()
    recorded.system.journal.clear()
    recorded.start()
    recorded.wait_for(lambda: "global.post_start" in recorded.system.spawns(), "global.post_start")
    assert not [name for name in recorded.system.spawns() if name.endswith(".on_init")]
    assert recorded.project.on_init_done and recorded["a"].on_init_done


def test_post_exit_runs_only_when_the_process_ends_on_its_own(stack):
    stack.load(f"""
        services:
          job: {{command: [job], restart: no, hooks: {hooks(["post_exit", "post_stop"])}}}
          web: {{command: [web], hooks: {hooks(["post_exit", "post_stop"])}}}
    """)
    stack.start()
    stack.system.wait_spawn("job").exit(3)
    stack.wait_status("job", states.EXITED)
    stack.wait_status("web", states.RUNNING)
    stack.stop("web")
    assert hook_runs(stack) == ["job.post_exit", "web.post_stop"]


def test_a_failing_pre_start_fails_the_service_and_its_process_never_starts(stack):
    stack.load(f"services:\n  web: {{command: [web], hooks: {hooks(['pre_start'])}}}\n")
    stack.system.script("web.pre_start", exit_code=2)
    stack.start()
    stack.wait_status("web", states.FAILED)
    assert stack["web"].reason == "pre_start hook exited with code 2"
    assert stack.system.spawns() == ["web.pre_start"]


def test_a_failing_on_init_fails_the_service_and_is_tried_again_next_start(stack):
    stack.load(f"services:\n  web: {{command: [web], hooks: {hooks(['on_init'])}}}\n")
    stack.system.script("web.on_init", exit_code=1)
    stack.start()
    stack.wait_status("web", states.FAILED)
    stack.system.script("web.on_init", exit_code=0)
    stack.start()
    stack.wait_status("web", states.RUNNING)
    assert stack.system.spawns() == ["web.on_init", "web.on_init", "web"]


def test_a_failing_global_pre_start_fails_the_request_and_starts_nothing(stack):
    stack.load(f"kepler:\n  hooks: {hooks(['pre_start'])}\nservices:\n  web: {{command: [web]}}\n")
    stack.system.script("global.pre_start", exit_code=1)
    with pytest.raises(ActionFailed, match="global pre_start hook exited with code 1"):
        stack.start()
    assert stack.system.spawns() == ["global.pre_start"] and stack.status("web") == states.STOPPED


def test_a_failing_global_on_init_fails_the_request(stack):
    stack.load(f"kepler:\n  hooks: {hooks(['on_init'])}\nservices:\n  web: {{command: [web]}}\n")
    stack.system.script("global.on_init", exit_code=1)
    with pytest.raises(ActionFailed):
        stack.start("web")
    assert not stack.project.on_init_done


@pytest.mark.parametrize("hook", ["post_start", "post_stop", "post_exit"])
def test_a_failing_post_hook_is_only_logged(stack, hook):
    stack.load(f"services:\n  web: {{command: [web], restart: no, hooks: {hooks([hook])}}}\n")
    stack.system.script(f"web.{hook}", exit_code=1)
    stack.start()
    stack.wait_for(lambda: stack["web"].reached_up, "web up")
    if hook == "post_exit":
        stack.system.child("web").exit(0)
        stack.wait_status("web", states.EXITED)
        stack.wait_for(lambda: not stack.system.running("web.post_exit"), "post_exit ran")
    else:
        stack.stop()
    assert stack.status("web") in (states.EXITED, states.STOPPED, states.RUNNING)
    assert f"web.{hook}" in stack.system.spawns()


def test_a_failing_pre_stop_aborts_a_users_stop(stack):
    stack.load(f"services:\n  web: {{command: [web], hooks: {hooks(['pre_stop'])}}}\n")
    stack.system.script("web.pre_stop", exit_code=1)
    stack.start()
    stack.wait_status("web", states.RUNNING)
    with pytest.raises(ActionFailed, match="web: pre_stop hook exited with code 1"):
        stack.stop()
    assert stack.status("web") == states.RUNNING and stack["web"].desired == "up"


def test_a_failing_pre_stop_does_not_hold_up_a_daemon_shutdown(stack):
    stack.load(f"services:\n  web: {{command: [web], hooks: {hooks(['pre_stop'])}}}\n")
    stack.system.script("web.pre_stop", exit_code=1)
    stack.start()
    stack.wait_status("web", states.RUNNING)
    stack.project.shutdown()
    assert stack.status("web") == states.STOPPED


def test_a_failing_pre_restart_aborts_the_restart(stack):
    stack.load(f"services:\n  web: {{command: [web], hooks: {hooks(['pre_restart'])}}}\n")
    stack.system.script("web.pre_restart", exit_code=1)
    stack.start()
    stack.wait_status("web", states.RUNNING)
    with pytest.raises(ActionFailed):
        stack.restart("web")
    assert stack.status("web") == states.RUNNING and stack.system.spawns() == ["web", "web.pre_restart"]


def test_a_hook_that_hangs_is_killed_at_its_timeout(stack):
    stack.load("services:\n  web: {command: [web], hooks: {pre_start: {run: 'sleep 9', timeout: 50ms}}}\n")
    stack.system.script("web.pre_start", exit_code=None)
    stack.start()
    stack.wait_status("web", states.FAILED)
    assert stack["web"].reason == "pre_start hook timed out after 0.05s"
    assert stack.system.child("web.pre_start").signals == [signal.SIGKILL]


def test_a_hook_that_cannot_start_fails_like_a_failing_one(stack):
    stack.load(f"services:\n  web: {{command: [web], hooks: {hooks(['pre_start'])}}}\n")
    stack.system.script("web.pre_start", spawn_error="program not found: true")
    stack.start()
    stack.wait_status("web", states.FAILED)
    assert stack["web"].reason == "pre_start hook program not found: true"


def test_global_post_start_waits_for_the_startup_cluster(stack):
    stack.load(f"kepler:\n  hooks: {hooks(['post_start'])}\nservices:\n  db: {{command: [db]}}\n"
               "  web: {command: [web], depends_on: {db: {condition: service_completed_successfully}}}\n")
    stack.start()
    stack.system.wait_spawn("db")
    assert "global.post_start" not in stack.system.spawns()
    stack.system.child("db").exit(0)
    stack.wait_for(lambda: "global.post_start" in stack.system.spawns(), "global.post_start")
    assert stack.system.spawns() == ["db", "web", "global.post_start"]


def test_global_post_start_is_skipped_when_startup_fails(stack):
    stack.load(f"kepler:\n  hooks: {hooks(['post_start'])}\nservices:\n  db: {{command: [db]}}\n")
    stack.system.script("db", spawn_error="nope")
    stack.start()
    stack.wait_status("db", states.FAILED)
    stack.project.spawn(lambda: None).join()  # let the post_start waiter see it
    assert "global.post_start" not in stack.system.spawns()


def test_pre_cleanup_guards_a_clean(stack):
    from keplerd.supervise import lifecycle

    stack.load(f"kepler:\n  hooks: {hooks(['pre_cleanup'])}\nservices:\n  db: {{command: [db]}}\n")
    stack.system.script("global.pre_cleanup", exit_code=1)
    with pytest.raises(ActionFailed):
        lifecycle.clean(stack.project)

