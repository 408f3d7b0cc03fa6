"""Carrying out an apply plan (SPEC §16) on fake children: order, hooks, refusals, what is stored."""

import os
import textwrap

import pytest

from keplerd.config.bake import bake
from keplerd.model import states
from keplerd.persist import read_json
from keplerd.supervise import apply, lifecycle

HOOKS = "{pre_start: {run: h}, post_start: {run: h}, pre_stop: {run: h}, post_stop: {run: h}, " \
        "pre_restart: {run: h}, post_restart: {run: h}, on_init: {run: h}}"


def rebake(stack, yaml_text):
    """Write *yaml_text* over the stack's config and bake it, as the bake worker would."""
    path = os.path.join(stack.tmp_path, "kepler.yaml")
    with open(path, "w") as file:
        file.write(textwrap.dedent(yaml_text))
    return bake(path, {"PATH": "/usr/bin:/bin"}, str(stack.tmp_path))


def apply_config(stack, yaml_text, *names):
    prepared = apply.prepare(stack.project, rebake(stack, yaml_text), list(names))
    return prepared, apply.carry_out(stack.project, prepared)


def hook_commands(stack, service):
    """Return ``(hook, command)`` for every hook of *service* spawned, in order."""
    return [(name.split(".", 1)[1], command[-1]) for kind, name, command in stack.system.journal
            if kind == "spawn" and name.startswith(service + ".")]


def test_a_changed_service_stops_with_its_old_hooks_and_starts_with_its_new_ones(stack):
    stack.load(f"services:\n  web:\n    command: [old]\n    hooks: {HOOKS.replace('h}', 'old-hook}')}\n")
    stack.start()
    stack.wait_for(lambda: stack["web"].reached_up, "web's post_start")
    stack.system.journal.clear()
    apply_config(stack, f"services:\n  web:\n    command: [new]\n    hooks: {HOOKS.replace('h}', 'new-hook}')}\n")
    stack.wait_for(lambda: ("post_restart", "new-hook") in hook_commands(stack, "web"), "post_restart")
    assert hook_commands(stack, "web") == [
        ("pre_restart", "old-hook"), ("pre_stop", "old-hook"), ("post_stop", "old-hook"),
        ("pre_start", "new-hook"), ("post_start", "new-hook"), ("post_restart", "new-hook")]
    assert stack.system.child("web").spec["command"] == ["new"]
    assert stack["web"].restart_reason == "apply" and stack["web"].restarts == 0


def test_unchanged_services_keep_their_process_and_run_no_hook(stack):
    config = f"services:\n  db:\n    command: [db]\n    hooks: {HOOKS}\n  web: {{command: [web]}}\n"
    stack.load(config)
    stack.start()
    stack.wait_for(lambda: stack["db"].reached_up, "db's post_start")
    db = stack.system.child("db")
    stack.system.journal.clear()
    apply_config(stack, config.replace("[web]", "[web, --v2]"))
    stack.wait_status("web", states.RUNNING)
    assert stack.system.child("db") is db and db.running
    assert not [name for kind, name, _ in stack.system.journal if name.startswith("db")]


def test_stops_go_dependents_first_in_the_old_graph(stack):
    stack.load("""
        services:
          db: {command: [db]}
          api: {command: [api], depends_on: [db]}
          web: {command: [web], depends_on: [api]}
    """)
    stack.start()
    stack.wait_status("web", states.RUNNING)
    stack.system.journal.clear()
    apply_config(stack, """
        services:
          db: {command: [db, --v2]}
          api: {command: [api, --v2]}
    """)
    stops = [name for kind, name, _ in stack.system.journal if kind == "stop"]
    assert stops == ["web", "api", "db"]
    assert "web" not in stack.project.services
    stack.wait_status("api", states.RUNNING)


def test_a_refused_restart_keeps_the_old_process_and_stores_the_new_definition(stack):
    stack.load("services:\n  web: {command: [old], hooks: {pre_restart: {run: refuse}}}\n")
    stack.start()
    stack.wait_status("web", states.RUNNING)
    old = stack.system.child("web")
    stack.system.script("web.pre_restart", exit_code=1)
    with pytest.raises(lifecycle.ActionFailed, match="web: pre_restart hook exited with code 1"):
        apply_config(stack, "services:\n  web: {command: [new]}\n")
    assert old.running and stack.status("web") == states.RUNNING
    assert read_json(stack.project.paths.snapshot)["services"]["web"]["command"] == ["new"]
    stack.stop("web")
    stack.start("web")
    stack.wait_status("web", states.RUNNING)
    assert stack.system.child("web").spec["command"] == ["new"]


def test_a_removed_service_goes_even_when_its_pre_stop_fails(stack):
    stack.load("services:\n  web: {command: [web]}\n  old: {command: [old], hooks: {pre_stop: {run: x}}}\n")
    stack.start()
    stack.wait_status("old", states.RUNNING)
    stack.system.script("old.pre_stop", exit_code=1)
    apply_config(stack, "services:\n  web: {command: [web]}\n")
    assert "old" not in stack.project.services
    assert not stack.system.running("old")
    stack.wait_for(lambda: "old" not in read_json(stack.project.paths.state)["services"], "state.json without old")


def test_added_services_run_their_on_init_but_not_the_global_one(stack):
    stack.load("kepler: {hooks: {on_init: {run: g}}}\nservices:\n  web: {command: [web]}\n")
    stack.start()
    stack.wait_status("web", states.RUNNING)
    stack.system.journal.clear()
    apply_config(stack, """
        kepler: {hooks: {on_init: {run: g}}}
        services:
          web: {command: [web]}
          cache: {command: [cache], hooks: {on_init: {run: i}}}
    """)
    stack.wait_status("cache", states.RUNNING)
    assert stack.system.spawns() == ["cache.on_init", "cache"]


def test_a_config_stopped_as_a_whole_gains_services_stopped(stack):
    stack.load("services:\n  web: {command: [web]}\n")
    prepared, started = apply_config(stack, "services:\n  web: {command: [web]}\n  cache: {command: [cache]}\n")
    assert started == [] and stack.system.spawns() == []
    assert stack.status("cache") == states.STOPPED and stack["cache"].desired == "down"
    stack.start()
    stack.wait_status("cache", states.RUNNING)


def test_a_changed_service_that_exited_on_its_own_starts_with_its_new_definition(stack):
    stack.load("services:\n  job: {command: [job]}\n")
    stack.start()
    stack.system.wait_spawn("job").exit(3)
    stack.wait_status("job", states.EXITED)
    apply_config(stack, "services:\n  job: {command: [job, --fixed]}\n")
    stack.wait_status("job", states.RUNNING)
    assert stack.system.child("job").spec["command"] == ["job", "--fixed"]


def test_restart_true_dependents_restart_after_the_changed_service(stack):
    stack.load("""
        services:
          db: {command: [db]}
          api: {command: [api], depends_on: {db: {restart: true}}}
    """)
    stack.start()
    stack.wait_status("api", states.RUNNING)
    api = stack.system.child("api")
    prepared, started = apply_config(stack, """
        services:
          db: {command: [db, --v2]}
          api: {command: [api], depends_on: {db: {restart: true}}}
    """)
    assert started == ["db", "api"]
    stack.wait_status("api", states.RUNNING)
    assert not api.running and stack.system.child("api") is not api
    assert stack["api"].restart_reason == "dependency"


def test_a_service_restarted_by_apply_logs_with_its_new_log_settings(stack):
    stack.load("services:\n  web: {command: [web]}\n")
    stack.start()
    stack.wait_status("web", states.RUNNING)
    assert stack["web"].log.settings.stores("stdout")
    apply_config(stack, "services:\n  web: {command: [web], logs: {store: {stdout: false}}}\n")
    stack.wait_status("web", states.RUNNING)
    assert not stack["web"].log.settings.stores("stdout")
    assert stack.project.logs.writer("web.pre_start").settings.stores("stdout") is False  # its hooks' too
