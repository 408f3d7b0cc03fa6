"""A stop (or a daemon shutdown) in each phase of a start ends it promptly and leaves no child."""

import pytest

from keplerd.model import states
from keplerd.supervise.service import Service


def one(hooks=""):
    return f"services:\n  dep: {{command: [dep], restart: no}}\n  web: {{command: [web]{hooks}}}\n"


def assert_nothing_runs(stack):
    running = [child.name for child in stack.system.children if child.running]
    assert running == [], f"still running: {running}"


@pytest.fixture(params=["stop", "shutdown"])
def ender(request, stack):
    """End the service as a user's stop would, or as the daemon's shutdown would."""
    def end():
        if request.param == "stop":
            stack.stop()
        else:
            stack.project.shutdown()
    return end


def test_stop_while_waiting_for_a_dependency(stack, ender):
    stack.load("services:\n  dep: {command: [dep]}\n"
               "  web: {command: [web], depends_on: {dep: {condition: service_completed_successfully}}}\n")
    stack.start()
    stack.wait_for(lambda: stack["web"].waiting_on, "web waiting")
    ender()
    assert stack.statuses() == {"dep": states.STOPPED, "web": states.STOPPED}
    assert stack.system.spawns() == ["dep"]
    assert_nothing_runs(stack)


@pytest.mark.parametrize("hook", ["on_init", "pre_start"])
def test_stop_during_a_start_hook_kills_the_hook(stack, ender, hook):
    stack.load(one(f", hooks: {{{hook}: {{run: 'sleep 9'}}}}"))
    stack.system.script(f"web.{hook}", exit_code=None)
    stack.start("web")
    stack.system.wait_spawn(f"web.{hook}")
    ender()
    assert stack.status("web") == states.STOPPED
    assert "web" not in stack.system.spawns()
    assert_nothing_runs(stack)


def test_stop_while_running(stack, ender):
    stack.load(one())
    stack.start("web")
    stack.wait_status("web", states.RUNNING)
    ender()
    assert stack.status("web") == states.STOPPED
    assert_nothing_runs(stack)


def test_stop_during_the_restart_backoff(stack, ender):
    stack.load("services:\n  web: {command: [web], restart: {policy: always, backoff: 0}}\n")
    stack.start()
    stack.system.wait_spawn("web").exit(1)
    ender()
    assert stack.status("web") == states.STOPPED
    assert_nothing_runs(stack)


def test_stop_while_the_health_probe_runs(stack, ender):
    stack.load(one(", healthcheck: {test: [probe], interval: 10ms}"))
    stack.start("web")
    stack.wait_status("web", states.HEALTHY)
    ender()
    assert stack.status("web") == states.STOPPED
    probes = sum(entry[0] == "probe" for entry in stack.system.journal)
    stack.project.spawn(lambda: None).join()
    assert sum(entry[0] == "probe" for entry in stack.system.journal) == probes  # probing ended with it


def test_a_stop_during_a_stop_waits_for_the_first(stack):
    stack.load("services:\n  web: {command: [web], stop_grace_period: 50ms}\n")
    stack.system.script("web", ignores_stop=True)
    stack.start()
    stack.wait_status("web", states.RUNNING)
    first = stack.in_background(stack.stop)
    stack.wait_status("web", states.STOPPING)
    stack.stop()
    assert stack.status("web") == states.STOPPED
    first.join()
    assert len(stack.system.stops()) == 1
def test_stop_during_post_start_kills_the_hook_run(stack, ender):
    stack.load(one(", hooks: {post_start: {run: 'sleep 8'}}"))
    stack.system.script("web.post_start", exit_code=None)
    stack.start("web")
    stack.system.wait_spawn("web.post_start")
    ender()
    assert stack.status("web") == states.STOPPED
    assert_nothing_runs(stack)


def test_stop_during_a_post_exit_hook(stack, ender):
    stack.load("services:\n  web: {command: [web], restart: always, hooks: {post_exit: {run: 'sleep 9'}}}\n")
    stack.system.script("web.post_exit", exit_code=None)
    stack.start()
    stack.system.wait_spawn("web").exit(1)
    stack.system.wait_spawn("web.post_exit")
    ender()
    assert stack.status("web") == states.STOPPED
    assert_nothing_runs(stack)


def test_a_failing_shutdown_still_kills_every_process_and_writes_the_state(stack, monkeypatch):
    stack.load("services:\n  db: {command: [db]}\n  web: {command: [web], depends_on: [db]}\n")
    stack.start()
    stack.wait_status("web", states.RUNNING)

    working_stop = Service.stop

    def broken_stop(service, *args, **kwargs):
        if service is stack["web"]:
            raise RuntimeError("a bug in stop")
        return working_stop(service, *args, **kwargs)

    monkeypatch.setattr(Service, "stop", broken_stop)  # on the class: a Service has slots, not a dict
    with pytest.raises(RuntimeError):
        stack.project.shutdown()
    assert_nothing_runs(stack)
    from keplerd import persist

    assert persist.read_json(stack.project.paths.state)["services"]["db"]["status"] == states.STOPPED
