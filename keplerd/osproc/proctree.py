"""Process trees: find every descendant of a service and kill them all (with psutil).

Loaded on the first stop (``children._proctree``), not at boot.
"""

import os
import signal

import psutil

from keplerd.osproc.groups import group_alive, signal_group

# Kernels built without CONFIG_PROC_CHILDREN lack these files; psutil's scan still works there.
_PROC_CHILDREN = os.path.exists(f"/proc/self/task/{os.getpid()}/children")


def descendants(pid):
    """Return psutil processes for every live descendant of *pid*.

    Walks ``/proc/<pid>/task/<tid>/children``, which costs a read per process in the
    tree, instead of psutil's scan of every process on the machine (which made
    stopping hundreds of services quadratic).
    """
    if not _PROC_CHILDREN:
        return _descendants_by_scan(pid)
    found, pending = [], [pid]
    while pending:
        parent = pending.pop()
        try:
            children = _children_of(parent)
        except OSError:
            continue  # gone meanwhile: it has no children left to find
        for child in children:
            try:
                found.append(psutil.Process(child))
            except psutil.Error:
                continue
            pending.append(child)
    return found


def _children_of(pid):
    children = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as file:
            children.extend(int(child) for child in file.read().split())
    return children


def _descendants_by_scan(pid):
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def kill_all(pgid, processes):
    """SIGKILL a process group and the given psutil processes (skipping reused pids)."""
    signal_group(pgid, signal.SIGKILL)
    for process in processes:
        try:
            process.kill()  # psutil checks the create time, so a reused pid is spared
        except psutil.Error:
            pass  # already gone: exactly what we want


def any_alive(pgid, processes):
    if group_alive(pgid):
        return True
    return any(_alive(process) for process in processes)


def _alive(process):
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def kill_tree(pid):
    """SIGKILL *pid*, its process group (= pid) and its descendants; True if it was there."""
    try:
        process = psutil.Process(pid)
    except psutil.Error:
        return False
    kill_all(pid, [process] + descendants(pid))
    return True
