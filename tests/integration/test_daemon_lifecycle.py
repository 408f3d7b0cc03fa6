"""The daemon's own lifecycle: restart, crash, stale files, leftovers, prune, status."""

import json
import os
import re
import signal
import subprocess

import psutil

from tests.integration.harness import pid_alive, pids_with_marker, wait_for


def marked(marker):
    return ["bash", "-c", f"echo started; exec -a {marker} sleep 1000"]


def test_daemon_restart_command_brings_services_back(kepler):
    kepler.config("""
        services:
          web:
            command: ["sleep", "1000"]
          idle:
            command: ["sleep", "1000"]
    """)
    kepler.ctl("start", "-d", "--wait")
    kepler.ctl("stop", "idle")
    before = kepler.ps()["web"]["pid"]
    daemon_pid = kepler.daemon.pid
    kepler.ctl("daemon", "restart", "-d")
    kepler.daemon.wait(30)  # the old daemon, our child, has exited
    new_pid = int(open(os.path.join(kepler.state_dir, "kepler.pid")).read())
    assert new_pid != daemon_pid
    kepler._remember(new_pid)
    after = kepler.wait_status("web", "running")
    assert after["pid"] != before
    assert kepler.status("idle") == "stopped"
    kepler.ctl("daemon", "stop")


def test_after_a_crash_the_next_daemon_kills_leftovers_and_restarts_without_duplicates(kepler):
    marker = "kt-crash-marker"
    kepler.config(f"""
        services:
          web:
            command: {json.dumps(marked(marker))}
            logs:
              buffer_size: 0
          stopped:
            command: ["sleep", "1000"]
    """)
    kepler.ctl("start", "-d", "--wait")
    kepler.ctl("stop", "stopped")
    old = wait_for(lambda: pids_with_marker(marker, kepler), message="the service")
    # state.json is written within PERSIST_INTERVAL of a change: crash only once it holds both.
    state_path = os.path.join(kepler.inspect_path(), "state.json")
    wait_for(lambda: _recorded(state_path, "stopped", "desired") == "down"
             and _recorded(state_path, "web", "pid") == old[0], message="state.json up to date")
    kepler.kill_daemon()
    assert pids_with_marker(marker, kepler) == old, "a crash leaves services running"
    kepler.start_daemon()
    new = kepler.wait_status("web", "running")["pid"]
    wait_for(lambda: pids_with_marker(marker, kepler) == [new], message="exactly one generation of web")
    assert kepler.status("stopped") == "stopped"
    lines = [line.replace(" ", "") for line in kepler.logs("web")]
    assert lines == ["web|started", "web|started"], "lines before the crash are kept"


def test_a_reused_pid_with_another_start_time_is_never_killed(kepler):
    kepler.config("""
        services:
          web:
            command: ["sleep", "1000"]
    """)
    kepler.ctl("start", "-d", "--wait")
    kepler.ctl("daemon", "stop")
    kepler.daemon.wait(30)
    bystander = subprocess.Popen(["sleep", "1000"], start_new_session=True)
    try:
        state_path = os.path.join(kepler.inspect_path(), "state.json")
        state = json.load(open(state_path))
        state["services"]["web"].update(status="running", pid=bystander.pid,
                                        create_time=psutil.Process(bystander.pid).create_time() - 100)
        json.dump(state, open(state_path, "w"))
        kepler.start_daemon()
        kepler.wait_status("web", "running")
        assert bystander.poll() is None, "the unrelated process survived"
    finally:
        bystander.kill()
        bystander.wait()


def test_stale_pid_file_and_socket_are_replaced(kepler):
    kepler.kill_daemon()
    assert os.path.exists(os.path.join(kepler.state_dir, "kepler.sock"))
    with open(os.path.join(kepler.state_dir, "kepler.pid"), "w") as file:
        file.write(f"{os.getpid()}\n")  # a live pid, but not a daemon holding the lock
    kepler.start_daemon()
    assert kepler.ctl("daemon", "status").returncode == 0
    assert open(os.path.join(kepler.state_dir, "kepler.pid")).read().strip() == str(kepler.daemon.pid)


def test_daemon_status_shows_configs_and_exit_codes(kepler):
    kepler.config("""
        services:
          web:
            command: ["sleep", "1000"]
          job:
            command: ["true"]
    """)
    kepler.ctl("start", "-d", "--wait")
    kepler.wait_status("job", "exited")
    out = kepler.ctl("daemon", "status").stdout
    assert f"(pid {kepler.daemon.pid})" in out and "kepler.sock" in out
    assert f"{os.path.join(kepler.workdir, 'kepler.yaml')}  1/2 running" in out
    info = json.loads(kepler.ctl("daemon", "status", "--json").stdout)
    assert info["configs"][0]["running"] == 1 and info["configs"][0]["total"] == 2 and info["uptime"] >= 0
    kepler.ctl("daemon", "stop")
    assert kepler.ctl("daemon", "status", check=False).returncode == 1


def test_daemon_status_shows_the_loop_lag(kepler):
    info = json.loads(kepler.ctl("daemon", "status", "--json").stdout)
    now, worst = info["loop_lag_ms"], info["loop_lag_max_ms"]
    assert all(isinstance(value, (int, float)) and value >= 0 for value in (now, worst)), info
    assert worst >= now, "the last tick is one of the last minute's"
    text = kepler.ctl("daemon", "status").stdout
    assert re.search(r"^loop lag: \d+\.\d ms now, \d+\.\d ms at worst in the last minute$", text, re.M), text


def test_prune_removes_stopped_and_orphaned_configs(kepler):
    running = kepler.write("running/kepler.yaml", "services:\n  web:\n    command: [sleep, '1000']\n")
    stopped = kepler.write("stopped/kepler.yaml", "services:\n  job:\n    command: [echo, hi]\n")
    orphan = kepler.write("orphan/kepler.yaml", "services:\n  web:\n    command: [sleep, '1000']\n")
    for path in (running, stopped, orphan):
        kepler.ctl("-f", path, "start", "-d", "--wait")
    kepler.wait_status("job", "exited", "-f", stopped)
    os.unlink(orphan)
    dry = kepler.ctl("prune", "--dry-run").stdout
    assert f"would remove {stopped}" in dry and f"would remove {orphan}" in dry and running not in dry
    assert len(json.loads(kepler.ctl("ps", "--all", "--json").stdout)) == 3, "a dry run removes nothing"
    out = kepler.ctl("prune").stdout
    assert f"removed {stopped}" in out and f"removed {orphan}" in out
    rows = json.loads(kepler.ctl("ps", "--all", "--json").stdout)
    assert [(row["config"], row["name"]) for row in rows] == [(running, "web")]


def test_prune_force_stops_running_configs_first(kepler):
    marker = "kt-prune-marker"
    path = kepler.config(f"services:\n  web:\n    command: {json.dumps(marked(marker))}\n")
    kepler.ctl("start", "-d", "--wait")
    root = kepler.inspect_path()
    assert kepler.ctl("prune").stdout.strip() == "nothing to prune"
    kepler.ctl("prune", "--force")
    assert pids_with_marker(marker, kepler) == [] and not os.path.exists(root)
    kepler.ctl("-f", path, "start", "-d", "--wait")
    wait_for(lambda: kepler.logs() == ["web | started"], message="fresh logs after a new bake")


def test_sigint_stops_the_daemon_gracefully(kepler):
    kepler.config("services:\n  web:\n    command: [sleep, '1000']\n")
    kepler.ctl("start", "-d", "--wait")
    pid = kepler.ps()["web"]["pid"]
    kepler.daemon.send_signal(signal.SIGINT)
    assert kepler.daemon.wait(30) == 0
    assert not pid_alive(pid)
    state = json.load(open(os.path.join(kepler.inspect_path(offline=True), "state.json")))
    assert state["services"]["web"]["desired"] == "up", "the next daemon brings it back"


def _recorded(state_path, service, key):
    """Return *key* of *service* as the daemon last wrote it in state.json."""
    try:
        return json.load(open(state_path))["services"][service][key]
    except (OSError, ValueError, KeyError):
        return None
