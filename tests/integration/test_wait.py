"""An honest --wait through a real daemon (SPEC §13 start modes, §18)."""

import sys

from tests.integration.test_dependencies import config

SEVEN_LINES_THEN_EXIT_3 = "for i in 1 2 3 4 5 6 7; do echo line$i; done; exit 3"


def error_text(result):
    """Return keplerctl's error message without the ``keplerctl: `` on each of its lines."""
    return "\n".join(line.removeprefix("keplerctl: ") for line in result.stderr.splitlines())


def healthy_when(path):
    return {"test": ["test", "-f", path], "interval": "50ms"}


def test_each_service_gets_one_line_and_quiet_silences_them(kepler):
    kepler.write("up", "")
    config(kepler, {"web": {"command": ["sleep", "1000"], "healthcheck": healthy_when("up")},
                    # A one-shot: done when it exits 0 before its target (here: a health it never has).
                    "migrate": {"command": ["true"], "healthcheck": healthy_when("never")},
                    "report": {"command": ["sleep", "1000"], "depends_on": {"web": {"condition": "service_unhealthy"}}},
                    "plain": {"command": ["sleep", "1000"]}})
    result = kepler.ctl("start", "-d", "--wait")
    assert sorted(result.stdout.splitlines()) == sorted([
        "web      healthy", "migrate  exited (0)", "report   deferred: waits on web (service_unhealthy)",
        "plain    running"])
    assert result.stdout.splitlines()[0] == "report   deferred: waits on web (service_unhealthy)"
    kepler.ctl("stop")
    assert kepler.ctl("start", "-d", "--wait", "-q").stdout == ""


def test_a_crash_before_the_target_fails_the_wait_even_if_the_policy_restarts_it(kepler):
    config(kepler, {"web": {"command": ["sh", "-c", SEVEN_LINES_THEN_EXIT_3], "restart": "always",
                            "healthcheck": healthy_when("never")}})
    result = kepler.ctl("start", "-d", "--wait", check=False)
    assert result.returncode == 1
    assert "web exited with code 3 before it was healthy" in result.stderr
    shown = [line.strip() for line in error_text(result).splitlines()[1:]]
    assert shown == ["line3", "line4", "line5", "line6", "line7"], result.stderr


def test_a_service_killed_before_its_target_fails_the_wait(kepler):
    config(kepler, {"web": {"command": ["sh", "-c", "echo bye; kill -KILL $$"],
                            "healthcheck": healthy_when("never")}})
    result = kepler.ctl("start", "-d", "--wait", check=False)
    assert result.returncode == 1
    assert "web killed by SIGKILL before it was healthy; its last 1 log lines:\n  bye" in error_text(result)


def test_an_unhealthy_service_fails_the_wait(kepler):
    config(kepler, {"web": {"command": ["sleep", "1000"], "healthcheck": {
        "test": ["sh", "-c", "echo no database; exit 1"], "interval": "50ms", "retries": 2}}})
    result = kepler.ctl("start", "-d", "--wait", check=False)
    assert result.returncode == 1
    assert "web unhealthy: no database" in result.stderr


def test_timeout_names_what_was_not_ready(kepler):
    config(kepler, {"web": {"command": ["sleep", "1000"], "healthcheck": healthy_when("never") | {"retries": 1000}},
                    "app": {"command": ["sleep", "1000"], "depends_on": {"web": {"condition": "service_healthy"}}},
                    "plain": {"command": ["sleep", "1000"]}})
    result = kepler.ctl("start", "-d", "--wait", "--timeout", "1s", check=False)
    assert result.returncode == 1
    assert result.stdout == "plain  running\n"
    assert ("timed out after 1s waiting for: web (running, not healthy yet), "
            "app (waiting for web (service_healthy)); they keep starting") in result.stderr
    assert kepler.status("app") == "starting"


def test_a_notify_service_without_ready_fails_when_the_wait_times_out(kepler):
    config(kepler, {"app": {"command": ["sleep", "1000"], "notify": True}})
    result = kepler.ctl("start", "-d", "--wait", "--timeout", "1s", check=False)
    assert result.returncode == 1
    assert "app (started, no READY=1 yet)" in result.stderr
    row = kepler.wait_status("app", "failed")
    assert row["pid"] is None
    assert kepler.inspect("app")["services"]["app"]["state"]["reason"] == "no READY=1 within 1s"


def test_a_ready_notify_service_is_ready(kepler):
    notify = ("import os, socket; s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); "
              "s.sendto(b'READY=1', os.environ['NOTIFY_SOCKET']); os.execvp('sleep', ['sleep', '1000'])")
    config(kepler, {"app": {"command": [sys.executable, "-c", notify], "notify": True}})
    assert kepler.ctl("start", "-d", "--wait").stdout == "app  ready\n"


def test_restart_wait_fails_on_a_crash_too(kepler):
    # Healthy once it runs `sleep 1001` (found among the daemon's children, the probe's parent); a run
    # that finds `broken` exits 5 before that.
    command = ["sh", "-c", "test -f broken && echo cannot bind && exit 5; exec sleep 1001"]
    probe = ["sh", "-c", "pgrep -P $PPID -x -f 'sleep 1001'"]
    config(kepler, {"web": {"command": command, "restart": "on-failure",
                            "healthcheck": {"test": probe, "interval": "50ms"}}})
    assert kepler.ctl("start", "-d", "--wait").stdout == "web  healthy\n"
    kepler.write("broken", "")
    result = kepler.ctl("restart", "-d", "--wait", check=False)
    assert result.returncode == 1
    assert "web exited with code 5 before it was healthy" in result.stderr and "  cannot bind" in error_text(result)
