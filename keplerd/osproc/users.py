"""Resolve the ``user`` and ``group`` of a service into ids (SPEC §12).

>>> resolve("root")                                        # doctest: +SKIP
Identity(uid=0, gid=0, groups=(0,), name='root', home='/root', shell='/bin/bash', login=True)
"""

import grp
import os
import pwd

from keplerd.model.record import Record

# The set*id(2) calls read (uid_t)-1 as "leave unchanged": it is not an id one can become.
MAX_ID = 2**32 - 2


class UnknownIdentity(Exception):
    """An unknown user or group; the message is the reason shown to users."""


class Identity(Record):
    """Who a child runs as: uid, primary gid, supplementary groups and passwd entry.

    *login* says whether the child gets the login variables of that passwd entry:
    only when a ``user`` was asked for, not when only the group changes.
    """

    uid: int
    gid: int
    groups: tuple
    name: str | None = None
    home: str | None = None
    shell: str | None = None
    login: bool = True

    @property
    def who(self):
        """Say whom a child runs as, for messages: ``user kapp`` or ``uid 1234``."""
        return f"user {self.name}" if self.name else f"uid {self.uid}"

    def add_login_env(self, env):
        """Return *env* with HOME, USER, LOGNAME and SHELL from passwd, unless already set."""
        if not self.login:
            return env
        login = {"HOME": self.home, "USER": self.name, "LOGNAME": self.name, "SHELL": self.shell}
        added = {key: value for key, value in login.items() if value and key not in env}
        return {**env, **added} if added else env

    def with_gid(self, gid):
        """Return this identity with primary group *gid*, as ``initgroups(name, gid)`` would set it."""
        return self.replace(gid=gid, groups=_groups(self.name, gid))


def resolve(user, group=None):
    """Return the ``Identity`` for *user* (name, uid or ``uid:gid``) and *group*.

    With no *user*, the daemon's own user keeps running the child and only the
    group changes. Supplementary groups are those of the target user (as
    ``initgroups``), never the daemon's. Raises ``UnknownIdentity``.
    """
    if user is None:
        identity = _from_entry(pwd.getpwuid(os.getuid()), login=False)
    else:
        account, colon, gid_text = str(user).partition(":")
        entry = _passwd_entry(account)
        identity = _from_entry(entry) if entry else _bare_uid(int(account))
        if colon:
            identity = identity.with_gid(_group_id(gid_text))
    if group is not None:
        identity = identity.with_gid(_group_id(str(group)))
    return identity


def _from_entry(entry, login=True):
    return Identity(entry.pw_uid, entry.pw_gid, _groups(entry.pw_name, entry.pw_gid), entry.pw_name,
                    entry.pw_dir, entry.pw_shell, login)


def _bare_uid(uid):
    """A uid without passwd entry: its group is the same number, and it has no other."""
    return Identity(uid, uid, (uid,), login=False)


def _groups(name, gid):
    return tuple(sorted(set(os.getgrouplist(name, gid)))) if name else (gid,)


def _passwd_entry(user):
    """Return the passwd entry of a name or uid; None for a valid uid that has none."""
    try:
        return pwd.getpwnam(user)
    except (KeyError, ValueError):  # ValueError: a NUL byte, which no name holds
        pass
    if not _is_number(user):
        raise UnknownIdentity(f"unknown user: {user}")
    if int(user) > MAX_ID:
        raise UnknownIdentity(f"invalid user id: {user}")
    try:
        return pwd.getpwuid(int(user))
    except KeyError:
        return None


def _group_id(group):
    try:
        return grp.getgrnam(group).gr_gid
    except (KeyError, ValueError):  # ValueError: a NUL byte, which no name holds
        if not _is_number(group):
            raise UnknownIdentity(f"unknown group: {group}") from None
    if int(group) > MAX_ID:
        raise UnknownIdentity(f"invalid group id: {group}")
    return int(group)


def _is_number(text):
    return text.isascii() and text.isdigit()
