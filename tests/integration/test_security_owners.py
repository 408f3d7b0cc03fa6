"""Who may do what (SPEC §21): members of the socket group own their configs and are not root.

Every test runs the real keplerctl as throwaway members of a throwaway socket group.
"""

import json
import os
import signal
import subprocess

import pytest

from tests.integration.accounts import gid, shared_dir, uid
from tests.integration.harness import KEPLERCTL, Kepler, wait_for
from tests.integration.test_security_users import identity, user_groups, who

SECRET = "s3cr3t-9c1e"


@pytest.fixture
def members(kepler_root, accounts):
    """A daemon whose socket group has members ``alice`` and ``bob``; ``carol`` is a plain user.

    keplerd.conf lets alice run services as carol (``allow_run_as``). Each member
    has a directory of its own for its config.
    """
    group, extra = accounts.group("sock"), accounts.group("extr")
    kepler = Kepler(kepler_root, daemon_args=["--socket-group", group])
    kepler.people = {"alice": accounts.user("alic", groups=[group, extra]), "bob": accounts.user("bob", groups=[group]),
                     "carol": accounts.user("caro"), "extra": extra, "group": group}
    with open(os.path.join(kepler_root, "keplerd.conf"), "w") as conf:
        conf.write(f"autostart_dir: {os.path.join(kepler_root, 'conf.d')}\n"
                   f"allow_run_as: {{{kepler.people['alice']}: [{kepler.people['carol']}]}}\n")
    for who_ in ("alice", "bob"):
        directory = os.path.join(kepler.workdir, who_)
        os.makedirs(directory)
        os.chown(directory, uid(kepler.people[who_]), gid(kepler.people[who_]))
    try:
        kepler.start_daemon()
        yield kepler
    finally:
        kepler.cleanup()


def write_config(kepler, owner, services, **settings):
    """Write *owner*'s config (JSON is YAML) in its directory; return its path."""
    document = {"services": services, **({"kepler": settings} if settings else {})}
    path = kepler.write("kepler.yaml", json.dumps(document), directory=os.path.join(kepler.workdir, owner))
    os.chown(path, uid(kepler.people[owner]), gid(kepler.people[owner]))
    return path


def ctl(kepler, who_, *args, check=False, prefix=()):
    """Run keplerctl as member *who_* (alice, bob or root) from its directory."""
    if who_ == "root":
        return kepler.ctl(*args, cwd=os.path.join(kepler.workdir, "alice"), check=check)
    user = kepler.people[who_]
    command = [*prefix, "setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", KEPLERCTL, *args]
    result = subprocess.run(command, cwd=os.path.join(kepler.workdir, who_), env=kepler.env(),
                            capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(f"keplerctl {' '.join(args)} as {who_} failed:\n{result.stderr}\n"
                             f"{kepler.read_daemon_log()[-3000:]}")
    return result


def ps(kepler, who_, *args):
    return {row["name"]: row for row in json.loads(ctl(kepler, who_, "ps", "--json", *args, check=True).stdout)}


def wait_running(kepler, who_, name):
    return wait_for(lambda: ps(kepler, who_).get(name, {}).get("status") in ("running", "healthy") and
                    ps(kepler, who_)[name], message=f"{name} to run")


def test_a_members_services_hooks_and_probes_run_as_the_member(members):
    out, alice = shared_dir(members.workdir), members.people["alice"]
    write_config(members, "alice", {"web": {
        "command": who(out, "web"),
        "hooks": {"pre_start": {"command": who(out, "pre_start", then="true")}},
        "healthcheck": {"test": who(out, "probe", then="true"), "interval": "1s"}}},
        hooks={"pre_start": {"command": who(out, "global", then="true")}})
    ctl(members, "alice", "start", "-d", check=True)
    row = wait_running(members, "alice", "web")
    assert row["owner"] == alice
    groups = user_groups(alice, gid(alice))
    assert gid(members.people["group"]) in groups and gid(members.people["extra"]) in groups
    for tag in ("web", "pre_start", "probe", "global"):
        assert identity(out, tag)[:3] == (uid(alice), gid(alice), groups), tag
    assert 0 not in identity(out, "web")[2]
    # exec runs as the service runs: as alice, not as root.
    assert ctl(members, "alice", "exec", "web", "--", "id", "-u", check=True).stdout == f"{uid(alice)}\n"
    inspected = json.loads(ctl(members, "alice", "inspect", check=True).stdout)
    assert (inspected["config"]["owner"], inspected["config"]["owner_uid"]) == (alice, uid(alice))


def test_another_member_is_refused_every_request_about_the_config_and_sees_none(members):
    path = write_config(members, "alice", {"web": {"command": ["sleep", "1000"]}})
    ctl(members, "alice", "start", "-d", check=True)
    wait_running(members, "alice", "web")
    denied = f"permission denied: {path} belongs to {members.people['alice']}"
    for request in (["ps"], ["start", "-d"], ["restart"], ["stop"], ["inspect"], ["logs"], ["recreate"],
                    ["stop", "--clean"], ["scale", "web=2"], ["signal", "HUP"], ["restart", "--rolling"],
                    ["exec", "web", "--", "true"]):
        result = ctl(members, "bob", request[0], "--file", path, *request[1:])
        assert result.returncode != 0 and denied in result.stderr, (request, result.stderr)
    assert ps(members, "bob", "--all") == {}
    assert json.loads(ctl(members, "bob", "daemon", "status", "--json", check=True).stdout)["configs"] == []
    assert denied in members.read_daemon_log()
    # Nothing bob asked was done, and the owner and root still see and act on it.
    assert ps(members, "alice")["web"]["status"] == "running"
    assert set(ps(members, "root", "--all")) == {"web"}
    ctl(members, "root", "stop", "--file", path, check=True)
    assert ps(members, "alice")["web"]["status"] == "stopped"


@pytest.mark.parametrize("service, refusal", [
    ({"user": "root"}, "services.web.user: only root may run services as root (caller: {alice})"),
    ({"user": "0"}, "services.web.user: only root may run services as root (caller: {alice})"),
    ({"user": "{bob}"}, "services.web.user: only root may run services as {bob} (caller: {alice})"),
    ({"group": "root"}, "services.web.group: only root may run services as group root (caller: {alice}, "
                        "not a member)"),
    ({"hooks": {"post_start": {"run": "true", "user": "root"}}},
     "services.web.hooks.post_start.user: only root may run hooks as root (caller: {alice})"),
], ids=["root", "uid-0", "another-member", "group", "hook"])
def test_a_member_may_not_name_another_user_or_group(members, service, refusal):
    people = members.people
    service = json.loads(json.dumps(service).replace("{bob}", people["bob"]))
    path = write_config(members, "alice", {"web": {"command": ["sleep", "1000"], **service}})
    result = ctl(members, "alice", "start", "-d")
    assert result.returncode != 0
    assert "kepler.yaml: " + refusal.format(alice=people["alice"], bob=people["bob"]) in result.stderr
    assert ps(members, "root", "--all") == {}, "a refused config is not baked"
    assert not os.path.exists(members.inspect_path(os.path.relpath(path, members.workdir)))


def test_config_check_by_a_member_says_what_the_bake_would_refuse(members):
    write_config(members, "alice", {"web": {"command": ["sleep", "1000"], "user": "root"}})
    checked = ctl(members, "alice", "config", "check")
    assert checked.returncode == 1
    assert (f"kepler.yaml: services.web.user: only root may run services as root "
            f"(caller: {members.people['alice']})") in checked.stderr
    assert ctl(members, "root", "config", "check").returncode == 0


def test_allow_run_as_lets_a_member_run_as_the_listed_user_only(members):
    out, carol = shared_dir(members.workdir), members.people["carol"]
    write_config(members, "alice", {"web": {"command": who(out, "web"), "user": carol}})
    ctl(members, "alice", "start", "-d", check=True)
    assert identity(out, "web")[:2] == (uid(carol), gid(carol))
    # bob has no allow_run_as entry: the same target is refused to him.
    write_config(members, "bob", {"web": {"command": ["sleep", "1000"], "user": carol}})
    refused = ctl(members, "bob", "start", "-d")
    assert f"only root may run services as {carol} (caller: {members.people['bob']})" in refused.stderr


def test_a_reload_applies_a_new_allow_run_as(members):
    people = members.people
    write_config(members, "bob", {"web": {"command": ["sleep", "1000"], "user": people["carol"]}})
    assert ctl(members, "bob", "start", "-d").returncode != 0
    with open(os.path.join(members.root, "keplerd.conf"), "w") as conf:
        conf.write(f"autostart_dir: {os.path.join(members.root, 'conf.d')}\n"
                   f"allow_run_as: {{{people['bob']}: [{people['carol']}]}}\n")
    members.daemon.send_signal(signal.SIGHUP)
    wait_for(lambda: ctl(members, "bob", "start", "-d").returncode == 0, message="the reload to grant carol to bob")
    assert wait_running(members, "bob", "web")["owner"] == people["bob"]


def test_a_recreate_by_root_makes_the_config_roots(members):
    path = write_config(members, "alice", {"web": {"command": ["sleep", "1000"]}})
    ctl(members, "alice", "start", "-d", check=True)
    ctl(members, "alice", "stop", check=True)
    ctl(members, "bob", "recreate", "--file", path)
    assert ps(members, "alice")["web"]["owner"] == members.people["alice"], "bob's recreate changed nothing"
    ctl(members, "root", "recreate", "--file", path, check=True)
    assert ps(members, "root", "--all")["web"]["owner"] == "root"
    refused = ctl(members, "alice", "start", "-d")
    assert f"permission denied: {path} belongs to root" in refused.stderr


def test_limits_above_the_members_own_hard_limits_are_refused(members):
    path = write_config(members, "alice", {"web": {"command": ["sleep", "1000"], "limits": {"max_fds": 1024}}})
    capped = ("prlimit", "--nofile=256:512")
    refused = ctl(members, "alice", "start", "-d", prefix=capped)
    assert refused.returncode != 0
    assert (f"kepler.yaml: services.web.limits.max_fds: 1024 is above the hard limit of "
            f"{members.people['alice']} (512)") in refused.stderr
    write_config(members, "alice", {"web": {"command": ["sleep", "1000"], "limits": {"max_fds": 512}}})
    ctl(members, "alice", "start", "-d", prefix=capped, check=True)
    pid = wait_running(members, "alice", "web")["pid"]
    with open(f"/proc/{pid}/limits") as limits:
        assert any(line.startswith("Max open files") and line.split()[3:5] == ["512", "512"] for line in limits)
    assert path


def test_a_member_cannot_read_a_root_only_file_through_a_config(members):
    secret = os.path.join(members.root, "secret.env")
    with open(secret, "w") as file:
        file.write(f"TOKEN={SECRET}\n")
    os.chmod(secret, 0o600)
    write_config(members, "alice", {"web": {"command": ["sleep", "1000"], "env_file": secret}})
    refused = ctl(members, "alice", "start", "-d")
    assert refused.returncode != 0 and "Permission denied" in refused.stderr, refused.stderr
    assert SECRET not in refused.stdout + refused.stderr
    # Root may: the file is read as root for root's configs.
    write_config(members, "alice", {"web": {"command": ["sleep", "1000"], "env_file": secret}})
    ctl(members, "root", "start", "-d", check=True)


def test_a_members_prune_removes_only_its_own_configs(members):
    mine = write_config(members, "alice", {"web": {"command": ["sleep", "1000"]}})
    roots = write_config(members, "bob", {"db": {"command": ["sleep", "1000"]}})
    ctl(members, "alice", "start", "-d", check=True)
    ctl(members, "alice", "stop", check=True)
    members.ctl("start", "-d", cwd=os.path.dirname(roots))
    members.ctl("stop", cwd=os.path.dirname(roots))
    pruned = json.loads(ctl(members, "alice", "prune", "--json", check=True).stdout)
    assert [entry["config"] for entry in pruned] == [mine]
    assert set(ps(members, "root", "--all")) == {"db"}


def test_only_root_may_stop_the_daemon(members):
    refused = ctl(members, "alice", "daemon", "stop")
    assert refused.returncode != 0 and "permission denied: only root may stop the daemon" in refused.stderr
    assert members.daemon.poll() is None


def test_a_config_baked_before_owners_existed_is_roots(members):
    path = write_config(members, "alice", {"web": {"command": ["sleep", "1000"], "user": "root"}})
    ctl(members, "root", "start", "-d", check=True)
    assert ps(members, "root")["web"]["owner"] == "root"
    members.ctl("daemon", "stop")
    snapshot_path = os.path.join(members.inspect_path(os.path.join("alice", "kepler.yaml")), "snapshot.json")
    with open(snapshot_path) as file:
        snapshot = json.load(file)
    del snapshot["owner"]
    with open(snapshot_path, "w") as file:
        json.dump(snapshot, file)
    members.start_daemon()
    wait_running(members, "root", "web")
    refused = ctl(members, "alice", "stop", "--file", path)
    assert f"permission denied: {path} belongs to root" in refused.stderr
    assert ps(members, "alice", "--all") == {}
    assert ps(members, "root")["web"]["status"] == "running"


def test_a_member_may_not_signal_its_bake_worker(members):
    """The bake runs with the member's effective ids only: its real and saved uid stay root's."""
    path = write_config(members, "alice", {"web": {"command": ["sleep", "1000"]}})
    with open(path, "w") as file:  # Lua that keeps the worker busy long enough to be looked at
        file.write("services:\n  web:\n    command: ['sleep', !lua 'local t = os.clock(); "
                   "while os.clock() - t < 1.5 do end; return \"1000\"']\n")
    started = subprocess.Popen(
        ["setpriv", f"--reuid={members.people['alice']}", f"--regid={members.people['alice']}", "--init-groups",
         KEPLERCTL, "start", "-d"], cwd=os.path.join(members.workdir, "alice"), env=members.env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        alice = str(uid(members.people["alice"]))
        # The worker takes alice's effective uid once it has read its request.
        worker = wait_for(lambda: _bake_worker(members.daemon.pid, alice), message="the bake worker as alice")
        with open(f"/proc/{worker}/status") as status:
            ids = {line.split(":")[0]: line.split()[1:] for line in status if line.startswith(("Uid", "Gid"))}
        assert ids["Uid"][:3] == ["0", alice, "0"]
        as_alice = ["setpriv", f"--reuid={members.people['alice']}", f"--regid={members.people['alice']}",
                    "--init-groups"]
        kill = subprocess.run([*as_alice, "kill", "-KILL", str(worker)], capture_output=True, text=True)
        assert kill.returncode != 0 and "not permitted" in kill.stderr, kill  # not "no such process"
        # Reading its memory or environment takes the same right as tracing it: refused.
        peek = subprocess.run([*as_alice, "cat", f"/proc/{worker}/environ"], capture_output=True, text=True)
        assert peek.returncode != 0 and "Permission denied" in peek.stderr, peek
    finally:
        _out, errors = started.communicate(timeout=60)
    assert started.returncode == 0, errors


def _bake_worker(daemon_pid, effective_uid):
    """Return the pid of the daemon's bake worker once it runs with *effective_uid*, else None."""
    import psutil

    for child in psutil.Process(daemon_pid).children(recursive=True):
        try:  # forked by the warm zygote, or started fresh: either way a keplerd.config process
            if "keplerd.config" in " ".join(child.cmdline()) and child.uids().effective == int(effective_uid):
                return child.pid
        except psutil.Error:
            continue
    return None
