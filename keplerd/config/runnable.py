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

import os

from ..osproc import users

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
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
        why = _identity_problem(user, None)
        if why:
            yield ["user"], why
            user = None  # its group cannot be judged either; do not report it twice
    if group is not None and _identity_problem(user, group):
        yield ["group"], _identity_problem(user, group)
    if check_program and os.path.isdir(block["working_dir"]):
        why = program_problem(block["command"][0], block["env"], block["working_dir"])
        if why:
            yield ["command"], why


def _identity_problem(user, group):
    try:
        users.resolve(user, group)
    except users.UnknownIdentity as error:
        kind, colon, name = str(error).partition(": ")
        if kind in ("unknown user", "unknown group") and colon:
            return f"no such {kind.split()[1]} '{name}'"
        return str(error)
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
