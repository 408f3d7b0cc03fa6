"""A count crossing 1 renames instance 1 (``web`` ↔ ``web.1``) and keeps its process (SPEC §16, §17).

Through ``apply`` and ``scale`` on fake children: the same child goes on under
the new name with its logs, state and stray mark; no hook runs for it.
"""

import os

from keplerd.model import changes, states
from keplerd.persist import read_json, write_json
from keplerd.supervise import replicas
from keplerd.supervise.project import Project
from tests.supervision.fake_system import FakeSystem
from tests.supervision.test_apply import apply_config, rebake

HOOKS = "{pre_start: {run: h}, post_start: {run: h}, pre_stop: {run: h}, post_stop: {run: h}, " \
        "pre_restart: {run: h}, post_restart: {run: h}}"


def web(replicas_count, command="web"):
    return f"services:\n  web:\n    command: [{command}]\n    replicas: {replicas_count}\n    hooks: {HOOKS}\n"


def instances_keep_running(stack, base, count=3):
    """Make instances run until stopped (the fake takes a dotted log name for a hook, which exits)."""
    for index in range(1, count + 1):
        stack.system.script(f"{base}.{index}", exit_code=None)


def running_web(stack, count=1):
    instances_keep_running(stack, "web")
    stack.load(web(count))
    stack.start()
    names = ["web"] if count == 1 else [f"web.{index}" for index in range(1, count + 1)]
    for name in names:
        stack.wait_for(lambda name=name: stack[name].reached_up, f"{name}'s post_start")
    return stack.system.child(names[0])


def log_file(stack, name):
    with open(os.path.join(stack.project.paths.logs, f"{name}.stdout.log"), "rb") as file:
        return file.read().decode()


def test_apply_from_one_to_three_keeps_the_process_as_web_1_and_starts_two_more(stack):
    child = running_web(stack)
    child.say("before the apply")
    stack.project.logs.flush()
    stack.system.journal.clear()
    prepared, started = apply_config(stack, web(3))
    assert [changes.plan_line(entry) for entry in prepared.entries] == ["web  changed: replicas -> scale 1 → 3"]
    assert sorted(stack.project.services) == ["web.1", "web.2", "web.3"]
    assert stack["web.1"].child is child and child.running and stack["web.1"].pid == child.pid
    assert started == ["web.2", "web.3"]
    stack.wait_for(lambda: stack["web.3"].reached_up, "web.3's post_start")
    assert {name.split(".")[1] for name in stack.system.spawns()} == {"2", "3"}, "web.1 ran no hook"
    assert ("rename-cgroup", "web", "web.1") in stack.system.journal
    child.say("after the apply")
    stack.project.logs.flush()
    assert [line.split(" ", 1)[1] for line in log_file(stack, "web.1").splitlines()] == [
        "before the apply", "after the apply"]
    assert not os.path.exists(os.path.join(stack.project.paths.logs, "web.stdout.log"))
    saved = read_json(stack.project.paths.state)["services"]
    assert saved["web.1"]["pid"] == child.pid and "web" not in saved
    env = stack.system.environments["web.2"]
    assert (env["KEPLER_REPLICA"], env["KEPLER_REPLICAS"]) == ("2", "3")


def test_apply_from_three_to_one_stops_the_others_and_keeps_web_1_as_web(stack):
    first = running_web(stack, 3)
    others = [stack.system.child(name) for name in ("web.2", "web.3")]
    stack.system.journal.clear()
    prepared, _ = apply_config(stack, web(1))
    assert [changes.plan_line(entry) for entry in prepared.entries] == ["web  changed: replicas -> scale 3 → 1"]
    assert list(stack.project.services) == ["web"]
    assert stack["web"].child is first and first.running
    assert not any(child.running for child in others)
    assert [name for name, _ in stack.system.stops()] in (["web.3", "web.2"], ["web.2", "web.3"])
    assert set(read_json(stack.project.paths.state)["services"]) == {"web"}
    assert stack["web"].spec["env"]["KEPLER_REPLICAS"] == "3", "what its process started with"
    stack.system.journal.clear()
    stack.stop("web")
    assert not first.running
    # Its processes (and what they left) carry the mark of the run: web.1's.
    assert f"{stack.project.id}/web.1" in stack.system.stray_sweeps
    assert stack.system.spawns() == ["web.pre_stop", "web.post_stop"]


def test_a_change_with_the_count_rolls_the_renamed_instance_after_the_new_ones_are_up(stack):
    child = running_web(stack)
    prepared, _ = apply_config(stack, web(2, command="new"))
    assert [changes.plan_line(entry) for entry in prepared.entries] == [
        "web  changed: command, replicas -> restart, scale 1 → 2"]
    assert not child.running
    assert [stack.system.child(name).spec["command"] for name in ("web.1", "web.2")] == [["new"], ["new"]]
    assert stack["web.1"].restart_reason == "apply"
    assert stack.system.spawns().index("web.2") < stack.system.spawns().index("web.1")


def test_scale_renames_as_apply_does_and_the_names_survive_a_reload(stack):
    child = running_web(stack)
    replicas.scale(stack.project, {"web": 3})
    assert sorted(stack.project.services) == ["web.1", "web.2", "web.3"] and stack["web.1"].child is child
    replicas.scale(stack.project, {"web": 1})
    assert list(stack.project.services) == ["web"] and stack["web"].child is child
    replicas.scale(stack.project, {"web": 2})
    reloaded = Project.load(stack.project.state_dir, stack.project.id, system=FakeSystem())
    try:
        assert list(reloaded.services) == ["web.1", "web.2"]
        # Written at once: a daemon killed right after the scale brings both back at boot.
        assert [reloaded.services[name].desired for name in ("web.1", "web.2")] == ["up", "up"]
    finally:
        reloaded.close()


def test_counts_of_two_services_changed_by_one_apply_are_both_carried_out(stack):
    instances_keep_running(stack, "a")
    instances_keep_running(stack, "b")
    stack.load("services:\n  a: {command: [a], replicas: 2}\n  b: {command: [b], replicas: 2}\n")
    stack.start()
    stack.wait_status("b.2", states.RUNNING)
    apply_config(stack, "services:\n  a: {command: [a], replicas: 3}\n  b: {command: [b], replicas: 3}\n")
    for name in ("a.3", "b.3"):
        stack.wait_status(name, states.RUNNING)


def test_a_daemon_killed_before_state_json_followed_the_snapshot_finds_web_under_its_new_name(stack):
    child = running_web(stack)
    child.say("history")
    stack.project.write_state()
    stack.project.logs.flush()
    # As if the daemon died in the apply right after writing the new snapshot.
    write_json(stack.project.paths.snapshot, rebake(stack, web(3)).snapshot)
    reloaded = Project.load(stack.project.state_dir, stack.project.id, system=FakeSystem())
    try:
        assert list(reloaded.services) == ["web.1", "web.2", "web.3"]
        assert reloaded.services["web.1"].desired == "up", "it comes back at boot"
        assert reloaded.services["web.2"].desired == "down"
        assert "history" in log_file(stack, "web.1")
    finally:
        reloaded.close()
