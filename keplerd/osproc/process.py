"""The OS seam: spawn children, watch them exit, signal and kill their process groups.

Children are started by Kepler's C spawner (``clone_into``: cloned straight into
their cgroup, about 75 µs of the daemon's time, the exec waited for cooperatively),
or where it is not built by the C ``fork_exec`` of the standard library (about
0.5 ms, against ~6 ms for gevent's Python-level fork). They are watched by
gevent's child watcher, so waiting on them is cooperative. Each child starts its
own session, so its pid is also its process group id.

Requires a monkey-patched gevent hub (the daemon patches first).
"""

import _posixsubprocess
import contextlib
import errno
import functools
import logging
import os
import signal
import time

import gevent
from gevent.event import AsyncResult
from gevent.monkey import get_original
from gevent.os import nb_read

from keplerd.model import defaults
from keplerd.osproc import cgroups, child_setup, clone_into, usage, users
from keplerd.osproc.groups import signal_group

log = logging.getLogger("keplerd.process")

DEFAULT_PATH = defaults.DEFAULT_PATH
CHILD_UMASK = 0o022
KILL_POLL_INTERVAL = 0.01
KILLED_GONE_SECONDS = 2.0   # how long a stop waits for SIGKILLed processes to be gone

# gevent's patched os.close defers closing pipes until the loop runs; the write ends
# we hand to a child must be closed at once or the reader never sees EOF.
close_now = get_original("os", "close")

_STOPPING_SIGNALS = (signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)

# Pids of the children this daemon spawned that have not been reaped: strays.collect spares them.
LIVE_PIDS = set()
# The ones of them stopped by a signal now (SIGSTOP, a debugger): the child watcher tells us, so
# ``ps`` need not read /proc/<pid>/stat for each of its rows (1,000 reads at 1,000 services).
PAUSED_PIDS = set()

IO_FIRST_SECONDS = 0.05


class SpawnError(Exception):
    """The child could not be started; the message is the reason shown to users."""


def find_program(program, env, cwd):
    """Return the absolute path of *program* per SPEC §2, or raise ``SpawnError``."""
    if "/" in program:
        path = os.path.join(cwd, program)
        if not os.path.isfile(path):
            raise SpawnError(f"program not found: {program}")
        if not os.access(path, os.X_OK):
            raise SpawnError(f"program not executable: {program}")
        return path
    for directory in (env.get("PATH") or DEFAULT_PATH).split(":"):
        path = os.path.join(cwd, directory, program)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise SpawnError(f"program not found: {program}")


def spawn(argv, env, cwd, user=None, group=None, limits=None, stdout=None, stderr=None, stdin=None, tty=False,
          cgroup=None, cgroup_guest=False, gate=None):
    """Start *argv* in its own session and return a ``Child``.

    *stdin*, *stdout*, *stderr* are fds for the child (``None``: /dev/null); with
    *tty*, *stdin* is a terminal that becomes the session's controlling one. *user*
    and *group* follow SPEC §12; *limits* maps ``memory``/``cpu_time``/``max_fds``
    to values (other keys are cgroup limits, applied by ``cgroups.prepare``).
    *cgroup* is the cgroup directory the child starts in (None: the daemon's); a
    *cgroup_guest* (an exec'd command) does not own it: its ``Child`` stops and
    kills by process group, leaving the rest of the cgroup alone. *gate* (a lock)
    is held while the child is started, not while it goes on to exec: one start at
    a time, each after the loop has served what was ready (``serve_ready_io``).
    Raises ``SpawnError`` with a user-facing reason.
    """
    if not os.path.isdir(cwd):
        raise SpawnError(f"working directory not found: {cwd}")
    identity = _resolve_identity(user, group)
    if identity:
        env = identity.add_login_env(env)
    executable = find_program(argv[0], env, cwd)
    steps = child_setup.Steps(identity, {name: value for name, value in (limits or {}).items() if value is not None},
                              cwd, tty)
    env_list = [os.fsencode(f"{key}={value}") for key, value in env.items() if "=" not in key]
    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    errpipe_read, errpipe_write = os.pipe2(os.O_CLOEXEC)
    try:
        with gate if gate is not None else contextlib.nullcontext():
            serve_ready_io()
            pid, pending = _start(
                cgroup, [os.fsencode(arg) for arg in argv], os.fsencode(executable), cwd, env_list,
                stdin if stdin is not None else devnull, stdout if stdout is not None else devnull,
                stderr if stderr is not None else devnull, errpipe_read, errpipe_write, steps)
            # Register the watcher before anything can yield, so the exit is never missed.
            child = Child(pid, None if cgroup_guest else cgroup)
    except (OSError, ValueError) as error:
        # fork itself failed (EAGAIN, ENOMEM), or an argument or variable holds a NUL byte.
        close_now(errpipe_read)
        reason = error.strerror if isinstance(error, OSError) else str(error)
        raise SpawnError(f"cannot start {argv[0]}: {reason}") from None
    except BaseException:
        close_now(errpipe_read)  # a thread found (SpawnError), a greenlet killed while it waited
        raise
    finally:
        close_now(errpipe_write)
        close_now(devnull)
    try:
        failure = _read_exec_report(errpipe_read)
    except BaseException:
        _kill_unclaimed(child)
        raise
    finally:
        close_now(errpipe_read)
    if pending is not None:
        pending.release()  # EOF: the child has exec'd or died, and runs on its mapping no more
    if failure:
        child.wait()
        raise SpawnError(child_setup.describe(failure, executable, steps))
    return child


def _kill_unclaimed(child):
    """SIGKILL a child whose spawn was given up while it exec'd (its greenlet killed): no caller will.

    Its process group, and its cgroup when it has one of its own: what it started
    meanwhile goes too. Nothing here yields.
    """
    signal_group(child.pgid, signal.SIGKILL)
    if child.cgroup is not None:
        try:
            cgroups.kill(child.cgroup)
        except OSError as error:  # the error being raised matters more; the group is killed anyway
            log.warning("cannot kill cgroup %s of an abandoned spawn: %s", child.cgroup, error.strerror)


def _start(cgroup, args, executable, cwd, env_list, stdin, stdout, stderr, errpipe_read, errpipe_write, steps):
    """Start the child, in *cgroup* (None: the daemon's) from birth; return ``(pid, pending)``.

    The C spawner clones it straight into its cgroup and runs its *steps* without
    Python; *pending* is then what the child runs on until it has exec'd (see
    clone_into). Without the spawner, ``fork_exec`` starts it while the daemon
    stands in the cgroup (see cgroups.joined), and *pending* is None.
    """
    gevent.get_hub().loop.install_sigchld()  # before any child can end: the child watcher needs it
    cloned = clone_into.spawn(cgroup, executable, args, env_list, cwd, stdin, stdout, stderr, errpipe_write,
                              CHILD_UMASK, steps)
    if cloned is not None:
        return cloned
    if steps:
        _refuse_if_threaded(os.fsdecode(args[0]))
    with cgroups.joined(cgroup):
        pid = _fork_exec(args, (executable,), (errpipe_write,), cwd, env_list, stdin, stdout, stderr,
                         errpipe_read, errpipe_write, steps.preexec(errpipe_write) if steps else None)
    return pid, None


def serve_ready_io(longest=IO_FIRST_SECONDS):
    """Let the loop serve what is ready (log pipes above all) before a spawn blocks it (SPEC §11).

    A fork holds the loop for a while; lines waiting in pipes meanwhile would be
    stamped late, and two services' lines merged out of write order. Waits until
    the loop is idle, but never more than *longest*: a stream that never pauses
    must not hold spawns back.
    """
    with gevent.Timeout(longest, False):
        gevent.idle()
def thread_count():
    """Return how many OS threads this process has (gevent's greenlets are not threads)."""
    return len(os.listdir("/proc/self/task"))


def _refuse_if_threaded(program):
    """Refuse to run Python between fork and exec while another thread exists.

    Setting limits and switching user runs Python in the forked child; a thread
    of the parent holding a lock at fork time (the allocator, logging, the import
    lock) would deadlock it. The daemon has no threads (its resolver is c-ares,
    see daemon.py), so this only fires on a bug: loudly, instead of a hang.
    """
    threads = thread_count()
    if threads > 1:
        log.error("refusing to start %s with user or limits: the daemon has %d threads, it must have one",
                  program, threads)
        raise SpawnError(f"cannot start {program}: the daemon has {threads} threads and cannot safely "
                         "switch user or apply limits (a bug: see the daemon log)")


# (user, group) -> Identity: passwd and group lookups may sit on LDAP or sssd and
# stall the loop, so each is made once per bake (or reload: ``forget_identities``).
_identities = {}


def _resolve_identity(user, group):
    if user is None and group is None:
        return None
    identity = _identities.get((user, group))
    if identity is None:
        try:
            identity = _identities[user, group] = users.resolve(user, group)
        except users.UnknownIdentity as error:
            raise SpawnError(str(error)) from None  # not kept: a user created meanwhile is found
    return identity


def forget_identities():
    """Look users and groups up afresh from now on (a new bake, a reload of the daemon)."""
    _identities.clear()


def fork_exec_plain(argv, env, cwd, stdin, stdout, stderr):
    """Start the absolute program ``argv[0]`` with these fds, without gevent: return its pid.

    For start-up, before gevent's hub exists: no child watcher is installed, so
    the caller reaps the child itself (``waitpid``). Raises OSError.
    """
    errpipe_read, errpipe_write = os.pipe2(os.O_CLOEXEC)
    try:
        pid = _fork_exec(
            [os.fsencode(arg) for arg in argv], (os.fsencode(argv[0]),), (errpipe_write,), cwd,
            [os.fsencode(f"{key}={value}") for key, value in env.items()], stdin, stdout, stderr,
            errpipe_read, errpipe_write, None, watched=False)
    finally:
        close_now(errpipe_write)
    try:
        failure = _read_all(errpipe_read)
    finally:
        close_now(errpipe_read)
    if failure:
        get_original("os", "waitpid")(pid, 0)
        raise OSError(errno.ENOEXEC, child_setup.describe(failure, argv[0], child_setup.Steps(None, {}, cwd, False)))
    return pid


def _fork_exec(args, executables, pass_fds, cwd, env_list, stdin, stdout, stderr,
               errpipe_read, errpipe_write, preexec, watched=True):
    if watched:  # the child watcher needs SIGCHLD; start-up before the hub reaps by itself
        gevent.get_hub().loop.install_sigchld()
    arguments = [
        args, executables, True, pass_fds, cwd, env_list,
        stdin, -1, -1, stdout, -1, stderr, errpipe_read, errpipe_write,
        True, True, -1, None, None, None, CHILD_UMASK, preexec,
        preexec is None,  # allow_vfork: safe only when no Python code runs in the child
    ]
    return _posixsubprocess.fork_exec(*arguments)


def _read_exec_report(fd):
    """Read the exec error pipe until the child has exec'd (EOF), letting other greenlets run.

    A child that sets limits or switches user runs Python before exec: milliseconds
    on a loaded machine, which a blocking read would stall the whole loop for.
    """
    os.set_blocking(fd, False)
    chunks = []
    while chunk := nb_read(fd, 4096):
        chunks.append(chunk)
    return b"".join(chunks)


def _read_all(fd):
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    return b"".join(chunks)


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


def _state(pid):
    """Return the state letter of *pid* in ``/proc/<pid>/stat`` (R, S, T, Z...), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
    except OSError:
        return None
    return data[data.rfind(b")") + 2:][:1].decode()


def stopped(pid):
    """True when *pid* is stopped by a signal or traced (state T or t)."""
    return _state(pid) in ("T", "t")


def _is_zombie(pid):
    return _state(pid) == "Z"


_waitpid = get_original("os", "waitpid")


def start_time(pid):
    """Return when *pid* started, in epoch seconds (as psutil's create_time), or None if gone.

    Read from ``/proc/<pid>/stat`` directly: it is on the spawn path of every service.
    """
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, _STAT_READ_SIZE)  # one read(2): no buffered file object on the spawn path
    except OSError:
        return None
    finally:
        close_now(fd)
    fields = data[data.rfind(b")") + 2:].split()
    return _boot_time() + int(fields[19]) / _CLOCK_TICKS



