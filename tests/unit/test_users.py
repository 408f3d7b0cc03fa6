"""Resolving ``user`` and ``group`` into ids (SPEC §12), against this machine's passwd."""

import grp
import os
import pwd

import pytest

from keplerd.osproc.users import Identity, UnknownIdentity, resolve

ROOT = pwd.getpwnam("root")


def unused(lookup, start=61000):
    """Return an id that has no entry in the database *lookup* reads."""
    for number in range(start, start + 5000):
        try:
            lookup(number)
        except KeyError:
            return number
    raise AssertionError("no free id found")


def test_a_name_gives_the_passwd_ids_groups_and_login():
    identity = resolve("root")
    assert (identity.uid, identity.gid, identity.name) == (0, ROOT.pw_gid, "root")
    assert identity.groups == tuple(sorted(set(os.getgrouplist("root", ROOT.pw_gid))))
    assert (identity.home, identity.shell, identity.login) == (ROOT.pw_dir, ROOT.pw_shell, True)


def test_a_uid_with_a_passwd_entry_is_the_same_as_its_name():
    assert resolve("0") == resolve("root") == resolve(0)


def test_uid_colon_gid_overrides_the_primary_group_and_recomputes_the_groups():
    gid = unused(grp.getgrgid)
    identity = resolve(f"0:{gid}")
    assert (identity.uid, identity.gid) == (0, gid)
    assert identity.groups == tuple(sorted(set(os.getgrouplist("root", gid))))
    assert gid in identity.groups


def test_group_takes_a_name_or_a_number_and_wins_over_uid_colon_gid():
    root_group = grp.getgrgid(0).gr_name
    assert resolve("root", root_group).gid == 0
    assert resolve("0:0", "4242").gid == 4242


def test_a_bare_uid_without_passwd_entry_gets_its_own_number_as_group_and_no_login():
    uid = unused(pwd.getpwuid)
    identity = resolve(str(uid))
    assert identity == Identity(uid, uid, (uid,), login=False)
    assert identity.add_login_env({"PATH": "/bin"}) == {"PATH": "/bin"}


def test_only_a_group_keeps_the_daemons_user_without_login_variables():
    identity = resolve(None, "4242")
    assert (identity.uid, identity.gid, identity.login) == (os.getuid(), 4242, False)
    assert 4242 in identity.groups
    assert "HOME" not in identity.add_login_env({})


def test_login_variables_are_added_only_when_absent():
    env = resolve("root").add_login_env({"HOME": "/srv", "PATH": "/bin"})
    assert env == {"HOME": "/srv", "PATH": "/bin", "USER": "root", "LOGNAME": "root", "SHELL": ROOT.pw_shell}


@pytest.mark.parametrize("user, group, message", [
    ("kt-no-such-user", None, "unknown user: kt-no-such-user"),
    ("root", "kt-no-such-group", "unknown group: kt-no-such-group"),
    ("0:kt-no-such-group", None, "unknown group: kt-no-such-group"),
    (":0", None, "unknown user: "),
    ("-1", None, "unknown user: -1"),
    ("\u0663", None, "unknown user: \u0663"),  # a digit, but not an ASCII one
    ("ro\u0000ot", None, "unknown user: ro\u0000ot"),
    ("root", "wh\u0000eel", "unknown group: wh\u0000eel"),
    ("4294967295", None, "invalid user id: 4294967295"),  # (uid_t)-1 means "unchanged"
    ("root", "4294967295", "invalid group id: 4294967295"),
])
def test_unknown_or_invalid_users_and_groups_are_refused_with_a_reason(user, group, message):
    with pytest.raises(UnknownIdentity) as raised:
        resolve(user, group)
    assert str(raised.value) == message


def test_an_identity_is_resolved_once_until_forgotten(monkeypatch):
    from keplerd.osproc import process, users

    calls = []
    real = users.resolve
    monkeypatch.setattr(users, "resolve", lambda user, group: (calls.append((user, group)), real(user, group))[1])
    process.forget_identities()
    first = process._resolve_identity("root", None)
    assert process._resolve_identity("root", None) is first and calls == [("root", None)]
    process.forget_identities()
    process._resolve_identity("root", None)
    assert calls == [("root", None), ("root", None)]


def test_an_unknown_identity_is_not_remembered(monkeypatch):
    from keplerd.osproc import process

    process.forget_identities()
    for _ in range(2):
        with pytest.raises(process.SpawnError, match="unknown user: no-such-user-kt"):
            process._resolve_identity("no-such-user-kt", None)
    assert ("no-such-user-kt", None) not in process._identities
