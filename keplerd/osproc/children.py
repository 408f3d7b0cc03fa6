"""A spawned child: its exit watched, its stop and kill by process group or cgroup, its leftovers.

Also what ``/proc`` tells of a pid (start time, stopped, zombie): a pid recorded by an
earlier daemon is only adopted or killed while its start time says it is still the
process that daemon started.

Requires a monkey-patched gevent hub (the daemon patches first).
"""

import functools
import os
import signal
import time

import gevent
from gevent.event import AsyncResult
from gevent.monkey import get_original

from keplerd.osproc import cgroups, usage
from keplerd.osproc.groups import signal_group

KILL_POLL_INTERVAL = 0.01
KILLED_GONE_SECONDS = 2.0   # how long a stop waits for SIGKILLed processes to be gone

_STOPPING_SIGNALS = (signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)

# Pids of the children this daemon spawned that have not been reaped: strays.collect spares them.
LIVE_PIDS = set()
# The ones of them stopped by a signal now (SIGSTOP, a debugger): the child watcher tells us, so
# ``ps`` need not read /proc/<pid>/stat for each of its rows (1,000 reads at 1,000 services).
PAUSED_PIDS = set()

# gevent's patched os.close defers closing until the loop runs (see process.close_now).
_close_now = get_original("os", "close")
_waitpid = get_original("os", "waitpid")


class Child:
    """A spawned child: its pid (= process group), cgroup (or None), start time and exit status."""

    def __init__(self, pid, cgroup=None):
        self.pid = pid
        self.pgid = pid
        self.cgroup = cgroup
        self.returncode = None
        self._exit = AsyncResult()
        # trace: stops and continues are reported too (libev reaps with WUNTRACED | WCONTINUED).
        self._watcher = gevent.get_hub().loop.child(pid, trace=True, ref=False)
        self._watcher.start(self._on_status, self._watcher)
        self.create_time = start_time(pid)
        LIVE_PIDS.add(pid)

    @classmethod
    def adopt(cls, pid, create_time):
        """Watch a child an earlier image of this daemon spawned (``daemon reexec``: same pid, same children).

        Returns None if *pid* is no longer that process. A child that ended while the
        new image started is a zombie whose SIGCHLD went to the old image: reap it here.
        """
        if create_time is None or start_time(pid) != create_time:
            return None
        gevent.get_hub().loop.install_sigchld()  # from now on an exit reaches the child watcher
        child = cls(pid, cgroups.cgroup_of(pid))  # read before a zombie leaves its cgroup
        if stopped(pid):  # stopped under the earlier image: no stop is reported again
            PAUSED_PIDS.add(pid)
        if child.returncode is None and _is_zombie(pid):
            reaped, status = _waitpid(pid, os.WNOHANG)
            if reaped == pid:
                LIVE_PIDS.discard(pid)
                child._watcher.stop()
                child.returncode = os.waitstatus_to_exitcode(status)
                child._exit.set(child.returncode)
        return child

    def _on_status(self, watcher):
        if os.WIFSTOPPED(watcher.rstatus):
            PAUSED_PIDS.add(self.pid)
        elif os.WIFCONTINUED(watcher.rstatus):
            PAUSED_PIDS.discard(self.pid)
        else:
            self._on_exit(watcher)

    def _on_exit(self, watcher):
        watcher.stop()
        LIVE_PIDS.discard(self.pid)
        PAUSED_PIDS.discard(self.pid)
        self.returncode = os.waitstatus_to_exitcode(watcher.rstatus)
        self._exit.set(self.returncode)

    def wait(self, timeout=None):
        """Return the exit code (negative: killed by that signal), or ``None`` on timeout."""
        return self._exit.wait(timeout)

    # ``gevent.wait([child, event], count=1)`` waits for whichever comes first.
    def rawlink(self, callback):
        self._exit.rawlink(callback)

    def unlink(self, callback):
        self._exit.unlink(callback)

    def descendants(self):
        """Return the live descendants of the child (psutil processes, identity-checked)."""
        return _proctree().descendants(self.pid)

    def stop(self, signum, grace):
        """Send *signum* to the process group, wait *grace*, then kill whatever is left.

        In a cgroup, what is left is every process of the cgroup (``cgroup.kill``),
        and the cgroup goes once empty. Else descendants are collected before
        signalling so that one that moved to its own process group is still found
        and killed. Returns the exit code.
        """
        if self.cgroup is not None:
            return self._stop_cgroup(signum, grace)
        tree = _proctree()
        survivors = self.descendants()
        self._send_stop_signal(signum)
        deadline = time.monotonic() + grace
        self.wait(timeout=grace)
        while tree.any_alive(self.pgid, survivors) and time.monotonic() < deadline:
            gevent.sleep(KILL_POLL_INTERVAL)
        killed = survivors + self.descendants()
        tree.kill_all(self.pgid, killed)
        returncode = self.wait()
        # SIGKILL is delivered, not instant: the stop is over once nothing of the service runs.
        deadline = time.monotonic() + KILLED_GONE_SECONDS
        while tree.any_alive(self.pgid, killed) and time.monotonic() < deadline:
            gevent.sleep(KILL_POLL_INTERVAL)
        return returncode

    def _send_stop_signal(self, signum):
        signal_group(self.pgid, signum)
        if signum not in _STOPPING_SIGNALS:
            # A stopped (SIGSTOP) process would only see the signal once continued: continue it.
            signal_group(self.pgid, signal.SIGCONT)

    def _stop_cgroup(self, signum, grace):
        self._send_stop_signal(signum)
        deadline = time.monotonic() + grace
        self.wait(timeout=grace)
        while cgroups.populated(self.cgroup) and time.monotonic() < deadline:
            gevent.sleep(KILL_POLL_INTERVAL)
        self.end_leftovers()
        return self.wait()

    def send_signal(self, signum):
        """Send *signum* to the main process only (not yet reaped, so the pid is still ours)."""
        if self.returncode is None:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass

    def kill(self):
        """SIGKILL the process group and every descendant (the whole cgroup) at once."""
        if self.cgroup is not None:
            self.end_leftovers()
            return
        _proctree().kill_all(self.pgid, self.descendants())

    def end_leftovers(self):
        """The main process is gone (or going): SIGKILL what is left of its group and cgroup.

        A cgroup is removed once empty; the next run gets a fresh one.
        """
        signal_group(self.pgid, signal.SIGKILL)
        if self.cgroup is not None:
            cgroups.kill_and_remove(self.cgroup, gevent.sleep)

    def reading(self):
        """Return the ``usage.Reading`` of this run (its cgroup, or its process tree)."""
        if self.cgroup is not None:
            return cgroups.reading(self.cgroup)
        if self.returncode is not None:
            return usage.NOTHING
        return usage.tree_reading(self.pid)


def kill_leftover(pid, create_time):
    """Kill the group of a process recorded by an earlier daemon, if it is still that process.

    Returns True when something was killed. The pid must still exist with the same
    start time: a reused pid belongs to someone else and is never touched.
    """
    if not pid or create_time is None:
        return False
    started = start_time(pid)
    if started is None or abs(started - create_time) > 0.01:
        return False
    return _proctree().kill_tree(pid)


def _proctree():
    # psutil is loaded on the first stop, not at boot: a daemon that only runs
    # services does not carry it (about 1 MiB resident).
    from keplerd.osproc import proctree

    return proctree


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# /proc/<pid>/stat is one line of about 1 KiB at most (a 15-byte comm and 52 numbers).
_STAT_READ_SIZE = 4096


@functools.cache
def _boot_time():
    with open("/proc/stat", "rb") as stat:
        for line in stat:
            if line.startswith(b"btime "):
                return float(line.split()[1])
    raise OSError("no btime in /proc/stat")


def stat_fields(pid):
    """Return the fields of ``/proc/<pid>/stat`` after the command name (the state first), or None if gone.

    One read(2), no buffered file object: it is on the spawn path of every service.
    """
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, _STAT_READ_SIZE)
    except OSError:
        return None
    finally:
        _close_now(fd)
    return data[data.rfind(b")") + 2:].split()


def _state(pid):
    """Return the state letter of *pid* (R, S, T, Z...), or None when it is gone."""
    fields = stat_fields(pid)
    return fields[0].decode() if fields else None


def stopped(pid):
    """True when *pid* is stopped by a signal or traced (state T or t)."""
    return _state(pid) in ("T", "t")


def _is_zombie(pid):
    return _state(pid) == "Z"


def start_time(pid):
    """Return when *pid* started, in epoch seconds (as psutil's create_time), or None if gone."""
    fields = stat_fields(pid)
    return _boot_time() + int(fields[19]) / _CLOCK_TICKS if fields else None
