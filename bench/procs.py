"""What the kernel says about processes: trees, CPU time, memory, leftovers.

The benchmark makes itself a child subreaper, so every process started during a
run stays in its subtree: a daemon that detaches (pm2's) and a service that
escapes its manager both re-parent to us instead of to init. "Nothing survives"
then means "our subtree is empty", checked from ``/proc`` and trusting no tool.
"""

import ctypes
import os
import signal
import time
from dataclasses import dataclass

PR_SET_CHILD_SUBREAPER = 36
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    state: str
    cmdline: tuple

    @property
    def alive(self):
        """A zombie has ended; it only waits for its parent to read its status."""
        return self.state not in ("Z", "X")


def become_subreaper():
    """Make orphans of our descendants re-parent to this process."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def read_proc(pid):
    """Return a ``Proc`` for *pid*, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat = file.read()
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            cmdline = file.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name may hold spaces and parentheses: split after its last ')'.
    fields = stat[stat.rindex(b")") + 2:].split()
    args = tuple(arg.decode(errors="replace") for arg in cmdline.split(b"\0")[:-1])
    return Proc(pid, int(fields[1]), fields[0].decode(), args)


def children(pid):
    """Return the pids of *pid*'s children (of every thread: node forks from helper threads)."""
    found = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as file:
                found.extend(int(child) for child in file.read().split())
        except FileNotFoundError:
            continue  # the thread ended meanwhile
    return found


def subtree(root=None):
    """Return a ``Proc`` for every descendant of *root* (default: this process)."""
    root = os.getpid() if root is None else root
    found, pending = [], children(root)
    while pending:
        pid = pending.pop()
        proc = read_proc(pid)
        if proc is None:
            continue
        found.append(proc)
        pending.extend(children(pid))
    return found


def count_running(argv, root=None):
    """Count the live processes below *root* whose command line is exactly *argv*."""
    argv = tuple(argv)
    return sum(1 for proc in subtree(root) if proc.alive and proc.cmdline == argv)


def reap_orphans(keep=()):
    """Collect the exit status of ended orphans re-parented to us, except the pids in *keep*.

    Children we started ourselves are waited on by their ``Popen`` (listed in *keep*).
    """
    for proc in subtree():
        if proc.ppid == os.getpid() and not proc.alive and proc.pid not in keep:
            try:
                os.waitpid(proc.pid, os.WNOHANG)
            except ChildProcessError:
                pass  # its Popen got there first


def kill_all(procs):
    """SIGKILL every process in *procs*; they are ours (in our subtree), so no pid can be reused."""
    for proc in procs:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # ended on its own meanwhile


def cpu_seconds(pids):
    """Return the CPU time (user + system) spent so far by the processes *pids*, not their children."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat = file.read()
        fields = stat[stat.rindex(b")") + 2:].split()
        # Fields 14 and 15 of stat(5): utime, stime; the slice starts at field 3.
        total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def memory_mib(pids, key):
    """Return the sum of a ``/proc/<pid>/status`` memory field (``VmHWM``, ``VmRSS``) in MiB."""
    total_kib = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as file:
            for line in file:
                if line.startswith(key + ":"):
                    total_kib += int(line.split()[1])
                    break
    return total_kib / 1024


def alive(pid):
    proc = read_proc(pid)
    return proc is not None and proc.alive


def wait_until(predicate, timeout, interval=0.005):
    """Poll *predicate* until truthy; return its value, or None after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def machine():
    """Return a description of this machine for the results."""
    model = "unknown"
    with open("/proc/cpuinfo") as file:
        for line in file:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as file:
        mem_kib = int(file.readline().split()[1])
    with open("/proc/loadavg") as file:
        load = " ".join(file.read().split()[:3])
    return {"nproc": os.cpu_count(), "cpu": model, "kernel": os.uname().release,
            "memory_gib": round(mem_kib / 1024 / 1024, 1), "loadavg": load}
