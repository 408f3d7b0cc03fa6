"""Starting a child with no Python between clone and exec, straight into its cgroup.

The C part (``_clone_into.c``) is built when the package is installed on x86_64
Linux with a compiler. It clones the child with ``clone3(CLONE_VM |
CLONE_INTO_CGROUP)`` and runs its steps (terminal, limits, user) with raw system
calls. Without it, or on a kernel (or seccomp filter) that refuses ``clone3``,
``spawn`` answers None and the caller falls back on ``fork_exec``.
"""

import errno
import logging
import os

try:
    from keplerd.osproc import _clone_into
except ImportError:  # built without a compiler, or on another architecture
    _clone_into = None

log = logging.getLogger("keplerd.process")

# What clone3 answers where the kernel or a seccomp filter does not offer it (or not into a cgroup).
_UNSUPPORTED = {errno.ENOSYS, errno.EINVAL, errno.E2BIG, errno.EPERM}

_usable = _clone_into is not None and bool(_clone_into.AVAILABLE)


def usable():
    """Return True while children are started by the C spawner."""
    return _usable


def spawn(cgroup, executable, args, env_list, cwd, stdin, stdout, stderr, errpipe, umask, steps):
    """Start *executable* in a new session in *cgroup* (None: the daemon's); return ``(pid, pending)``.

    The arguments are as ``_posixsubprocess.fork_exec`` takes them (bytes, fds);
    *steps* is the child's ``child_setup.Steps``. A failure before or at exec is
    written to *errpipe*. The call returns before the child has exec'd: once
    *errpipe*'s read end reads EOF, call ``pending.release()`` to unmap what the
    child ran on (never before: the child may still use it; not at all if the
    wait was given up, which leaks 64 KiB).

    Returns None when the spawner cannot be used here (from then on, always
    None). Raises OSError as a fork would (EAGAIN, ENOMEM, the cgroup gone).
    """
    global _usable
    if not _usable:
        return None
    cgroup_fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) if cgroup is not None else -1
    try:
        return _clone_into.spawn_into(cgroup_fd, executable, args, env_list, os.fsencode(cwd), stdin, stdout,
                                      stderr, errpipe, umask, steps.tty, steps.rlimits(), steps.user())
    except OSError as error:
        if error.errno not in _UNSUPPORTED:
            raise
        _usable = False
        log.warning("cannot clone children (%s): starting them with fork_exec instead", error.strerror)
        return None
    finally:
        if cgroup_fd >= 0:
            os.close(cgroup_fd)
