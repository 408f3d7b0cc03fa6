"""Readiness over the systemd notify protocol through a real daemon (SPEC §18)."""

import os
import pwd
import shutil
import subprocess
import socket
import stat
import sys

import pytest

from tests.integration.accounts import shared_dir
from tests.integration.harness import pids_with_marker, wait_for
from tests.integration.test_dependencies import config

# Says STATUS=warming up, then waits for the file `go` before READY=1.
NOTIFIER = """\
import os, socket, sys, time
def notify(text):
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(text.encode(), os.environ["NOTIFY_SOCKET"])
notify("STATUS=warming up")
while not os.path.exists("go"):
    time.sleep(0.02)
notify("READY=1\\nSTATUS=serving")
os.execvp("sleep", ["sleep", "1000"])
"""


def notifier(**extra):
    return {"command": [sys.executable, "-c", NOTIFIER], "notify": True, **extra}


def test_a_notify_service_is_starting_until_ready_and_its_dependents_wait(kepler):
    config(kepler, {"app": notifier(), "web": {"command": ["sleep", "1000"], "depends_on": ["app"]}})
    kepler.ctl("start", "-d")
    row = wait_for(lambda: kepler.ps()["app"]["status_text"] == "warming up" and kepler.ps()["app"],
                   message="STATUS=warming up")
    assert row["status"] == "starting" and row["pid"], "a notify service is starting until READY=1"
    assert kepler.status("web") == "starting"
    assert kepler.inspect("app")["services"]["app"]["state"]["status_text"] == "warming up"
    kepler.write("go", "")
    assert kepler.wait_status("app", "running")["status_text"] == "serving"
    kepler.wait_status("web", "running")


def test_no_ready_within_the_start_period_fails_the_service(kepler):
    marker = "kt-never-ready"
    config(kepler, {"app": {"command": ["bash", "-c", f"exec -a {marker} sleep 1000"], "notify": True,
                            "healthcheck": {"test": ["true"], "start_period": "300ms"}}})
    kepler.ctl("start", "-d")
    row = kepler.wait_status("app", "failed")
    assert kepler.inspect("app")["services"]["app"]["state"]["reason"] == "no READY=1 within 0.3s"
    assert row["pid"] is None and pids_with_marker(marker) == []


def test_without_a_deadline_a_notify_service_stays_starting(kepler):
    config(kepler, {"app": {"command": ["sh", "-c", "echo $NOTIFY_SOCKET > socket; exec sleep 1000"],
                            "notify": True}})
    kepler.ctl("start", "-d")
    path = wait_for(lambda: os.path.exists(os.path.join(kepler.workdir, "socket")) and
                    open(os.path.join(kepler.workdir, "socket")).read().strip(), message="NOTIFY_SOCKET")
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    assert kepler.status("app") == "starting"
    kepler.ctl("stop")
    assert kepler.status("app") == "stopped"
    assert not os.path.exists(path), "the notify socket outlived the run"


@pytest.fixture
def kepler_with_users(accounts, kepler):
    """The daemon, started after the accounts exist and stopped before they are deleted."""
    return kepler


def test_the_notify_socket_is_writable_by_the_service_user_only(accounts, kepler_with_users):
    kepler = kepler_with_users
    owner, other = accounts.user("ownr"), accounts.user("othr")
    out = shared_dir(kepler.workdir)
    # The system's python: the user may not read the test's venv.
    config(kepler, {"app": {"command": ["/usr/bin/python3", "-c", NOTIFIER], "notify": True, "user": owner,
                            "working_dir": out}})
    kepler.ctl("start", "-d")
    wait_for(lambda: kepler.ps()["app"]["status_text"], message="a status")
    environ = open(f"/proc/{kepler.ps()['app']['pid']}/environ").read().split("\0")
    socket_path = dict(entry.split("=", 1) for entry in environ if "=" in entry)["NOTIFY_SOCKET"]
    info = os.stat(socket_path)
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (pwd.getpwnam(owner).pw_uid, 0o600)
    sender = ["/usr/bin/python3", "-c", "import socket, sys; s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); "
              "s.sendto(b'READY=1', sys.argv[1])", socket_path]
    denied = kepler_run_as(other, sender)
    assert denied.returncode != 0 and "Permission denied" in denied.stderr
    assert kepler.status("app") == "starting", "another user made the service ready"
    allowed = kepler_run_as(owner, sender)
    assert allowed.returncode == 0, allowed.stderr
    kepler.wait_status("app", "running")


def kepler_run_as(user, command):
    return subprocess.run(["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", *command],
                          capture_output=True, text=True, timeout=30)


@pytest.mark.skipif(shutil.which("redis-server") is None,
                    reason="redis-server is missing: `make test-tools` installs it (Debian package redis-server)")
def test_redis_server_tells_the_daemon_it_is_ready(kepler):
    sock = os.path.join(kepler.workdir, "redis.sock")
    config(kepler, {
        "redis": {"command": ["redis-server", "--port", "0", "--unixsocket", sock, "--supervised", "systemd",
                              "--daemonize", "no", "--save", "", "--appendonly", "no"], "notify": True},
        "client": {"command": ["sh", "-c", f"redis-cli -s {sock} ping > pong; exec sleep 1000"],
                   "depends_on": ["redis"]}})
    kepler.ctl("start", "-d")
    row = kepler.wait_status("redis", "running")
    assert row["status_text"] and "accept" in row["status_text"].lower()
    kepler.wait_status("client", "running")
    # It waited for READY=1, so its ping found redis listening.
    wait_for(lambda: os.path.exists(os.path.join(kepler.workdir, "pong")) and
             open(os.path.join(kepler.workdir, "pong")).read().strip() == "PONG", message="PONG")


def test_notify_socket_is_private_to_each_service(kepler):
    config(kepler, {name: {"command": ["sh", "-c", f"echo $NOTIFY_SOCKET > {name}.socket; exec sleep 1000"],
                           "notify": True} for name in ("a", "b")})
    kepler.ctl("start", "-d")
    paths = [wait_for(lambda name=name: os.path.exists(os.path.join(kepler.workdir, f"{name}.socket")) and
                      open(os.path.join(kepler.workdir, f"{name}.socket")).read().strip()) for name in ("a", "b")]
    assert paths[0] != paths[1]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
        sender.sendto(b"READY=1", paths[1])
    kepler.wait_status("b", "running")
    assert kepler.status("a") == "starting"
