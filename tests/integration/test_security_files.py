"""Who may reach the daemon and its files (SPEC §1, §14): socket, state dir, logs, planted links."""

import glob
import grp
import json
import os
import pwd
import stat
import subprocess

import pytest

from tests.integration.accounts import gid, shared_dir
from tests.integration.harness import Kepler, wait_for
from tests.integration.test_dependencies import config

SECRET = "s3cr3t-4f9d"


@pytest.fixture
def grouped(kepler_root, accounts):
    """A daemon whose socket group is a throwaway group; ``member`` is in it (supplementary only)."""
    group = accounts.group("sock")
    kepler = Kepler(kepler_root, daemon_args=["--socket-group", group])
    kepler.group = group
    kepler.member = accounts.user("memb", groups=[group])
    kepler.outsider = accounts.user("outs")
    try:
        kepler.start_daemon()
        yield kepler
    finally:
        kepler.cleanup()


def as_user(user, *command):
    return subprocess.run(["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", *command],
                          capture_output=True, text=True, timeout=30)


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def config_dir(kepler):
    (found,) = glob.glob(os.path.join(kepler.state_dir, "configs", "*"))
    return found


def started_with_logs(kepler):
    """Start a service that logs (and a hook that does too); return the config's state dir."""
    config(kepler, {"web": {"command": ["sh", "-c", "echo hello; echo oops >&2; exec sleep 1000"],
                            "environment": [f"API_TOKEN={SECRET}"],
                            "hooks": {"pre_start": {"run": "echo hook"}}}})
    kepler.ctl("start", "-d")
    kepler.wait_status("web", "running")
    wait_for(lambda: "web | oops" in kepler.logs("--no-hook"), message="the service's output in its logs")
    return config_dir(kepler)


def test_socket_state_dir_and_pid_file_permissions(grouped):
    group_id = gid(grouped.group)
    state = os.stat(grouped.state_dir)
    assert (mode(grouped.state_dir), state.st_uid, state.st_gid) == (0o770, 0, group_id)
    sock = os.lstat(os.path.join(grouped.state_dir, "kepler.sock"))
    assert stat.S_ISSOCK(sock.st_mode)
    assert (stat.S_IMODE(sock.st_mode), sock.st_uid, sock.st_gid) == (0o660, 0, group_id)
    pid_file = os.path.join(grouped.state_dir, "kepler.pid")
    assert mode(pid_file) & 0o007 == 0 and os.stat(pid_file).st_uid == 0
    with open(pid_file) as file:
        assert file.read().strip() == str(grouped.daemon.pid)
    with open(f"/proc/{grouped.daemon.pid}/status") as status:
        assert "Umask:\t0007\n" in status.read()


def test_state_and_log_files_are_never_world_readable(grouped):
    root = started_with_logs(grouped)
    grouped.ctl("daemon", "stop")  # state.json rewritten, logs closed (and kept: no on_stop retention)
    entries = [os.path.join(top, name) for top, dirs, files in os.walk(grouped.state_dir) for name in dirs + files]
    assert os.path.join(root, "logs", "web.stdout.log") in entries
    assert os.path.join(root, "logs", "web.pre_start.stdout.log") in entries
    loose = {path: oct(mode(path)) for path in entries if mode(path) & 0o007}
    assert not loose, f"world-accessible entries in the state dir: {loose}"
    files = [path for path in entries if stat.S_ISREG(os.lstat(path).st_mode)]
    assert {oct(mode(path)) for path in files} <= {"0o660", "0o640", "0o600"}


def test_a_user_outside_the_group_cannot_read_state_logs_or_secrets(grouped):
    root = started_with_logs(grouped)
    for path in (grouped.state_dir, os.path.join(root, "snapshot.json"), os.path.join(root, "state.json"),
                 os.path.join(root, "logs", "web.stdout.log")):
        result = as_user(grouped.outsider, "cat", path)
        assert result.returncode != 0 and "Permission denied" in result.stderr, path
        assert SECRET not in result.stdout


def test_a_service_user_cannot_read_the_daemons_files(kepler_root, accounts):
    kepler = Kepler(kepler_root)
    try:
        kepler.start_daemon()
        out = shared_dir(kepler.workdir)
        snooper = f"cat {kepler.state_dir}/configs/*/snapshot.json > {out}/leak 2>&1; echo $? > {out}/rc"
        config(kepler, {"snoop": {"command": ["sh", "-c", snooper], "user": accounts.user("snoo")},
                        "holder": {"command": ["sleep", "1000"], "environment": [f"API_TOKEN={SECRET}"]}})
        kepler.ctl("start", "-d")
        kepler.wait_status("snoop", "exited")
        with open(f"{out}/rc") as rc, open(f"{out}/leak") as leak:
            assert rc.read().strip() != "0"
            assert SECRET not in leak.read()
    finally:
        kepler.cleanup()


def test_a_supplementary_member_is_served_and_an_outsider_refused_with_a_clear_message(grouped):
    # A member through the group database only: the socket group is not their primary group.
    assert pwd.getpwnam(grouped.member).pw_gid != gid(grouped.group)
    assert grouped.member in grp.getgrnam(grouped.group).gr_mem
    served = grouped.ctl("ps", "--all", user=grouped.member, check=False)
    assert served.returncode == 0, served.stderr
    refused = grouped.ctl("ps", "--all", user=grouped.outsider, check=False)
    assert refused.returncode == 1
    assert f"permission denied: user {grouped.outsider} is not in group {grouped.group}" in refused.stderr


def test_the_daemon_itself_checks_supplementary_groups_of_every_peer(grouped):
    # With the file permissions wide open, only the SO_PEERCRED check stands in the way.
    os.chmod(grouped.state_dir, 0o777)
    os.chmod(os.path.join(grouped.state_dir, "kepler.sock"), 0o666)
    served = grouped.ctl("ps", "--all", user=grouped.member, check=False)
    assert served.returncode == 0, served.stderr
    refused = grouped.ctl("ps", "--all", user=grouped.outsider, check=False)
    message = f"permission denied: user {grouped.outsider} is not in group {grouped.group}"
    assert refused.returncode == 1 and message in refused.stderr
    wait_for(lambda: message in grouped.read_daemon_log(), message="the refusal in the daemon's log")


def plant(kepler, link_name, make):
    """Plant something at ``logs/<link_name>`` of the only config; return the victim file."""
    victim = os.path.join(kepler.root, "victim")
    with open(victim, "w") as file:
        file.write("precious\n")
    path = os.path.join(config_dir(kepler), "logs", link_name)
    if os.path.lexists(path):
        os.unlink(path)
    make(victim, path)
    return victim


def read(path):
    with open(path) as file:
        return file.read()


@pytest.mark.parametrize("make", [os.symlink, os.link, lambda _victim, path: os.mkfifo(path)],
                         ids=["symlink", "hardlink", "fifo"])
def test_a_file_planted_at_a_log_path_is_replaced_not_written_through(kepler, make):
    config(kepler, {"web": {"command": ["sh", "-c", "echo run $$; exec sleep 1000"]}})
    kepler.ctl("start", "-d")
    kepler.wait_status("web", "running")
    log_file = os.path.join(config_dir(kepler), "logs", "web.stdout.log")
    wait_for(lambda: os.path.exists(log_file), message="the first run's log")
    # The daemon opens a log file once per run of the daemon: plant while it is down.
    kepler.stop_daemon()
    victim = plant(kepler, "web.stdout.log", make)
    kepler.start_daemon()
    pid = kepler.wait_status("web", "running")["pid"]
    wait_for(lambda: stat.S_ISREG(os.lstat(log_file).st_mode), message="the planted file to be replaced")
    wait_for(lambda: f"web | run {pid}" in kepler.logs(), message="the second run's output in its logs")
    assert read(victim) == "precious\n"
    assert os.lstat(log_file).st_nlink == 1
    assert "is not a regular file of its own: replacing it" in kepler.read_daemon_log()


def _planted(make, target, path):
    try:
        make(target, path)
    except FileExistsError:
        return False
    return True


@pytest.mark.parametrize("make", [os.symlink, os.link], ids=["symlink", "hardlink"])
def test_state_json_is_never_written_through_a_planted_temp_file(kepler, make):
    config(kepler, {"web": {"command": ["sleep", "1000"]}})
    kepler.ctl("start", "-d")
    kepler.wait_status("web", "running")
    state_json = os.path.join(config_dir(kepler), "state.json")
    victim = os.path.join(kepler.root, "victim")
    with open(victim, "w") as file:
        file.write("precious\n")
    # The daemon's own temp file exists while it writes state.json: plant ours between two writes.
    wait_for(lambda: _planted(make, victim, state_json + ".tmp"), message="a moment between two writes")
    kepler.ctl("stop")
    wait_for(lambda: json.loads(read(state_json))["services"]["web"]["status"] == "stopped",
             message="state.json to say stopped")
    assert read(victim) == "precious\n"
    assert not os.path.islink(state_json) and os.stat(state_json).st_nlink == 1
