"""Lifecycle hooks through a real daemon (SPEC §9)."""

import json
import os

import pytest

from tests.integration.harness import pids_with_marker, wait_for
from tests.integration.test_dependencies import config

GLOBAL_HOOKS = ["on_init", "pre_start", "post_start", "pre_stop", "post_stop", "pre_restart", "post_restart"]
SERVICE_HOOKS = ["on_init", "pre_start", "post_start", "pre_stop", "post_stop", "pre_restart", "post_restart",
                 "post_exit"]


def recording(owner, names):
    return {name: {"run": f"echo {owner}.{name} >> $KT_RECORD"} for name in names}


def record(kepler):
    path = os.path.join(kepler.workdir, "record")
    return open(path).read().split() if os.path.exists(path) else []


def clear_record(kepler):
    path = os.path.join(kepler.workdir, "record")
    if os.path.exists(path):
        os.unlink(path)


@pytest.fixture
def recorded(kepler):
    """A config whose every hook appends its name to ``record``; a depends on nothing, b on a."""
    path = os.path.join(kepler.workdir, "record")
    global_hooks = recording("global", GLOBAL_HOOKS)
    for hook in global_hooks.values():
        hook["environment"] = [f"KT_RECORD={path}"]
    config(kepler, {
        "a": {"command": ["sleep", "1000"], "environment": [f"KT_RECORD={path}"],
              "hooks": recording("a", SERVICE_HOOKS)},
        "b": {"command": ["sleep", "1000"], "environment": [f"KT_RECORD={path}"], "depends_on": ["a"],
              "hooks": recording("b", SERVICE_HOOKS)},
    }, hooks=global_hooks)
    return kepler


def wait_record(kepler, expected):
    wait_for(lambda: record(kepler) == expected, message=f"hooks {expected}, got {record(kepler)}")


def test_config_start_runs_hooks_in_order(recorded):
    recorded.ctl("start", "-d")
    wait_record(recorded, ["global.on_init", "global.pre_start",
                           "a.on_init", "a.pre_start", "a.post_start",
                           "b.on_init", "b.pre_start", "b.post_start",
                           "global.post_start"])


def test_on_init_runs_once_across_daemon_restarts_and_again_after_recreate(recorded):
    recorded.ctl("start", "-d", "--wait", "a")
    wait_for(lambda: "a.post_start" in record(recorded), message="first start")
    recorded.ctl("daemon", "stop")
    recorded.daemon.wait(30)
    recorded.start_daemon()
    recorded.wait_status("a", "running")
    recorded.ctl("restart", "-d", "--wait", "a")
    wait_for(lambda: "a.post_restart" in record(recorded), message="the restart")
    assert record(recorded).count("a.on_init") == 1 and record(recorded).count("global.on_init") == 1
    recorded.ctl("stop")
    recorded.ctl("recreate")
    clear_record(recorded)
    recorded.ctl("start", "-d", "--wait", "a")
    wait_for(lambda: "a.post_start" in record(recorded), message="start after recreate")
    assert record(recorded)[:2] == ["global.on_init", "a.on_init"]


def test_a_failing_pre_start_fails_the_service_and_its_output_is_logged(kepler):
    config(kepler, {"web": {"command": ["sleep", "1000"],
                            "hooks": {"pre_start": {"run": "echo cannot prepare >&2; exit 7"}}}})
    kepler.ctl("start", "-d")
    kepler.wait_status("web", "failed")
    assert kepler.inspect("web")["services"]["web"]["state"]["reason"] == "pre_start hook exited with code 7"
    assert "web.pre_start | cannot prepare" in kepler.logs()
    assert "web.pre_start | cannot prepare" not in kepler.logs("--no-hook")


def test_a_hook_that_hangs_is_killed_at_its_timeout(kepler):
    marker = "kt-hook-marker"
    config(kepler, {"web": {"command": ["sleep", "1000"], "hooks": {
        "pre_start": {"command": ["bash", "-c", f"exec -a {marker} sleep 1000"], "timeout": "500ms"}}}})
    kepler.ctl("start", "-d")
    kepler.wait_status("web", "failed")
    assert kepler.inspect("web")["services"]["web"]["state"]["reason"] == "pre_start hook timed out after 0.5s"
    assert pids_with_marker(marker) == []


def test_service_hooks_inherit_environment_and_working_dir_and_may_override(kepler):
    os.makedirs(os.path.join(kepler.workdir, "svc"))
    os.makedirs(os.path.join(kepler.workdir, "other"))
    out = os.path.join(kepler.workdir, "seen")
    kepler.write("hook.env", "FROM_HOOK_FILE=yes\n")
    config(kepler, {"web": {"command": ["sleep", "1000"], "working_dir": "svc", "environment": ["LEVEL=service"],
                            "hooks": {
                                "pre_start": {"run": f"echo inherited $LEVEL $(pwd) >> {out}"},
                                "post_start": {"run": f"echo overridden $LEVEL $FROM_HOOK_FILE $(pwd) >> {out}",
                                               "environment": ["LEVEL=hook"], "env_file": "hook.env",
                                               "working_dir": "other"}}}})
    kepler.ctl("start", "-d", "--wait")
    wait_for(lambda: os.path.exists(out) and len(open(out).read().splitlines()) == 2, message="both hooks")
    assert open(out).read().splitlines() == [
        f"inherited service {kepler.workdir}/svc", f"overridden hook yes {kepler.workdir}/other"]


def test_global_hooks_inherit_nothing(kepler):
    out = os.path.join(kepler.workdir, "seen")
    config(kepler, {"web": {"command": ["true"], "environment": ["LEVEL=service"], "sys_env": "inherit"}},
           hooks={"pre_start": {"run": f"echo [$LEVEL] [$KT_FROM_CLI] $(pwd) > {out}"}})
    kepler.ctl("start", "-d", env=kepler.env(KT_FROM_CLI="cli"))
    wait_for(lambda: os.path.exists(out), message="the hook")
    assert open(out).read().strip() == f"[] [] {kepler.workdir}"


def test_stop_clean_runs_pre_cleanup_and_removes_the_state_dir(kepler):
    out = os.path.join(kepler.workdir, "cleaned")
    config(kepler, {"web": {"command": ["sleep", "1000"]}},
           hooks={"pre_cleanup": {"run": f"echo cleaning > {out}"}})
    kepler.ctl("start", "-d", "--wait")
    root = kepler.inspect()["config"]["state_dir"]
    kepler.ctl("stop", "--clean")
    assert open(out).read().strip() == "cleaning"
    assert not os.path.exists(root)
    assert kepler.ps() == {}, "the config is unloaded"
    kepler.ctl("start", "-d", "--wait")
    assert kepler.status("web") == "running"


def test_hook_log_names_and_no_hook_filter(kepler):
    config(kepler, {"web": {"command": ["sh", "-c", "echo service line"],
                            "hooks": {"pre_start": {"run": "echo hook line"}}}},
           hooks={"on_init": {"run": "echo global line"}})
    kepler.ctl("start", "-d")
    kepler.wait_status("web", "exited")
    lines = kepler.logs()
    assert {"global.on_init | global line", "web.pre_start  | hook line", "web            | service line"} \
        <= set(lines)
    assert kepler.logs("--no-hook") == ["web | service line"]
    assert {line.split("|")[0].strip() for line in kepler.logs("web")} == {"web", "web.pre_start"}


def test_inspect_shows_the_hooks_of_the_config(kepler):
    config(kepler, {"web": {"command": ["true"], "hooks": {"pre_start": {"run": "true", "timeout": "5s"}}}},
           hooks={"post_stop": {"command": ["true"]}})
    kepler.ctl("start", "-d")
    inspected = kepler.inspect()
    assert inspected["config"]["hooks"]["post_stop"]["command"] == ["true"]
    hook = inspected["services"]["web"]["config"]["hooks"]["pre_start"]
    assert hook["command"] == ["/bin/sh", "-c", "true"] and hook["timeout"] == 5.0
    assert json.dumps(inspected)
