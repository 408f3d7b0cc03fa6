"""What must exist on this machine for a baked service to start, checked at bake (SPEC §2, §12).

An unknown ``user`` or ``group``, or a ``command`` program that is not there, is a
located bake error (``kepler.yaml: services.web.user: no such user 'nosuchuser'``)
rather than a service that fails when it starts. The daemon still checks again at
spawn: an account or a program may go away after the bake.

A program is not checked when a hook that runs before the service (its own or the
global ``on_init``/``pre_start``) may create it, as ``python -m venv venv`` in
``on_init`` creates ``venv/bin/python``; nor when the working directory does not
exist yet (it is reported at start).

>>> list(problems_of({"user": "kt-nobody-here", "group": None, "command": ["true"], "env": {},
...                   "working_dir": "/"}))
[(['user'], "no such user 'kt-nobody-here'")]
"""

import grp
import os
import pwd

from ..model.defaults import DEFAULT_PATH
MAX_ID = 2**32 - 2  # as osproc.users: (uid_t)-1 means "unchanged" to the set*id calls
CREATING_HOOKS = ("on_init", "pre_start")


def check(snapshot, problems):
    """Add a located problem for each unknown user or group and each missing program of *snapshot*."""
    global_hooks = snapshot["kepler"]["hooks"]
    global_may_create = any(name in global_hooks for name in CREATING_HOOKS)
    for name, hook in global_hooks.items():
        _report(problems, ["kepler", "hooks", name], hook, check_program=True)
    for name, service in snapshot["services"].items():
        may_create = global_may_create or any(hook in service["hooks"] for hook in CREATING_HOOKS)
        _report(problems, ["services", name], service, check_program=not may_create)
        for hook_name, hook in service["hooks"].items():
            _report(problems, ["services", name, "hooks", hook_name], hook, check_program=True)


def _report(problems, path, block, check_program):
    for key, message in problems_of(block, check_program):
        problems.add(path + key, message)


def problems_of(block, check_program=True):
    """Yield ``(key path, why)`` for what a baked service or hook needs that this machine lacks."""
    user, group = block.get("user"), block.get("group")
    if user is not None:
        account, _, gid_text = str(user).partition(":")
        why = _id_problem("user", account, pwd.getpwnam) or (gid_text and _id_problem("group", gid_text, grp.getgrnam))
        if why:
            yield ["user"], why
    if group is not None:
        why = _id_problem("group", str(group), grp.getgrnam)
        if why:
            yield ["group"], why
    if check_program and os.path.isdir(block["working_dir"]):
        why = program_problem(block["command"][0], block["env"], block["working_dir"])
        if why:
            yield ["command"], why


def _id_problem(kind, text, lookup):
    """Say why the user or group *text* (a name or a number) cannot be resolved here, or None.

    The same rules as ``osproc.users`` (which the bake worker and ``config check``
    do not import): a name must exist; a number need not have an entry.
    """
    try:
        lookup(text)
        return None
    except (KeyError, ValueError):  # ValueError: a NUL byte, which no name holds
        pass
    if not (text.isascii() and text.isdigit()):
        return f"no such {kind} '{text}'"
    if int(text) > MAX_ID:
        return f"invalid {kind} id: {text}"
    return None


def program_problem(program, env, cwd):
    """Say why *program* cannot be found as SPEC §2 looks it up (the service's PATH), or None."""
    if "/" in program:
        path = os.path.join(cwd, program)
        if not os.path.isfile(path):
            return f"program not found: {program}" + ("" if os.path.isabs(program) else f" (no such file in {cwd})")
        if not os.access(path, os.X_OK):
            return f"program not executable: {program} (chmod +x it)"
        return None
    search = env.get("PATH") or DEFAULT_PATH
    for directory in search.split(":"):
        path = os.path.join(cwd, directory, program)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return None
    where = "the service's PATH" if env.get("PATH") else "the default PATH"
    return f"program not found: {program} (looked in {where} {search}; give its full path, or set PATH)"
