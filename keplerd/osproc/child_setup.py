"""What a child does between fork and exec beyond a plain start, and how its failures read (SPEC §12).

The steps, in order: take the terminal (after setsid), set the rlimits (while
still root, so that they may go beyond the daemon's own hard limits; the address
space last), become the user (supplementary groups, gid, uid), then enter the
working directory again as that user, so that one the user may not enter fails
the service instead of leaving it stranded there.

The C spawner (``clone_into``) runs them with raw system calls; without it,
``fork_exec`` runs ``preexec``, the same steps in Python. Either way a failure
ends the child and is written to the exec error pipe; ``describe`` turns what
the pipe holds into the reason users see, the same for both.
"""

import errno
import fcntl
import os
import resource
import termios

from gevent.monkey import get_original

RLIMITS = {"memory": resource.RLIMIT_AS, "cpu_time": resource.RLIMIT_CPU, "max_fds": resource.RLIMIT_NOFILE}

# Kinds of report on the exec error pipe besides _posixsubprocess's "OSError" and "SubprocessError":
# a step that failed in the C spawner ("KeplerStep:<hex errno>:<step>"), and in Python
# ("KeplerSetup:0:<the whole reason>").
STEP_FAILURE = "KeplerStep"
SETUP_FAILURE = "KeplerSetup"

# What resource.setrlimit says for these (the reasons users have always seen).
_RLIMIT_REASONS = {errno.EPERM: "not allowed to raise maximum limit",
                   errno.EINVAL: "current limit exceeds maximum limit"}

_write_now = get_original("os", "write")


class Steps:
    """The steps of one child: its terminal, its *limits* (name -> value), its *identity* (or None)."""

    def __init__(self, identity, limits, cwd, tty):
        self.identity = identity
        self.cwd = cwd
        self.tty = tty
        # Address space last: once it is capped, the child should allocate nothing new.
        self.limits = sorted(((name, value) for name, value in limits.items() if name in RLIMITS),
                             key=lambda item: item[0] == "memory")

    def __bool__(self):
        return bool(self.identity or self.limits or self.tty)

    def rlimits(self):
        """The ``(resource, value)`` pairs to set, in order."""
        return [(RLIMITS[name], value) for name, value in self.limits]

    def user(self):
        """``(uid, gid, groups)`` to become, or None."""
        if self.identity is None:
            return None
        return self.identity.uid, self.identity.gid, tuple(self.identity.groups)

    def failure(self, step):
        """What failed, for a step named as the C spawner names it: tty, limit:<i>, user, cwd."""
        if step == "tty":
            return "cannot take the terminal"
        if step.startswith("limit:"):
            name, value = self.limits[int(step.partition(":")[2])]
            return f"cannot apply limits.{name} ({value})"
        if step == "user":
            return f"cannot switch to uid {self.identity.uid} and gid {self.identity.gid}"
        return f"cannot enter working directory {self.cwd} as {self.identity.who}"

    def reason(self, step, number):
        if step.startswith("limit:") and number in _RLIMIT_REASONS:
            return _RLIMIT_REASONS[number]
        return os.strerror(number)

    def preexec(self, errpipe):
        """The steps as Python, for ``fork_exec`` (which must then fork, not vfork)."""
        steps = [(f"limit:{index}", _setrlimit, (RLIMITS[name], value))
                 for index, (name, value) in enumerate(self.limits)]
        if self.tty:  # after setsid (done before this runs): stdin becomes the controlling terminal
            steps.insert(0, ("tty", fcntl.ioctl, (0, termios.TIOCSCTTY, 0)))
        if self.identity is not None:
            steps.append(("user", _become, self.user()))
            steps.append(("cwd", os.chdir, (self.cwd,)))

        def setup():
            for step, function, arguments in steps:
                try:
                    function(*arguments)
                except (OSError, ValueError) as error:  # setrlimit says "not allowed" with a ValueError
                    reason = error.strerror if isinstance(error, OSError) else str(error)
                    _write_now(errpipe, f"{SETUP_FAILURE}:0:{self.failure(step)}: {reason}".encode())
                    os._exit(255)

        return setup


def _setrlimit(which, value):
    resource.setrlimit(which, (value, value))


def _become(uid, gid, groups):
    """Drop root for good: supplementary groups, then gid, then uid (real, effective and saved)."""
    os.setgroups(list(groups))
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)


def describe(data, program, steps):
    """Say why the child did not exec, naming the program, directory or step, and whom it ran as."""
    kind, _, rest = data.decode(errors="replace").partition(":")
    code, _, where = rest.partition(":")
    if kind == SETUP_FAILURE:
        return where
    if kind == STEP_FAILURE:
        return f"{steps.failure(where)}: {steps.reason(where, int(code, 16))}"
    as_who = f" as {steps.identity.who}" if steps.identity is not None else ""
    if kind == "OSError":
        number = int(code, 16)
        if where == "noexec:chdir":
            return f"cannot enter working directory {steps.cwd}{as_who}: {os.strerror(number)}"
        if number == errno.ENOENT:
            return f"program not found: {program}"
        return f"cannot execute {program}{as_who}: {os.strerror(number)}"
    if kind == "SubprocessError":
        return "cannot prepare the child before exec"
    return f"cannot execute {program}: {data.decode(errors='replace')}"
