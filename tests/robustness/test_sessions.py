"""Point 2 of #24: idle and hostile clients cannot lock anyone out (their memory: test_memory.py).

A client that says no hello, or nothing at all with no request in flight, is
dropped; root has its own budget of sessions.
"""

import os
import socket
import subprocess
import tempfile
import time

import pytest

from tests.integration.harness import KEPLERCTL, Kepler
from tests.robustness import wire


@pytest.fixture
def strict(kepler_root):
    """A daemon with short client timeouts and two sessions per non-root user."""
    with open(os.path.join(kepler_root, "keplerd.conf"), "w") as conf:
        conf.write(f"autostart_dir: {os.path.join(kepler_root, 'conf.d')}\n"
                   "client_hello_timeout: 1s\nclient_idle_timeout: 2s\nclient_sessions_per_user: 2\n")
    instance = Kepler(kepler_root)
    try:
        instance.start_daemon()
        yield instance
    finally:
        instance.cleanup()


def test_a_client_that_never_says_hello_is_dropped(strict):
    sock = wire.connect(strict)
    answer = wire.read(sock)
    assert answer["response"] == {"ok": False, "error": "no hello for 1s: closing the connection"}
    assert wire.read(sock) is None


def test_an_idle_session_is_dropped_but_a_waiting_follower_is_not(strict):
    idle = wire.hello(wire.connect(strict))
    strict.config("""
        services:
          quiet:
            command: ["sleep", "1000"]
    """)
    strict.ctl("start", "-d")
    follower = subprocess.Popen([KEPLERCTL, "logs", "-f"], cwd=strict.workdir, env=strict.env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert wire.read(idle)["response"]["error"] == "idle for 2s: closing the connection"
        # The follower waits in logs_read (a request in flight) for longer than the idle timeout.
        with pytest.raises(subprocess.TimeoutExpired):
            follower.wait(timeout=4)
    finally:
        follower.kill()
        follower.wait()


def test_root_is_served_while_a_thousand_idle_connections_are_open(kepler):
    socks = []
    try:
        while len(socks) < 1100:
            try:
                socks.append(wire.connect(kepler))
            except BlockingIOError:  # the backlog is full for a moment: the daemon accepts as it can
                time.sleep(0.01)
        result = kepler.ctl("ps", "--all", timeout=60)
        assert result.returncode == 0
    finally:
        for sock in socks:
            sock.close()


def test_one_user_cannot_hold_more_than_its_sessions(kepler_root, accounts):
    group = accounts.group("sock")
    member = accounts.user("memb", groups=[group])
    with open(os.path.join(kepler_root, "keplerd.conf"), "w") as conf:
        conf.write(f"autostart_dir: {os.path.join(kepler_root, 'conf.d')}\nclient_sessions_per_user: 2\n"
                   f"socket_group: {group}\n")
    kepler = Kepler(kepler_root)
    try:
        kepler.start_daemon()
        holders = [_hold_session_as(kepler, member) for _ in range(2)]
        try:
            refused = kepler.ctl("ps", "--all", user=member, check=False)
            assert refused.returncode == 1
            assert f"too many sessions: user {member} holds 2 (client_sessions_per_user: 2)" in refused.stderr
            assert kepler.ctl("ps", "--all").returncode == 0, "root keeps its own budget"
        finally:
            for holder in holders:
                holder.kill()
                holder.wait()
    finally:
        kepler.cleanup()


def _hold_session_as(kepler, user):
    """Start a process, as *user*, that says hello and then holds its session open."""
    script = ("import socket, struct, json, sys, time\n"
              "s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
              "b = json.dumps({'id': 0, 'request': {'type': 'hello', 'version': 1}}).encode()\n"
              "s.sendall(struct.pack('>I', len(b)) + b); s.recv(4096); print('ready', flush=True)\n"
              "time.sleep(600)\n")
    command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "/usr/bin/python3", "-c",
               script, os.path.join(kepler.state_dir, "kepler.sock")]
    holder = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "ready", holder.stderr.read() if holder.poll() is not None else ""
    return holder


def test_keplerctl_gives_up_on_a_daemon_that_does_not_answer():
    with tempfile.TemporaryDirectory(prefix="kt-", dir="/tmp") as state:
        mute = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            mute.bind(os.path.join(state, "kepler.sock"))
            mute.listen(1)  # accepts (the kernel does) but never answers
            result = subprocess.run([KEPLERCTL, "ps", "--all"], env={**os.environ, "KEPLER_DAEMON_PATH": state},
                                    capture_output=True, text=True, timeout=60)
        finally:
            mute.close()
    assert result.returncode == 1
    assert "keplerd did not answer within 10s" in result.stderr
