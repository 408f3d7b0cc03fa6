"""Services, hooks and probes run as real unprivileged users (SPEC §4, §12)."""

import os

import pytest

from tests.integration.accounts import gid, shared_dir, uid
from tests.integration.harness import wait_for
from tests.integration.test_dependencies import config

# Records who the process is: ids, groups and the login variables it got.
WHO = "id -u > {out}/{tag}.uid; id -g > {out}/{tag}.gid; id -G > {out}/{tag}.groups; env > {out}/{tag}.env"


@pytest.fixture
def kepler(accounts, kepler):
    """The daemon, started after the accounts exist and stopped before they are deleted."""
    return kepler


@pytest.fixture
def people(accounts):
    """``alice`` (supplementary group ``extra``), ``bob``, and a group ``other`` nobody is in."""
    extra, other = accounts.group("extr"), accounts.group("othr")
    return {"alice": accounts.user("alic", groups=[extra]), "bob": accounts.user("bob"),
            "extra": extra, "other": other}


def who(out, tag, then="exec sleep 1000"):
    return ["sh", "-c", WHO.format(out=out, tag=tag) + f"; {then}"]


def identity(out, tag):
    """Wait for the files written by ``who`` and return ``(uid, gid, groups, env)``."""
    env_file = os.path.join(out, f"{tag}.env")
    wait_for(lambda: os.path.exists(env_file) and os.path.getsize(env_file) > 0, message=f"{tag} to say who it is")

    def read(suffix):
        with open(os.path.join(out, f"{tag}.{suffix}")) as file:
            return file.read()

    env = dict(line.split("=", 1) for line in read("env").splitlines() if "=" in line)
    return int(read("uid")), int(read("gid")), sorted(map(int, read("groups").split())), env


def proc_ids(pid):
    """Return the real/effective/saved/fs uids and gids and the groups of *pid*."""
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("Uid", "Gid", "Groups"):
                fields[key] = [int(item) for item in value.split()]
    return fields["Uid"], fields["Gid"], sorted(fields["Groups"])


def user_groups(name, primary):
    return sorted(set(os.getgrouplist(name, primary)))


def test_service_runs_as_named_user_with_its_groups_and_login_env(kepler, people):
    out, alice = shared_dir(kepler.workdir), people["alice"]
    config(kepler, {"web": {"command": who(out, "web"), "user": alice}})
    kepler.ctl("start", "-d")
    pid = kepler.wait_status("web", "running")["pid"]
    got_uid, got_gid, groups, env = identity(out, "web")
    assert (got_uid, got_gid) == (uid(alice), gid(alice))
    assert groups == user_groups(alice, gid(alice)) == sorted([gid(alice), gid(people["extra"])])
    assert 0 not in groups, "root's supplementary groups must not leak to the service"
    assert proc_ids(pid) == ([uid(alice)] * 4, [gid(alice)] * 4, groups)
    assert (env["USER"], env["LOGNAME"], env["HOME"], env["SHELL"]) == (alice, alice, f"/home/{alice}", "/bin/sh")


def test_login_env_never_overrides_the_services_own(kepler, people):
    out = shared_dir(kepler.workdir)
    config(kepler, {"web": {"command": who(out, "web"), "user": people["alice"],
                            "environment": ["HOME=/srv/web", "USER=webapp"]}})
    kepler.ctl("start", "-d")
    env = identity(out, "web")[3]
    assert (env["HOME"], env["USER"], env["LOGNAME"]) == ("/srv/web", "webapp", people["alice"])


def test_uid_gid_form_sets_both_ids(kepler, people):
    out, bob, other = shared_dir(kepler.workdir), people["bob"], people["other"]
    config(kepler, {"web": {"command": who(out, "web"), "user": f"{uid(bob)}:{gid(other)}"}})
    kepler.ctl("start", "-d")
    got_uid, got_gid, groups, env = identity(out, "web")
    assert (got_uid, got_gid) == (uid(bob), gid(other))
    assert groups == user_groups(bob, gid(other)) and 0 not in groups
    assert env["USER"] == bob


def test_bare_uid_is_looked_up_in_passwd(kepler, people):
    out, alice = shared_dir(kepler.workdir), people["alice"]
    config(kepler, {"web": {"command": who(out, "web"), "user": uid(alice)}})
    kepler.ctl("start", "-d")
    assert identity(out, "web")[:3] == (uid(alice), gid(alice), user_groups(alice, gid(alice)))


def test_group_overrides_the_users_primary_group(kepler, people):
    out, alice, other = shared_dir(kepler.workdir), people["alice"], people["other"]
    config(kepler, {"web": {"command": who(out, "web"), "user": alice, "group": other}})
    kepler.ctl("start", "-d")
    got_uid, got_gid, groups, _env = identity(out, "web")
    assert (got_uid, got_gid) == (uid(alice), gid(other))
    assert groups == user_groups(alice, gid(other)) == sorted([gid(other), gid(people["extra"])])


def test_user_and_group_are_expanded_from_the_environment(kepler, people):
    out = shared_dir(kepler.workdir)
    config(kepler, {"web": {"command": who(out, "web"), "user": "${RUN_AS}", "group": "${RUN_GROUP:-nogroup}",
                            "environment": [f"RUN_AS={people['bob']}", f"RUN_GROUP={people['other']}"]}})
    kepler.ctl("start", "-d")
    assert identity(out, "web")[:2] == (uid(people["bob"]), gid(people["other"]))


def test_hooks_inherit_the_service_user_unless_they_override_it(kepler, people):
    out, alice, bob = shared_dir(kepler.workdir), people["alice"], people["bob"]
    config(kepler, {"web": {"command": ["sleep", "1000"], "user": alice, "group": people["other"], "hooks": {
        "pre_start": {"command": who(out, "pre_start", then="true")},
        "post_start": {"command": who(out, "post_start", then="true"), "user": bob},
        "post_stop": {"command": who(out, "post_stop", then="true"), "user": "root"},
    }}})
    kepler.ctl("start", "-d")
    kepler.wait_status("web", "running")
    assert identity(out, "pre_start")[:2] == (uid(alice), gid(people["other"]))
    # A hook with its own user gets that user's primary group, not the service's group.
    assert identity(out, "post_start")[:3] == (uid(bob), gid(bob), user_groups(bob, gid(bob)))
    kepler.ctl("stop")
    root_uid, root_gid, _groups, root_env = identity(out, "post_stop")
    assert (root_uid, root_gid, root_env["HOME"]) == (0, 0, "/root")


def test_probe_runs_as_the_service_user(kepler, people):
    out, bob = shared_dir(kepler.workdir), people["bob"]
    config(kepler, {"web": {"command": ["sleep", "1000"], "user": bob,
                            "healthcheck": {"test": who(out, "probe", then="true"), "interval": "1s"}}})
    kepler.ctl("start", "-d")
    kepler.wait_status("web", "healthy")
    assert identity(out, "probe")[:3] == (uid(bob), gid(bob), user_groups(bob, gid(bob)))


def test_global_hooks_run_as_root(kepler, people):
    out = shared_dir(kepler.workdir)
    config(kepler, {"web": {"command": ["sleep", "1000"], "user": people["bob"]}},
           hooks={"pre_start": {"command": who(out, "global", then="true")}})
    kepler.ctl("start", "-d")
    assert identity(out, "global")[:2] == (0, 0)


@pytest.mark.parametrize("settings, error", [
    ({"user": "kt-no-such-user"}, "services.web.user: no such user 'kt-no-such-user'"),
    ({"group": "kt-no-such-group"}, "services.web.group: no such group 'kt-no-such-group'"),
    ({"user": "root:kt-no-such-group"}, "services.web.user: no such group 'kt-no-such-group'"),
    ({"user": "4294967296"}, "services.web.user: invalid user id: 4294967296"),
        ({"user": "ro\u0000ot"}, "services.web.user: no such user 'ro\\x00ot'"),  # shown escaped: one printable line
])
def test_unknown_user_or_group_is_a_located_bake_error(kepler, settings, error):
    config(kepler, {"web": {"command": ["sleep", "1000"], **settings},
                    "other": {"command": ["sleep", "1000"]}})
    result = kepler.ctl("start", "-d", check=False)
    assert result.returncode == 1 and f"keplerctl: kepler.yaml: {error}" in result.stderr, result.stderr
    check = kepler.ctl("config", "check", check=False)
    assert check.returncode == 1 and f"keplerctl: kepler.yaml: {error}" in check.stderr, check.stderr
    assert kepler.ctl("ps").stdout == "no services\n", "nothing was baked or started"
    assert kepler.ctl("daemon", "status").returncode == 0


@pytest.mark.parametrize("settings, reason", [
    ({"command": ["echo", "a\u0000b"]}, "cannot start echo: embedded null byte"),
    ({"environment": ["KEY=a\u0000b"]}, "cannot start sleep: embedded null byte"),
], ids=["argument", "environment"])
def test_a_nul_byte_fails_the_service_instead_of_its_supervisor(kepler, settings, reason):
    config(kepler, {"web": {"command": ["sleep", "1000"], **settings}})
    kepler.ctl("start", "-d")
    kepler.wait_status("web", "failed")
    assert kepler.inspect("web")["services"]["web"]["state"]["reason"] == reason


def test_an_unknown_hook_user_is_a_located_bake_error(kepler):
    config(kepler, {"web": {"command": ["sleep", "1000"],
                            "hooks": {"pre_start": {"run": "true", "user": "kt-no-such-user"}}}})
    result = kepler.ctl("start", "-d", check=False)
    assert result.returncode == 1
    assert "kepler.yaml: services.web.hooks.pre_start.user: no such user 'kt-no-such-user'" in result.stderr


def test_a_user_who_cannot_enter_the_working_dir_fails_the_service(kepler, people):
    private = os.path.join(kepler.workdir, "private")
    os.makedirs(private, mode=0o700)
    config(kepler, {"web": {"command": ["sleep", "1000"], "user": people["bob"], "working_dir": private}})
    kepler.ctl("start", "-d")
    kepler.wait_status("web", "failed")
    assert kepler.inspect("web")["services"]["web"]["state"]["reason"] == \
        f"cannot enter working directory {private} as user {people['bob']}: Permission denied"


def test_a_hook_whose_program_the_user_cannot_execute_names_program_and_user(kepler, people):
    private = os.path.join(kepler.workdir, "venv")
    os.makedirs(private, mode=0o700)
    program = kepler.write("python", "#!/bin/sh\nexit 0\n", directory=private)
    os.chmod(program, 0o755)
    config(kepler, {"web": {"command": ["sleep", "1000"], "user": people["bob"],
                            "hooks": {"pre_start": {"command": [program]}}}})
    kepler.ctl("start", "-d")
    kepler.wait_status("web", "failed")
    assert kepler.inspect("web")["services"]["web"]["state"]["reason"] == \
        f"pre_start hook cannot execute {program} as user {people['bob']}: Permission denied"
