"""Health drives action through a real daemon (SPEC §18, §10): probes that leave nothing, http and tcp
probes made by the daemon, and restarts of unhealthy services."""

import os
import socket
import sys

from tests.integration.harness import pids_with_marker, wait_for
from tests.integration.test_dependencies import config


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_server(port):
    return [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]


def daemon_threads(kepler):
    return len(os.listdir(f"/proc/{kepler.daemon.pid}/task"))


def probes(kepler):
    path = os.path.join(kepler.workdir, "probes")
    return open(path).read().count("probe") if os.path.exists(path) else 0


def test_a_passing_probe_leaves_nothing_running(kepler):
    marker = "kt-probe-leftover"
    config(kepler, {"web": {"command": ["sleep", "1000"], "healthcheck": {
        "test": ["bash", "-c", f"echo probe >> probes; (exec -a {marker} sleep 20) & true"], "interval": "100ms"}}})
    kepler.ctl("start", "-d")
    kepler.wait_status("web", "healthy")
    wait_for(lambda: probes(kepler) >= 6, message="six probes")
    kepler.ctl("stop")
    assert pids_with_marker(marker) == [], "the probes' background sleeps outlived them"


def test_http_probe_by_the_daemon_makes_a_web_server_healthy(kepler):
    port = free_port()
    config(kepler, {"web": {"command": http_server(port), "healthcheck": {
        "http": f"http://localhost:{port}/", "interval": "100ms"}}})
    kepler.ctl("start", "-d")
    kepler.wait_status("web", "healthy")
    last = kepler.inspect("web")["services"]["web"]["state"]["last_probe"]
    assert last["passed"] and last["output"].startswith("HTTP/1.0 200") and last["exit_code"] is None
    assert daemon_threads(kepler) == 1, "an http probe started a thread in the daemon"


def test_http_probe_fails_on_an_error_status(kepler):
    port = free_port()
    config(kepler, {"web": {"command": http_server(port), "healthcheck": {
        "http": f"http://127.0.0.1:{port}/no-such-page", "interval": "100ms", "retries": 2}}})
    kepler.ctl("start", "-d")
    answer = f"http://127.0.0.1:{port}/no-such-page: HTTP/1.0 404 File not found"

    def unhealthy_on_the_answer():
        # Probes before the server listens fail too (refused): wait for one that got the 404.
        state = kepler.inspect("web")["services"]["web"]["state"]
        return state["health"] == "unhealthy" and (state["last_probe"] or {}).get("output") == answer

    wait_for(unhealthy_on_the_answer, message="web unhealthy on the 404 answer")


def test_tcp_probe_follows_the_port(kepler):
    port = free_port()
    config(kepler, {"web": {"command": http_server(port), "healthcheck": {
        "tcp": f"127.0.0.1:{port}", "interval": "100ms"}},
        "closed": {"command": ["sleep", "1000"], "healthcheck": {
            "tcp": f"127.0.0.1:{free_port()}", "interval": "100ms", "retries": 1}}})
    kepler.ctl("start", "-d")
    kepler.wait_status("web", "healthy")
    kepler.wait_status("closed", "unhealthy")
    last = kepler.inspect("closed")["services"]["closed"]["state"]["last_probe"]
    assert "Connection refused" in last["output"]
    assert daemon_threads(kepler) == 1


UNHEALTHY_MARKER = "kt-unhealthy-service"


def on_unhealthy_service(max_retries):
    return {"command": ["bash", "-c", f"exec -a {UNHEALTHY_MARKER} sleep 1000"],
            "restart": {"policy": "always", "on_unhealthy": True, "max_retries": max_retries},
            "healthcheck": {"test": ["test", "-f", "healthy"], "interval": "100ms", "retries": 1}}


def test_an_unhealthy_service_restarts_through_its_policy_until_it_gives_up(kepler):
    config(kepler, {"web": on_unhealthy_service(max_retries=2)})
    kepler.ctl("start", "-d")
    row = kepler.wait_status("web", "failed")
    state = kepler.inspect("web")["services"]["web"]["state"]
    assert (row["restarts"], state["restart_reason"], state["gave_up"]) == (2, "unhealthy", True)
    assert state["reason"] == "unhealthy, gave up after 2 retries"
    assert pids_with_marker(UNHEALTHY_MARKER) == []
    assert any("is unhealthy: restarting it" in line for line in kepler.logs("web"))


def test_a_healthy_run_resets_the_back_off(kepler):
    # Each run passes its first probe, then fails: healthy, then unhealthy. The probe finds the run's
    # process among the daemon's children (its own parent); the spawn has exec'd before any probe.
    probe = "p=$(pgrep -P $PPID -x -f 'sleep 1001'); [ -n \"$p\" ] && [ ! -e seen.$p ] && touch seen.$p"
    config(kepler, {"web": {"command": ["sleep", "1001"],
                            "restart": {"policy": "always", "on_unhealthy": True, "max_retries": 2},
                            "healthcheck": {"test": ["sh", "-c", probe], "interval": "100ms", "retries": 1}}})
    kepler.ctl("start", "-d")
    # Quick unhealthy runs give up after max_retries=2, unless a healthy run resets the count each time.
    wait_for(lambda: kepler.ps()["web"]["restarts"] >= 4 or kepler.status("web") == "failed",
             message="four restarts")
    state = kepler.inspect("web")["services"]["web"]["state"]
    assert state["status"] != "failed", state["reason"]
    assert state["restart_reason"] == "unhealthy"
