"""state.json: written after changes, a burst of changes sharing few writes, at once on shutdown."""

import pytest

from keplerd import persist
from keplerd.model import states

MANY = "services:\n" + "".join(f"  s{index}: {{command: [s{index}]}}\n" for index in range(100))


def saved(stack):
    return persist.read_json(stack.project.paths.state)["services"]


def count_writes(stack, monkeypatch):
    writes = []
    real = stack.project.write_state
    monkeypatch.setattr(stack.project, "write_state", lambda: (writes.append(1), real()))
    return writes


def test_a_burst_of_changes_shares_a_few_writes_and_the_last_state_is_written(stack, monkeypatch):
    stack.load(MANY)
    writes = count_writes(stack, monkeypatch)
    stack.start()
    stack.wait_for(lambda: all(status == states.RUNNING for status in stack.statuses().values()), "all running")
    stack.wait_for(lambda: all(row["status"] == states.RUNNING for row in saved(stack).values()), "written")
    assert len(writes) <= 20, f"{len(writes)} writes for 200 state changes"


def test_a_lone_change_is_written_without_waiting_for_more(stack):
    stack.load("services:\n  web: {command: [web]}\n")
    stack.start()
    stack.wait_for(lambda: saved(stack)["web"]["status"] == states.RUNNING, "written")


def test_state_json_holds_every_runtime_and_the_config_fields(stack):
    stack.load(MANY)  # more services than are encoded at a time
    stack.start()
    stack.wait_for(lambda: all(status == states.RUNNING for status in stack.statuses().values()), "all running")
    stack.project.write_state()
    assert persist.read_json(stack.project.paths.state) == {
        "format": 1, "on_init_done": stack.project.on_init_done, "scaled": stack.project.scaled,
        "services": {name: service.runtime() for name, service in stack.project.services.items()},
    }


def test_shutdown_writes_at_once(stack, monkeypatch):
    stack.load(MANY)
    stack.start()
    stack.wait_for(lambda: all(status == states.RUNNING for status in stack.statuses().values()), "all running")
    stack.project.shutdown()
    assert {row["status"] for row in saved(stack).values()} == {states.STOPPED}


def test_changes_in_later_loop_turns_wait_for_the_interval(stack, monkeypatch):
    from keplerd.supervise import project as project_module

    stack.load("services:\n  web: {command: [web]}\n")
    writes = count_writes(stack, monkeypatch)
    monkeypatch.setattr(project_module, "PERSIST_INTERVAL", 3600.0)
    stack.project._last_write = -3600.0  # as after a quiet hour: the first change is written at once
    stack.project.persist()
    stack.wait_for(lambda: len(writes) == 1, "the first write")
    for _ in range(5):  # each in a loop turn of its own
        stack.project.persist()
        stack.project.spawn(lambda: None).join()
    assert len(writes) == 1, "the next write waits for the interval"
    stack.project.close()
    assert len(writes) == 2, "close writes what is still due"


def test_slow_writes_of_state_json_are_spaced_to_a_share_of_the_time():
    from keplerd.supervise.project import MAX_PERSIST_INTERVAL, PERSIST_INTERVAL, persist_interval

    assert persist_interval(0.0) == PERSIST_INTERVAL, "a quick write: the usual interval"
    assert persist_interval(0.020) == pytest.approx(0.4), "a 20 ms write: 5 % of the time"
    assert persist_interval(5.0) == MAX_PERSIST_INTERVAL, "never longer than the cap"
