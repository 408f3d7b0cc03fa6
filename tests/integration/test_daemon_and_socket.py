"""The daemon process and its socket: permissions, peers, garbage, a second daemon."""

import grp
import json
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import uuid

import pytest

from tests.integration.harness import Kepler, wait_for


def _raw_connect(kepler):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(os.path.join(kepler.state_dir, "kepler.sock"))
    return sock


def _frame(message):
    body = json.dumps(message).encode()
    return struct.pack(">I", len(body)) + body


def _read_frame(sock):
    header = b""
    while len(header) < 4:
        chunk = sock.recv(4 - len(header))
        if not chunk:
            return None
        header += chunk
    (length,) = struct.unpack(">I", header)
    body = b""
    while len(body) < length:
        chunk = sock.recv(length - len(body))
        if not chunk:
            return None
        body += chunk
    return json.loads(body)


def _hello(sock, version=1):
    sock.sendall(_frame({"id": 1, "request": {"type": "hello", "version": version}}))
    return _read_frame(sock)


def test_state_dir_and_socket_permissions_without_the_kepler_group(kepler):
    if _group_exists("kepler"):
        pytest.skip("a kepler group exists on this machine; the 0660 case is tested with a custom group")
    assert stat.S_IMODE(os.stat(kepler.state_dir).st_mode) == 0o770
    sock = os.stat(os.path.join(kepler.state_dir, "kepler.sock"))
    assert stat.S_IMODE(sock.st_mode) == 0o600 and sock.st_uid == 0
    assert "is root-only (0600)" in kepler.read_daemon_log()
    assert open(os.path.join(kepler.state_dir, "kepler.pid")).read().strip() == str(kepler.daemon.pid)


def _group_exists(name):
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


@pytest.fixture
def throwaway_user_and_group():
    """A group for the socket, a member (supplementary only) and a non-member."""
    tag = uuid.uuid4().hex[:6]
    group, member, outsider = f"ktg{tag}", f"ktm{tag}", f"kto{tag}"
    subprocess.run(["groupadd", group], check=True)
    try:
        subprocess.run(["useradd", "-M", "-G", group, member], check=True)
        subprocess.run(["useradd", "-M", outsider], check=True)
        yield group, member, outsider
    finally:
        for user in (member, outsider):
            subprocess.run(["userdel", user], capture_output=True)
        subprocess.run(["groupdel", group], capture_output=True)


def test_socket_group_members_are_served_and_others_refused(kepler_root, throwaway_user_and_group):
    group, member, outsider = throwaway_user_and_group
    kepler = Kepler(kepler_root, daemon_args=["--socket-group", group])
    try:
        kepler.start_daemon()
        sock = os.stat(os.path.join(kepler.state_dir, "kepler.sock"))
        assert stat.S_IMODE(sock.st_mode) == 0o660 and sock.st_gid == grp.getgrnam(group).gr_gid
        # The state dir is 0770 root:<group>, so members can reach the socket inside it.
        assert os.stat(kepler.state_dir).st_gid == grp.getgrnam(group).gr_gid
        ok = kepler.ctl("ps", "--all", user=member, check=False)
        assert ok.returncode == 0, ok.stderr
        refused = kepler.ctl("ps", "--all", user=outsider, check=False)
        assert refused.returncode == 1
        assert "permission denied" in refused.stderr
    finally:
        kepler.cleanup()


def test_peer_credentials_refuse_a_non_member_even_if_the_socket_is_open(kepler_root, throwaway_user_and_group):
    group, member, outsider = throwaway_user_and_group
    kepler = Kepler(kepler_root, daemon_args=["--socket-group", group])
    try:
        kepler.start_daemon()
        # Open the file permissions wide: the SO_PEERCRED check alone must still refuse.
        os.chmod(os.path.join(kepler.state_dir, "kepler.sock"), 0o666)
        os.chmod(kepler.state_dir, 0o777)
        refused = kepler.ctl("ps", "--all", user=outsider, check=False)
        assert refused.returncode == 1
        assert f"permission denied: user {outsider} is not in group {group}" in refused.stderr
        assert f"user {outsider} is not in group {group}" in kepler.read_daemon_log()
    finally:
        kepler.cleanup()


def test_garbage_bytes_get_an_error_and_others_are_still_served(kepler):
    garbage = _raw_connect(kepler)
    assert _hello(garbage)["response"]["ok"] is True
    body = b"this is not json"
    garbage.sendall(struct.pack(">I", len(body)) + body)
    answer = _read_frame(garbage)
    assert answer["response"]["ok"] is False and "invalid JSON" in answer["response"]["error"]
    # The same connection still works after a bad frame.
    garbage.sendall(_frame({"id": 2, "request": {"type": "ping"}}))
    assert _read_frame(garbage) == {"id": 2, "response": {"ok": True, "pong": True}}
    assert kepler.ctl("daemon", "status").returncode == 0
    garbage.close()


def test_a_huge_length_prefix_closes_that_connection_only(kepler):
    bad = _raw_connect(kepler)
    bad.sendall(struct.pack(">I", 100 * 1024 * 1024) + b"x" * 100)
    answer = _read_frame(bad)
    assert answer["response"]["ok"] is False and "exceeds" in answer["response"]["error"]
    assert _read_frame(bad) is None, "the connection is closed after unparseable framing"
    bad.close()
    assert kepler.ctl("daemon", "status").returncode == 0


def test_random_bytes_before_hello_do_not_disturb_the_daemon(kepler):
    noisy = _raw_connect(kepler)
    noisy.sendall(os.urandom(4096))
    noisy.close()
    assert kepler.ctl("daemon", "status").returncode == 0
    assert kepler.daemon.poll() is None


def test_unknown_requests_and_wrong_versions_get_errors(kepler):
    sock = _raw_connect(kepler)
    assert _hello(sock)["response"]["ok"] is True
    sock.sendall(_frame({"id": 7, "request": {"type": "launch_rockets"}}))
    assert _read_frame(sock) == {"id": 7, "response": {"ok": False, "error": "unknown request type: 'launch_rockets'"}}
    sock.close()
    old = _raw_connect(kepler)
    answer = _hello(old, version=999)
    assert answer["response"]["ok"] is False and "version mismatch" in answer["response"]["error"]
    old.close()


def test_requests_are_multiplexed_on_one_connection(kepler):
    kepler.config("services:\n  web:\n    command: [sleep, '1000']\n")
    kepler.ctl("start", "-d")
    kepler.wait_status("web", "running")
    sock = _raw_connect(kepler)
    _hello(sock)
    config = os.path.join(kepler.workdir, "kepler.yaml")
    sock.sendall(_frame({"id": 10, "request": {"type": "ps", "config": config}}) +
                 _frame({"id": 11, "request": {"type": "ping"}}) +
                 _frame({"id": 12, "request": {"type": "daemon_status"}}))
    answers = {}
    while len(answers) < 3:
        frame = _read_frame(sock)
        answers[frame["id"]] = frame["response"]
    assert answers[10]["services"][0]["name"] == "web"
    assert answers[11]["pong"] is True and answers[12]["pid"] == kepler.daemon.pid
    sock.close()


def test_a_second_daemon_on_the_same_state_dir_refuses_to_start(kepler):
    second = subprocess.run([sys.executable, "-m", "keplerd"], env=kepler.env(), capture_output=True,
                            text=True, timeout=30)
    assert second.returncode == 1
    assert "already" in second.stderr and "running" in second.stderr
    assert kepler.ctl("daemon", "status").returncode == 0
    assert open(os.path.join(kepler.state_dir, "kepler.pid")).read().strip() == str(kepler.daemon.pid)


def test_keplerd_refuses_to_run_without_root(kepler_root):
    result = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                             sys.executable, "-m", "keplerd"], capture_output=True, text=True, timeout=30,
                            env={"KEPLER_DAEMON_PATH": os.path.join(kepler_root, "s"), "PATH": os.environ["PATH"]})
    assert result.returncode == 1
    assert "must run as root" in result.stderr


def test_sigterm_stops_services_and_removes_socket_and_pid(kepler):
    kepler.config("services:\n  web:\n    command: [sleep, '1000']\n")
    kepler.ctl("start", "-d")
    pid = kepler.wait_status("web", "running")["pid"]
    kepler.daemon.send_signal(signal.SIGTERM)
    assert kepler.daemon.wait(30) == 0
    assert not os.path.exists(os.path.join(kepler.state_dir, "kepler.sock"))
    assert not os.path.exists(os.path.join(kepler.state_dir, "kepler.pid"))
    wait_for(lambda: not _alive(pid), message="the service to be gone")


def test_cli_is_unreachable_without_a_daemon(kepler_stopped):
    kepler_stopped.config("services:\n  web:\n    command: [sleep, '1000']\n")
    result = kepler_stopped.ctl("ps", check=False)
    assert result.returncode == 2 and "not running" in result.stderr
    assert kepler_stopped.ctl("daemon", "status", check=False).returncode == 1


def test_daemon_stop_then_start_brings_back_what_was_up(kepler):
    kepler.config("""
        services:
          up:
            command: ["sleep", "1000"]
          down:
            command: ["sleep", "1000"]
    """)
    kepler.ctl("start", "-d")
    before = kepler.wait_status("up", "running")
    kepler.wait_status("down", "running")
    kepler.ctl("stop", "down")
    kepler.ctl("daemon", "stop")
    assert kepler.daemon.wait(30) == 0
    assert not _alive(before["pid"])
    kepler.start_daemon()
    after = kepler.wait_status("up", "running")
    assert after["pid"] != before["pid"]
    assert kepler.status("down") == "stopped"


def test_keplerctl_ps_does_not_import_heavy_modules():
    code = ("import sys; from keplerd.cli import main, views, lifecycle, client, output; "
            "heavy = [m for m in ('gevent', 'lupa', 'marshmallow', 'yaml', 'psutil') if m in sys.modules]; "
            "print(','.join(heavy))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_the_daemon_imports_no_config_machinery_no_plugins_and_no_openssl():
    # OpenSSL (ssl, or hashlib's _hashlib, which secrets and hmac load) is ~4 MiB of the daemon's RSS;
    # shutil loads bz2 and lzma (~0.3 MiB), which only a prune needs.
    code = ("import sys; import keplerd.daemon, keplerd.bakery, keplerd.supervise.registry, "
            "keplerd.supervise.lifecycle; "
            "heavy = [m for m in ('lupa', 'marshmallow', 'yaml', 'ssl', '_hashlib', 'importlib.metadata', 'lzma') "
            "if m in sys.modules]; "
            "print(','.join(heavy))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_the_daemon_starts_without_inspect_or_the_compression_modules():
    # dataclasses imports inspect, ast and dis (1.1 MiB), and pprint (the hub's default formatter of a crashed
    # greenlet's context) imports dataclasses; argparse imports shutil for its help's width, which loads bz2
    # and lzma (0.44 MiB). Resident for the daemon's whole life.
    code = ("import sys; import keplerd.daemon, gevent; from keplerd import settings; "
            "settings.build_parser().parse_args(['--state-dir', '/nonexistent']); gevent.get_hub(); "
            "print(','.join(m for m in ('dataclasses', 'inspect', 'pprint', 'shutil', 'lzma', 'bz2') "
            "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_a_running_daemon_has_no_compression_library_loaded(kepler):
    kepler.config("services:\n  web:\n    command: [sleep, '1000']\n")
    kepler.ctl("start", "-d")
    kepler.wait_status("web", "running")
    kepler.ctl("ps")
    with open(f"/proc/{kepler.daemon.pid}/maps") as maps:
        libraries = {line.split()[-1].rsplit("/", 1)[-1] for line in maps if "/" in line}
    assert not [name for name in libraries if name.startswith(("_lzma", "_bz2", "liblzma", "libbz2"))], libraries


def test_a_bake_with_lua_leaves_no_lua_or_yaml_library_in_the_daemon(kepler):
    kepler.config("services:\n  web:\n    command: !lua return {'sleep', '1000'}\n")
    kepler.ctl("start", "-d")
    kepler.wait_status("web", "running")
    with open(f"/proc/{kepler.daemon.pid}/maps") as maps:
        libraries = {line.split()[-1].rsplit("/", 1)[-1] for line in maps if "/" in line}
    assert not [name for name in libraries
                if name.startswith(("lua", "_yaml", "_ssl", "libssl", "_hashlib", "libcrypto"))], libraries


def _alive(pid):
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
