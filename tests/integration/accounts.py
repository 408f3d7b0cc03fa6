"""Throwaway users and groups for tests that need real unprivileged identities.

Names carry a random tag, so tests running in parallel never collide; whatever a
test creates is deleted when it ends, even when it fails.

>>> with Accounts() as accounts:                          # doctest: +SKIP
...     extra = accounts.group("extra")
...     alice = accounts.user("alice", groups=[extra])
"""

import grp
import os
import pwd
import subprocess
import uuid

from tests.integration.harness import wait_for

LOCKED = 10  # useradd/groupadd/userdel: "cannot lock /etc/passwd" (another test holds it)


def _run(*command):
    """Run a shadow-utils command, retrying while another process holds the passwd lock."""
    def attempt():
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode == LOCKED:
            return None
        return result

    result = wait_for(attempt, timeout=30, interval=0.1, message=f"the passwd lock for {command[0]}")
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


class Accounts:
    """Users and groups created for one test; ``cleanup`` (or leaving ``with``) deletes them."""

    def __init__(self):
        self.tag = uuid.uuid4().hex[:6]
        self._users = []
        self._groups = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()

    def group(self, role):
        """Create a group and return its name."""
        name = f"kt{role[:4]}{self.tag}"
        self._groups.append(name)
        _run("groupadd", name)
        return name

    def user(self, role, groups=(), shell="/bin/sh"):
        """Create a user with its own primary group (no home dir) and return its name."""
        name = f"kt{role[:4]}{self.tag}"
        self._users.append(name)
        self._groups.append(name)  # its user group, in case userdel leaves it behind
        command = ["useradd", "-M", "-U", "-s", shell]
        if groups:
            command += ["-G", ",".join(groups)]
        _run(*command, name)
        return name

    def cleanup(self):
        """Delete every user, then every group; try them all, then report what failed."""
        failures = []
        for command, lookup, names in (("userdel", pwd.getpwnam, self._users),
                                       ("groupdel", grp.getgrnam, self._groups)):
            for name in names:
                try:
                    if _exists(lookup, name):
                        _run(command, name)
                except (RuntimeError, AssertionError) as error:
                    failures.append(str(error))
        if failures:
            raise RuntimeError("; ".join(failures))


def _exists(lookup, name):
    try:
        lookup(name)
        return True
    except KeyError:
        return False


def uid(name):
    return pwd.getpwnam(name).pw_uid


def gid(name):
    return grp.getgrnam(name).gr_gid


def shared_dir(parent, name="out"):
    """Create a directory any service user may write into; return its path."""
    path = os.path.join(parent, name)
    os.makedirs(path, exist_ok=True)
    os.chmod(path, 0o1777)
    return path
