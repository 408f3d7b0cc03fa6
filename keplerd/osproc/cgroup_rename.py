"""Renaming a service instance's cgroup (``web`` → ``web.1``, SPEC §17), processes and all.

cgroup v1 renames a directory in place; cgroup v2 refuses ``rename(2)``
(``EPERM``), so the processes move instead: the old cgroup is frozen, so that
nothing in it can fork meanwhile, each process is written into a new cgroup of
the new name (where it thaws), and the emptied old one is removed. Nothing here
yields to other greenlets: the instance is never seen half-moved.
"""

import errno
import logging
import os
import time

from keplerd.osproc import cgroups

log = logging.getLogger("keplerd.cgroups")

FREEZE_WAIT_SECONDS = 0.2  # the daemon waits for the freeze without yielding, so briefly
FREEZE_POLL_SECONDS = 0.001


def rename(path, name, limits=None):
    """Give cgroup *path* the name *name* in the same parent, processes and all; return the new path.

    cgroup v1 renames a directory in place; cgroup v2 refuses (``EPERM``), so the
    processes move instead: *path* is frozen (nothing in it can fork meanwhile),
    each of its processes is written into a new cgroup *name* made with *limits*
    (a moved process thaws there), and the emptied *path* is removed. Nothing
    here yields. Raises OSError when that cannot be done whole: then every process
    is back in *path*, running.
    """
    target = os.path.join(os.path.dirname(path), name)
    if target == path:
        return path
    cgroups.remove_if_empty(target)  # an empty leftover of that name; a populated one stays and the move fails
    try:
        os.rename(path, target)
        return target
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EINVAL):
            raise
    return _move_processes(path, target, limits)


def _move_processes(path, target, limits):
    if os.path.exists(target):
        raise OSError(errno.EEXIST, f"{target} exists and is in use")
    try:
        cgroups.prepare_path(target, limits)
    except cgroups.LimitUnavailable as error:
        raise OSError(errno.EINVAL, str(error)) from None
    try:
        _freeze(path)
        for pid in cgroups.pids(path):
            try:
                _write(os.path.join(target, "cgroup.procs"), str(pid))
            except ProcessLookupError:
                pass  # it exited meanwhile: nothing to move
        if cgroups.pids(path):
            raise OSError(errno.EBUSY, f"{path} still holds processes")
    except OSError:
        _move_back(target, path)
        raise
    cgroups.remove_if_empty(path)
    return target


def _move_back(target, path):
    """Undo a part-done move: every process back into *path* (where stop and accounting look), thawed."""
    for pid in cgroups.pids(target):
        try:
            _write(os.path.join(path, "cgroup.procs"), str(pid))
        except OSError as error:  # gone meanwhile; anything else is logged, the thaw must still happen
            if error.errno != errno.ESRCH:
                log.warning("cannot move process %s back into %s: %s", pid, path, error.strerror)
    try:
        _write(os.path.join(path, "cgroup.freeze"), "0")
    except OSError as error:
        log.warning("cannot thaw %s: %s", path, error.strerror)
    cgroups.remove_if_empty(target)


def _freeze(path):
    """Freeze cgroup *path* and wait (without yielding, at most FREEZE_WAIT_SECONDS) until it is frozen."""
    _write(os.path.join(path, "cgroup.freeze"), "1")
    deadline = time.monotonic() + FREEZE_WAIT_SECONDS
    while "frozen 1" not in _read(os.path.join(path, "cgroup.events")):
        if time.monotonic() >= deadline:
            raise OSError(errno.ETIMEDOUT, f"{path} did not freeze within {FREEZE_WAIT_SECONDS:g}s")
        _block(FREEZE_POLL_SECONDS)


def _block(seconds):
    """Sleep without yielding to other greenlets (the daemon's ``time.sleep`` is gevent's)."""
    try:
        from gevent import monkey

        sleep = monkey.get_original("time", "sleep")
    except ImportError:
        sleep = time.sleep
    sleep(seconds)


def _write(path, text):
    with open(path, "w") as file:
        file.write(text)


def _read(path):
    with open(path) as file:
        return file.read()
