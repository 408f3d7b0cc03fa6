"""Services run, stop, restart and are restarted per policy, through keplerd and keplerctl."""

import os
import time

import pytest

from tests.integration.harness import pids_with_marker, wait_for


def test_start_detached_runs_every_service(kepler):
    kepler.config("""
        services:
          web:
            command: ["sleep", "1000"]
          worker:
            command: ["sleep", "1001"]
    """)
    kepler.ctl("start", "-d")
    web = kepler.wait_status("web", "running")
    worker = kepler.wait_status("worker", "running")
    assert web["pid"] and worker["pid"] and web["pid"] != worker["pid"]
    assert os.getpgid(web["pid"]) == web["pid"], "each service leads its own process group"


def test_ps_table_shows_name_status_and_pid(kepler):
    kepler.config("""
        services:
          web:
            command: ["sleep", "1000"]
          done:
            command: ["true"]
    """)
    kepler.ctl("start", "-d")
    web = kepler.wait_status("web", "running")
    kepler.wait_status("done", "exited")
    lines = kepler.ctl("ps").stdout.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "PID"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert "Up " in rows["web"] and str(web["pid"]) in rows["web"]
    assert "Exited (0)" in rows["done"] and rows["done"].split()[-2:] == ["ago", "-"]


def test_ps_all_lists_every_config_with_a_config_column(kepler):
    first = kepler.write("one/kepler.yaml", "services:\n  a:\n    command: [sleep, '1000']\n")
    second = kepler.write("two/kepler.yaml", "services:\n  b:\n    command: [sleep, '1000']\n")
    kepler.ctl("-f", first, "start", "-d")
    kepler.ctl("-f", second, "start", "-d")
    lines = kepler.ctl("ps", "--all").stdout.splitlines()
    assert lines[0].split() == ["CONFIG", "NAME", "STATUS", "PID"]
    assert any(line.startswith(first) and " a " in line for line in lines)
    assert any(line.startswith(second) and " b " in line for line in lines)


def test_stop_one_service_leaves_the_others_running(kepler):
    kepler.config("""
        services:
          web:
            command: ["sleep", "1000"]
          worker:
            command: ["sleep", "1000"]
    """)
    kepler.ctl("start", "-d")
    worker = kepler.wait_status("worker", "running")
    kepler.wait_status("web", "running")
    kepler.ctl("stop", "web")
    services = kepler.ps()
    assert services["web"]["status"] == "stopped" and services["web"]["pid"] is None
    assert services["worker"]["status"] == "running" and services["worker"]["pid"] == worker["pid"]


def test_restart_one_service_gives_it_a_new_process(kepler):
    kepler.config("""
        services:
          web:
            command: ["sleep", "1000"]
          worker:
            command: ["sleep", "1000"]
    """)
    kepler.ctl("start", "-d")
    web = kepler.wait_status("web", "running")
    worker = kepler.wait_status("worker", "running")
    kepler.ctl("restart", "-d", "web")
    after = kepler.wait_status("web", "running")
    assert after["pid"] != web["pid"]
    assert kepler.ps()["worker"]["pid"] == worker["pid"]


def test_killed_by_a_signal_shows_killed(kepler):
    kepler.config("""
        services:
          victim:
            command: ["sleep", "1000"]
    """)
    kepler.ctl("start", "-d")
    pid = kepler.wait_status("victim", "running")["pid"]
    os.kill(pid, 9)
    row = kepler.wait_status("victim", "killed")
    assert row["signal"] == "SIGKILL"
    assert "Killed (SIGKILL)" in kepler.ctl("ps").stdout


def test_stop_kills_grandchildren_even_in_other_process_groups(kepler):
    marker = "kt-grandchild-marker"
    kepler.write("forker.sh", f"""
        bash -c 'exec -a {marker}-1 sleep 1001' &
        setsid bash -c 'exec -a {marker}-2 sleep 1002' &
        bash -c 'bash -c "exec -a {marker}-3 sleep 1003" & wait' &
        wait
    """)
    kepler.config("""
        services:
          forker:
            command: ["bash", "forker.sh"]
            stop_grace_period: 5s
    """)
    kepler.ctl("start", "-d")
    kepler.wait_status("forker", "running")
    grandchildren = wait_for(lambda: len(pids_with_marker(marker)) == 3 and pids_with_marker(marker),
                             message="three grandchildren")
    kepler.ctl("stop", "forker")
    assert [pid for pid in grandchildren if psutil_alive(pid)] == []


def test_stop_escalates_to_sigkill_after_the_grace_period(kepler):
    marker = "kt-stubborn-marker"
    kepler.config(f"""
        services:
          stubborn:
            command: ["bash", "-c", "trap '' TERM; exec -a {marker} sleep 1000"]
            stop_grace_period: 1s
    """)
    kepler.ctl("start", "-d")
    kepler.wait_status("stubborn", "running")
    wait_for(lambda: pids_with_marker(marker), message="the stubborn process")
    started = time.monotonic()
    kepler.ctl("stop", "stubborn")
    assert time.monotonic() - started >= 0.9, "SIGTERM is ignored, so only SIGKILL after 1s can end it"
    assert pids_with_marker(marker) == []
    assert kepler.status("stubborn") == "stopped"


@pytest.mark.parametrize("spelling", ["SIGKILL", "9", "kill"])
def test_stop_with_a_signal_sends_that_signal(kepler, spelling):
    marker = f"kt-sig-{spelling}"
    kepler.config(f"""
        services:
          stubborn:
            command: ["bash", "-c", "trap '' TERM; exec -a {marker} sleep 1000"]
            stop_grace_period: 120s
    """)
    kepler.ctl("start", "-d")
    kepler.wait_status("stubborn", "running")
    # With SIGTERM ignored and a 120 s grace, only the signal given here can end it within the timeout.
    kepler.ctl("stop", "-s", spelling, "stubborn", timeout=30)
    assert pids_with_marker(marker) == []


def test_stop_signal_reaches_the_service(kepler):
    got = kepler.write("got", "")
    kepler.config(f"""
        services:
          listener:
            command: ["sh", "-c", "trap 'echo USR1 >> {got}; exit 0' USR1; while true; do sleep 0.05; done"]
    """)
    kepler.ctl("start", "-d")
    kepler.wait_status("listener", "running")
    kepler.ctl("stop", "-s", "usr1", "listener")
    assert open(got).read().strip() == "USR1"


def test_invalid_signal_is_rejected_before_anything_stops(kepler):
    kepler.config("""
        services:
          web:
            command: ["sleep", "1000"]
    """)
    kepler.ctl("start", "-d")
    pid = kepler.wait_status("web", "running")["pid"]
    result = kepler.ctl("stop", "-s", "SIGNOPE", check=False)
    assert result.returncode == 1
    assert "invalid signal" in result.stderr
    assert kepler.ps()["web"]["pid"] == pid


def test_missing_program_fails_with_the_reason(kepler):
    # A pre_start hook might create the program: the bake leaves it to the start.
    kepler.config("""
        services:
          ghost:
            command: ["no-such-program-kt", "--flag"]
            hooks: {pre_start: {run: "true"}}
    """)
    kepler.ctl("start", "-d")
    kepler.wait_status("ghost", "failed")
    state = kepler.inspect("ghost")["services"]["ghost"]["state"]
    assert state["reason"] == "program not found: no-such-program-kt"
    assert "Failed" in kepler.ctl("ps").stdout
    assert any("program not found" in line for line in kepler.logs("ghost"))


def test_missing_working_dir_fails_with_the_reason(kepler):
    kepler.config("""
        services:
          lost:
            command: ["true"]
            working_dir: /nonexistent/kt-dir
    """)
    kepler.ctl("start", "-d")
    kepler.wait_status("lost", "failed")
    reason = kepler.inspect("lost")["services"]["lost"]["state"]["reason"]
    assert reason == "working directory not found: /nonexistent/kt-dir"


def test_daemon_stays_up_after_failures(kepler):
    kepler.config("""
        services:
          ghost:
            command: ["/nonexistent/program"]
            hooks: {pre_start: {run: "true"}}  # so the bake leaves the missing program to the start
    """)
    kepler.ctl("start", "-d")
    kepler.wait_status("ghost", "failed")
    assert kepler.daemon.poll() is None
    assert kepler.ctl("daemon", "status").returncode == 0


def psutil_alive(pid):
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
