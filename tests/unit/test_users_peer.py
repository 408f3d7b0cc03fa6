"""Who may use the control socket: the peer's uid and groups (SPEC §14)."""

import os
import subprocess
import time

import pytest

from keplerd.control.server import Peer

NOBODY = 65534
SOCKET_GROUP = 4242


@pytest.fixture
def client():
    """A process running as uid/gid 65534 with one supplementary group; killed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root to start a process as another user")
    process = subprocess.Popen(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}",
                                f"--groups={SOCKET_GROUP}", "sleep", "1000"])
    try:
        wait_until_exec(process.pid, b"sleep")
        yield process
    finally:
        process.kill()
        process.wait()


def wait_until_exec(pid, name, timeout=10.0):
    """Wait until *pid* has switched user and exec'd *name* (setpriv runs first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/comm", "rb") as comm:
            if comm.read().strip() == name:
                return
        time.sleep(0.01)
    raise AssertionError(f"pid {pid} did not exec {name!r} within {timeout}s")


def test_supplementary_groups_of_the_peer_count(client):
    peer = Peer(client.pid, NOBODY, NOBODY)
    assert peer.groups() == {NOBODY, SOCKET_GROUP}
    assert peer.allowed(SOCKET_GROUP) and not peer.allowed(SOCKET_GROUP + 1)


def test_a_pid_now_running_as_another_user_lends_no_groups(client):
    # The peer that connected was uid 1234; its pid now belongs to someone else.
    peer = Peer(client.pid, 1234, 1234)
    assert peer.groups() == {1234}
    assert not peer.allowed(SOCKET_GROUP)


def test_a_peer_that_is_gone_keeps_only_its_primary_group():
    peer = Peer(2**22 + 1, 1234, 777)  # above the largest pid_max: never a live pid
    assert peer.groups() == {777}
    assert peer.allowed(777) and not peer.allowed(778)


def test_root_is_always_allowed_and_nobody_else_without_a_group():
    assert Peer(1, 0, 0).allowed(None)
    assert not Peer(1, 1234, 1234).allowed(None)
