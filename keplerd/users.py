"""Resolve the ``user`` and ``group`` of a service into ids (SPEC §12)."""

import grp
import os
import pwd
from dataclasses import dataclass


class UnknownIdentity(Exception):
    """An unknown user or group; the message is the reason shown to users."""


@dataclass(frozen=True)
class Identity:
    """Who a child runs as: uid, primary gid, supplementary groups and passwd entry."""

    uid: int
    gid: int
    groups: tuple
    name: str | None = None
    home: str | None = None
    shell: str | None = None

    def add_login_env(self, env):
        """Return *env* with HOME, USER, LOGNAME and SHELL from passwd, unless already set."""
        login = {"HOME": self.home, "USER": self.name, "LOGNAME": self.name, "SHELL": self.shell}
        added = {key: value for key, value in login.items() if value and key not in env}
        return {**env, **added} if added else env


def resolve(user, group=None):
    """Return the ``Identity`` for *user* (name, uid or ``uid:gid``) and *group*.

    With no *user*, the daemon's own user keeps running the child and only the
    group changes. Raises ``UnknownIdentity``.
    """
    user = None if user is None else str(user)
    explicit_gid = None
    if user is not None and ":" in user:
        user, gid_text = user.split(":", 1)
        explicit_gid = _group_id(gid_text)
    entry = _passwd_entry(user) if user is not None else pwd.getpwuid(os.getuid())
    if entry is not None:
        uid, gid, name = entry.pw_uid, entry.pw_gid, entry.pw_name
    else:
        uid = gid = int(user)  # a bare uid without passwd entry: its group is the same number
        name = None
    if explicit_gid is not None:
        gid = explicit_gid
    if group is not None:
        gid = _group_id(str(group))
    groups = tuple(sorted(set(os.getgrouplist(name, gid)))) if name else (gid,)
    home = entry.pw_dir if entry else None
    shell = entry.pw_shell if entry else None
    return Identity(uid, gid, groups, name, home, shell)


def _passwd_entry(user):
    try:
        return pwd.getpwnam(user)
    except KeyError:
        pass
    if not user.isdigit():
        raise UnknownIdentity(f"unknown user: {user}")
    try:
        return pwd.getpwuid(int(user))
    except KeyError:
        return None


def _group_id(group):
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        if group.isdigit():
            return int(group)
        raise UnknownIdentity(f"unknown group: {group}") from None
