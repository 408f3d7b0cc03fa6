"""Replicas, scale, signal and rolling restarts through a real daemon (SPEC §17)."""

import os
import socket
import subprocess
import sys
import time

from tests.integration.harness import KEPLERCTL, wait_for
from tests.integration.test_dependencies import config

SLEEPER = ["sh", "-c", 'echo "replica $KEPLER_REPLICA of $KEPLER_REPLICAS"; exec sleep 1000']


def running(kepler, *names):
    return wait_for(lambda: (rows := kepler.ps()) and all(rows.get(name, {}).get("status") in ("running", "healthy")
                                                           for name in names) and rows,
                    message=f"{', '.join(names)} to run")


def test_instances_have_their_own_names_processes_environment_and_logs(kepler):
    config(kepler, {"web": {"command": SLEEPER, "replicas": 3,
                            "hooks": {"pre_start": {"run": 'echo "hook of $KEPLER_REPLICA"'}}},
                    "db": {"command": ["sleep", "1000"]}})
    kepler.ctl("start", "-d")
    rows = running(kepler, "web.1", "web.2", "web.3", "db")
    assert sorted(rows) == ["db", "web.1", "web.2", "web.3"]  # replicas: 1 keeps its plain name
    assert len({rows[name]["pid"] for name in rows}) == 4
    assert rows["web.2"]["service"] == "web" and rows["web.2"]["replica"] == 2 and rows["db"]["replica"] is None
    wait_for(lambda: any("replica 2 of 3" in line for line in kepler.logs("web.2")), message="web.2's output")
    assert not any("replica 1" in line for line in kepler.logs("web.2"))
    assert any(line.startswith("web.2.pre_start") and "hook of 2" in line for line in kepler.logs("web"))
    assert not any(line.startswith("web.2.pre_start") for line in kepler.logs("web", "--no-hook"))
    assert list(kepler.inspect("web.3")["services"]) == ["web.3"]
    assert sorted(kepler.inspect("web")["services"]) == ["web.1", "web.2", "web.3"]
    kepler.ctl("stop", "web.2")
    rows = kepler.ps()
    assert rows["web.2"]["status"] == "stopped" and rows["web.1"]["status"] == "running"
    kepler.ctl("stop", "web")
    assert {kepler.ps()[name]["status"] for name in ("web.1", "web.3")} == {"stopped"}
    assert kepler.ctl("stop", "web.4", check=False).returncode == 1


def test_a_dependency_on_a_replicated_service_waits_for_every_instance(kepler):
    config(kepler, {
        "web": {"command": ["sleep", "1000"], "replicas": 2,
                "healthcheck": {"test": ["sh", "-c", "test -f ok.$KEPLER_REPLICA"], "interval": "50ms"}},
        "app": {"command": ["sleep", "1000"], "depends_on": {"web": {"condition": "service_healthy"}}},
    })
    kepler.write("ok.1", "")
    kepler.ctl("start", "-d")
    kepler.wait_status("web.1", "healthy")
    wait_for(lambda: kepler.inspect("app")["services"]["app"]["state"]["waiting_on"] == ["web (service_healthy)"],
             message="app to wait for web")
    assert kepler.status("app") == "starting"
    kepler.write("ok.2", "")
    kepler.wait_status("app", "running")


def test_scale_adds_and_removes_the_highest_instances_and_survives_a_daemon_restart(kepler):
    config(kepler, {"web": {"command": SLEEPER, "replicas": 2}})
    kepler.ctl("start", "-d")
    before = running(kepler, "web.1", "web.2")
    kepler.ctl("scale", "web=4")
    after = running(kepler, "web.1", "web.2", "web.3", "web.4")
    assert [after[name]["pid"] for name in ("web.1", "web.2")] == [before[name]["pid"] for name in ("web.1", "web.2")]
    wait_for(lambda: any("replica 4 of 4" in line for line in kepler.logs("web.4")), message="web.4's output")
    kepler.ctl("scale", "web=1")
    rows = kepler.ps()
    # One instance left: it is plain web again, the same process (as an apply to replicas: 1 leaves it).
    assert sorted(rows) == ["web"] and rows["web"]["pid"] == before["web.1"]["pid"]
    assert any("replica 1 of 2" in line for line in kepler.logs("web")), "with web.1's logs"
    assert kepler.ctl("scale", "web=0", check=False).returncode == 1
    assert "no such service: nope" in kepler.ctl("scale", "nope=2", check=False).stderr
    kepler.stop_daemon()
    kepler.start_daemon()
    assert sorted(running(kepler, "web")) == ["web"]
    kepler.ctl("stop")
    kepler.ctl("recreate")  # a new bake takes the count from the file again
    kepler.ctl("start", "-d")
    assert sorted(running(kepler, "web.1", "web.2")) == ["web.1", "web.2"]


HTTP_SERVER = """
import http.server, os, sys
port = int(sys.argv[1]) + int(os.environ["KEPLER_REPLICA"])
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""

PROBE = """
import os, sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{int(sys.argv[1]) + int(os.environ['KEPLER_REPLICA'])}/", timeout=1)
"""


def free_base_port(count):
    """Return a port P such that P+1 … P+count are free now."""
    for base in range(21000, 60000, 97):
        try:
            for port in range(base + 1, base + count + 1):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise AssertionError("no free ports")


def answering(ports):
    """Return how many of *ports* answer an HTTP GET now."""
    import urllib.request

    count = 0
    for port in ports:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read()
            count += 1
        except OSError:
            pass
    return count


def test_a_rolling_restart_keeps_all_but_one_instance_serving(kepler):
    base = free_base_port(3)
    kepler.write("server.py", HTTP_SERVER)
    kepler.write("probe.py", PROBE)
    config(kepler, {"web": {"command": [sys.executable, "server.py", str(base)], "replicas": 3,
                            "stop_signal": "SIGKILL",
                            "healthcheck": {"test": [sys.executable, "probe.py", str(base)], "interval": "200ms",
                                            "retries": 10}}})
    kepler.ctl("start", "-d")
    before = wait_for(lambda: (rows := kepler.ps()) and all(row["status"] == "healthy" for row in rows.values())
                      and len(rows) == 3 and rows, message="3 healthy instances")
    ports = [base + index for index in (1, 2, 3)]
    roll = subprocess.Popen([KEPLERCTL, "restart", "--rolling", "web"], cwd=kepler.workdir, env=kepler.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    polls = []
    try:
        while roll.poll() is None:
            polls.append(answering(ports))
            time.sleep(0.05)
    finally:
        out, err = roll.communicate(timeout=60)
    assert roll.returncode == 0, err
    assert len(polls) >= 3 and min(polls) >= 2, polls
    after = kepler.ps()
    assert all(after[name]["pid"] != before[name]["pid"] for name in before)
    assert all(row["status"] == "healthy" for row in after.values())
    assert [line.split(":")[0] for line in out.splitlines() if "restart" in line or "started" in line][:1] == \
        ["[+] web.1"]


def test_a_rolling_restart_stops_at_an_instance_that_does_not_become_healthy(kepler):
    # web.2 is healthy on its first start only: the roll stops there, web.3 is not touched.
    check = 'test "$KEPLER_REPLICA" != 2 || test "$(wc -l < starts.2)" -lt 2'
    config(kepler, {"web": {"command": ["sh", "-c", 'echo x >> starts.$KEPLER_REPLICA; exec sleep 1000'],
                            "replicas": 3,
                            "healthcheck": {"test": ["sh", "-c", check], "interval": "50ms", "retries": 2}}})
    kepler.ctl("start", "-d")
    before = wait_for(lambda: (rows := kepler.ps()) and all(row["status"] == "healthy" for row in rows.values())
                      and rows, message="3 healthy instances")
    result = kepler.ctl("restart", "--rolling", "web", check=False)
    assert result.returncode == 1
    assert "rolling restart stopped at web.2" in result.stderr and "web.3 not restarted" in result.stderr
    after = kepler.ps()
    assert after["web.1"]["pid"] != before["web.1"]["pid"] and after["web.1"]["status"] == "healthy"
    assert after["web.3"]["pid"] == before["web.3"]["pid"] and after["web.3"]["status"] == "healthy"
    assert after["web.2"]["status"] == "unhealthy"


SIGNALLED = """
import os, signal, subprocess, sys, time
def handler(signum, frame):
    with open(f"got.{sys.argv[1]}.{os.environ['KEPLER_REPLICA']}", "a") as file:
        file.write(signal.Signals(signum).name + "\\n")
signal.signal(signal.SIGHUP, handler)
signal.signal(signal.SIGUSR1, handler)
if sys.argv[1] == "main":
    subprocess.Popen([sys.executable, __file__, "child"])
while True:
    time.sleep(0.05)
"""


def received(kepler, who, replica):
    path = os.path.join(kepler.workdir, f"got.{who}.{replica}")
    return open(path).read().split() if os.path.exists(path) else []


def test_signal_reaches_the_main_process_or_its_group_without_changing_state(kepler):
    kepler.write("signalled.py", SIGNALLED)
    config(kepler, {"web": {"command": [sys.executable, "signalled.py", "main"], "replicas": 2}})
    kepler.ctl("start", "-d")
    before = running(kepler, "web.1", "web.2")
    wait_for(lambda: len(subprocess.run(["pgrep", "-g", str(before["web.2"]["pid"])], capture_output=True,
                                        text=True).stdout.split()) == 2, message="web.2's child")
    assert kepler.ctl("signal", "BOGUS", "web", check=False).returncode == 1
    assert kepler.ctl("signal", "HUP", "nope", check=False).returncode == 1
    kepler.ctl("signal", "HUP", "web.2")
    wait_for(lambda: received(kepler, "main", 2) == ["SIGHUP"], message="web.2 to get SIGHUP")
    kepler.ctl("signal", "--group", "USR1", "web.2")
    # Each process of the group records the signal in its own time: wait for both.
    both = (["SIGHUP", "SIGUSR1"], ["SIGUSR1"])
    wait_for(lambda: (received(kepler, "main", 2), received(kepler, "child", 2)) == both,
             message="web.2 and its child to get SIGUSR1")
    assert received(kepler, "main", 1) == [] and received(kepler, "child", 1) == []
    after = kepler.ps()
    assert {name: (row["status"], row["pid"]) for name, row in after.items()} == \
        {name: ("running", row["pid"]) for name, row in before.items()}


def starts(kepler, name):
    path = os.path.join(kepler.workdir, f"{name}.starts")
    return len(open(path).read().split()) if os.path.exists(path) else 0


def test_restart_true_dependents_restart_once_per_restart_of_the_service(kepler):
    counted = ["sh", "-c", "echo x >> app.starts; exec sleep 1000"]
    config(kepler, {"web": {"command": ["sleep", "1000"], "replicas": 3},
                    "app": {"command": counted, "depends_on": {"web": {"restart": True}}}})
    kepler.ctl("start", "-d")
    running(kepler, "web.1", "web.2", "web.3", "app")
    assert starts(kepler, "app") == 1
    kepler.ctl("restart", "web")
    running(kepler, "web.1", "web.2", "web.3", "app")
    assert starts(kepler, "app") == 2
    kepler.ctl("restart", "--rolling", "web")
    running(kepler, "web.1", "web.2", "web.3", "app")
    assert starts(kepler, "app") == 3
    assert kepler.inspect("app")["services"]["app"]["state"]["restart_reason"] == "dependency"


def test_a_daemon_reexec_keeps_every_instance_and_the_scaled_count(kepler):
    base = free_base_port(2)
    kepler.write("server.py", HTTP_SERVER)
    kepler.write("probe.py", PROBE)
    config(kepler, {"web": {"command": [sys.executable, "server.py", str(base)], "replicas": 3,
                            "healthcheck": {"test": [sys.executable, "probe.py", str(base)], "interval": "100ms"}}})
    kepler.ctl("start", "-d")
    kepler.ctl("scale", "web=2")
    before = wait_for(lambda: (rows := kepler.ps()) and sorted(rows) == ["web.1", "web.2"] and
                      all(row["status"] == "healthy" for row in rows.values()) and rows, message="2 healthy")
    kepler.ctl("daemon", "reexec")
    resumed = time.time()
    after = kepler.ps()
    assert {name: row["pid"] for name, row in after.items()} == {name: row["pid"] for name, row in before.items()}

    def probed_since_reexec():
        states = [service["state"] for service in kepler.inspect("web")["services"].values()]
        return all((state["last_probe"] or {}).get("at", 0) > resumed for state in states) and states

    # The probes carry on with the instance's environment (KEPLER_REPLICA picks the port).
    states = wait_for(probed_since_reexec, message="a probe of each instance in the new image")
    assert all(state["last_probe"]["passed"] and state["status"] == "healthy" for state in states)
    kepler.ctl("scale", "web=3")
    assert sorted(running(kepler, "web.1", "web.2", "web.3")) == ["web.1", "web.2", "web.3"]
