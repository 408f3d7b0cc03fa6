"""sd_notify with the standard library: addresses, messages on a real datagram socket, the watchdog."""

import os
import socket
import uuid

from keplerd.notify import Notifier, socket_address, watchdog_interval


def _listener(address):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(5)
    return sock


def test_addresses_are_paths_or_abstract_names():
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@kepler/notify") == b"\0kepler/notify"
    assert socket_address("") is None
    assert socket_address("vsock:2:1234") is None


def test_messages_reach_a_socket_in_the_abstract_namespace():
    name = f"@kepler-test-{uuid.uuid4().hex}"
    with _listener(socket_address(name)) as listener:
        environ = {"NOTIFY_SOCKET": name}
        notifier = Notifier.from_environment(environ)
        assert "NOTIFY_SOCKET" not in environ, "children must not inherit the socket"
        notifier.ready("2 config(s) loaded")
        notifier.watchdog()
        notifier.stopping()
        received = [listener.recv(4096).decode() for _ in range(3)]
    assert received[0].splitlines() == ["READY=1", "STATUS=2 config(s) loaded"]
    assert received[1] == "WATCHDOG=1"
    assert received[2].splitlines()[0] == "STOPPING=1"


def test_messages_reach_a_socket_at_a_path(tmp_path):
    path = str(tmp_path / "notify")
    with _listener(path) as listener:
        Notifier(path).reloading()
        lines = listener.recv(4096).decode().splitlines()
    assert lines[0] == "RELOADING=1" and lines[1].startswith("MONOTONIC_USEC=")


def test_without_a_socket_nothing_is_sent_and_a_dead_socket_is_not_fatal(tmp_path):
    Notifier().ready("nobody listens")
    gone = Notifier(str(tmp_path / "missing"))
    gone.ready("systemd went away")
    gone.watchdog()


def test_the_watchdog_pings_at_half_the_interval_and_only_for_its_pid():
    environ = {"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}
    assert watchdog_interval(environ) == 15.0
    assert environ == {}
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, pid=42) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({}) is None
