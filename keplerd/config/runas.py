"""Who a non-root caller's services may run as, and with what limits (SPEC §21), checked at bake.

Root's configs are not checked. A non-root caller's services, hooks and probes
run as the caller when they name no ``user``; naming another user, or a group the
caller is not in, is refused unless ``allow_run_as`` in keplerd.conf lists that
target for that caller. Limits above the caller's own hard limits are refused:
the caller could not raise them either.

*caller* is the dict the daemon sends with a bake: ``uid``, ``gid``, ``groups``
(every gid of the calling process), ``name``, ``allowed`` (its ``allow_run_as``
entries) and ``hard_limits`` (``memory``/``cpu_time``/``max_fds``: a number, or
None for unlimited).

>>> caller = {"uid": 1000, "gid": 1000, "groups": [1000], "name": "alice", "allowed": [], "hard_limits": {}}
>>> user_refusal("root", caller, "services")
'only root may run services as root (caller: alice)'
"""

import grp
import os
import pwd
import resource

LIMITS = ("memory", "cpu_time", "max_fds")
_RLIMITS = {"memory": resource.RLIMIT_AS, "cpu_time": resource.RLIMIT_CPU, "max_fds": resource.RLIMIT_NOFILE}


def default_user(caller):
    """Return the ``user`` of services that name none: the caller's uid (None for root: the daemon's)."""
    return None if caller is None else str(caller["uid"])


def this_process(allow_run_as):
    """Describe this process as a caller (None when it is root), for ``keplerctl config check``."""
    uid = os.geteuid()
    if uid == 0:
        return None
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    hard = {key: resource.getrlimit(which)[1] for key, which in _RLIMITS.items()}
    return {"uid": uid, "gid": os.getegid(), "groups": sorted({os.getegid(), *os.getgroups()}), "name": name,
            "allowed": list(allow_run_as.get(name, []) + allow_run_as.get(str(uid), [])),
            "hard_limits": {key: None if value == resource.RLIM_INFINITY else value for key, value in hard.items()}}


def check(kepler, services, caller, problems):
    """Add a located problem for each ``user``, ``group`` or limit of the config *caller* may not ask for."""
    if caller is None:
        return
    blocks = [(["kepler", "hooks", name], hook, "hooks") for name, hook in _set(kepler.get("hooks")).items()]
    for name, service in services.items():
        blocks.append((["services", name], service, "services"))
        blocks += [(["services", name, "hooks", hook_name], hook, "hooks")
                   for hook_name, hook in _set(service.get("hooks")).items()]
    for path, block, noun in blocks:
        for key, message in refusals(block, caller, noun):
            problems.add(path + key, message)


def refusals(block, caller, noun):
    """Yield ``(key path, why)`` for what *block* (a service or hook) asks that *caller* may not have."""
    block = _set(block)
    if "user" in block:
        why = user_refusal(block["user"], caller, noun)
        if why:
            yield ["user"], why
    if "group" in block:
        why = group_refusal(block["group"], caller, noun)
        if why:
            yield ["group"], why
    for name, value in _set(block.get("limits")).items():
        why = limit_refusal(name, value, caller)
        if why:
            yield ["limits", name], why


def user_refusal(user, caller, noun="services"):
    """Return why *caller* may not run *noun* as *user* (a name, uid or ``uid:gid``), or None."""
    account, colon, group = str(user).partition(":")
    target = user_id(account)
    allowed = target == caller["uid"] or any(
        entry == account or (target is not None and user_id(entry) == target) for entry in caller["allowed"])
    if not allowed:
        return f"only root may run {noun} as {_user_name(account, target)} (caller: {caller['name']})"
    return group_refusal(group, caller, noun) if colon else None


def group_refusal(group, caller, noun="services"):
    """Return why *caller* may not run *noun* with primary group *group* (a name or gid), or None."""
    target = group_id(group)
    if target is not None and target in caller["groups"]:
        return None  # a group the caller is in: it could use it anyway (newgrp)
    if any(entry == group or (target is not None and group_id(entry) == target) for entry in caller["allowed"]):
        return None
    return f"only root may run {noun} as group {group} (caller: {caller['name']}, not a member)"


def limit_refusal(name, value, caller):
    """Return why *caller* may not set limit *name* to *value*, or None."""
    hard = (caller.get("hard_limits") or {}).get(name)
    if name not in LIMITS or hard is None or value <= hard:
        return None
    return f"{value} is above the hard limit of {caller['name']} ({hard}): only root may raise it"


def user_id(account):
    """Return the uid of a user name or number, or None when there is no such user."""
    try:
        return pwd.getpwnam(account).pw_uid
    except (KeyError, ValueError):
        pass
    return int(account) if account.isascii() and account.isdigit() else None


def group_id(group):
    """Return the gid of a group name or number, or None when there is no such group."""
    group = str(group)
    try:
        return grp.getgrnam(group).gr_gid
    except (KeyError, ValueError):
        pass
    return int(group) if group.isascii() and group.isdigit() else None


def _user_name(account, uid):
    if uid is not None and account.isdigit():
        try:
            return pwd.getpwuid(uid).pw_name
        except KeyError:
            pass
    return account


def _set(mapping):
    return {key: value for key, value in (mapping or {}).items() if value is not None}
