"""The OS seam: spawn children, watch them exit, signal and kill their process groups.

Children are created with the C ``fork_exec`` of the standard library (about 0.5 ms
each, against ~6 ms for gevent's Python-level fork) and then watched by gevent's
child watcher, so waiting on them is cooperative. Each child starts its own
session, so its pid is also its process group id.

Requires a monkey-patched gevent hub (the daemon patches first).
"""

import errno
import os
import resource
import signal
import time

import _posixsubprocess
import gevent
import psutil
from gevent.event import AsyncResult
from gevent.monkey import get_original

from keplerd import users

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CHILD_UMASK = 0o022
KILL_POLL_INTERVAL = 0.01

# gevent's patched os.close defers closing pipes until the loop runs; the write ends
# we hand to a child must be closed at once or the reader never sees EOF.
close_now = get_original("os", "close")

# Kernels built without CONFIG_PROC_CHILDREN lack these files; psutil's scan still works there.
_PROC_CHILDREN = os.path.exists(f"/proc/self/task/{os.getpid()}/children")

_RLIMITS = {"memory": resource.RLIMIT_AS, "cpu_time": resource.RLIMIT_CPU, "max_fds": resource.RLIMIT_NOFILE}


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


def spawn(argv, env, cwd, user=None, group=None, limits=None, stdout=None, stderr=None):
    """Start *argv* in its own session and return a ``Child``.

    *stdout* / *stderr* are fds for the child's output (``None``: /dev/null). *user*
    and *group* follow SPEC §12; *limits* maps ``memory``/``cpu_time``/``max_fds``
    to values. Raises ``SpawnError`` with a user-facing reason.
    """
    if not os.path.isdir(cwd):
        raise SpawnError(f"working directory not found: {cwd}")
    identity = _resolve_identity(user, group)
    if identity:
        env = identity.add_login_env(env)
    executable = find_program(argv[0], env, cwd)
    env_list = [os.fsencode(f"{key}={value}") for key, value in env.items() if "=" not in key]
    preexec = _rlimit_setter(limits) if limits and any(v is not None for v in limits.values()) else None
    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    errpipe_read, errpipe_write = os.pipe2(os.O_CLOEXEC)
    try:
        pid = _fork_exec(
            [os.fsencode(arg) for arg in argv], (os.fsencode(executable),), (errpipe_write,),
            cwd, env_list, devnull,
            stdout if stdout is not None else devnull, stderr if stderr is not None else devnull,
            errpipe_read, errpipe_write, identity, preexec,
        )
        # Register the watcher before anything can yield, so the exit is never missed.
        child = Child(pid)
    finally:
        close_now(errpipe_write)
        close_now(devnull)
    try:
        failure = _read_all(errpipe_read)
    finally:
        close_now(errpipe_read)
    if failure:
        child.wait()
        raise SpawnError(_describe_exec_failure(failure, argv[0]))
    return child


def _resolve_identity(user, group):
    if user is None and group is None:
        return None
    try:
        return users.resolve(user, group)
    except users.UnknownIdentity as error:
        raise SpawnError(str(error)) from None


def _fork_exec(args, executables, pass_fds, cwd, env_list, stdin, stdout, stderr,
               errpipe_read, errpipe_write, identity, preexec):
    gevent.get_hub().loop.install_sigchld()
    gid = identity.gid if identity else None
    groups = identity.groups if identity else None
    uid = identity.uid if identity else None
    arguments = [
        args, executables, True, pass_fds, cwd, env_list,
        stdin, -1, -1, stdout, -1, stderr, errpipe_read, errpipe_write,
        True, True, -1, gid, groups, uid, CHILD_UMASK, preexec,
        preexec is None,  # allow_vfork: safe only when no Python code runs in the child
    ]
    return _posixsubprocess.fork_exec(*arguments)


def _rlimit_setter(limits):
    settings = [(_RLIMITS[name], value) for name, value in limits.items() if value is not None]

    def set_limits():
        for which, value in settings:
            resource.setrlimit(which, (value, value))

    return set_limits


def _read_all(fd):
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    return b"".join(chunks)


def _describe_exec_failure(data, program):
    kind, _, rest = data.decode(errors="replace").partition(":")
    code, _, where = rest.partition(":")
    if kind == "OSError":
        number = int(code, 16)
        if where == "noexec:chdir":
            return f"cannot enter working directory: {os.strerror(number)}"
        if number == errno.ENOENT:
            return f"program not found: {program}"
        return f"cannot execute {program}: {os.strerror(number)}"
    if kind == "SubprocessError":
        return "cannot apply user, group or limits before exec"
    return f"cannot execute {program}: {data.decode(errors='replace')}"


class Child:
    """A spawned child: its pid (= process group), start time and exit status."""

    def __init__(self, pid):
        self.pid = pid
        self.pgid = pid
        self.returncode = None
        self._exit = AsyncResult()
        self._watcher = gevent.get_hub().loop.child(pid, ref=False)
        self._watcher.start(self._on_exit, self._watcher)
        self.create_time = start_time(pid)

    def _on_exit(self, watcher):
        watcher.stop()
        self.returncode = os.waitstatus_to_exitcode(watcher.rstatus)
        self._exit.set(self.returncode)

    def wait(self, timeout=None):
        """Return the exit code (negative: killed by that signal), or ``None`` on timeout."""
        return self._exit.wait(timeout)

    def descendants(self):
        """Return the live descendants of the child (psutil processes, identity-checked)."""
        return descendants(self.pid)

    def stop(self, signum, grace):
        """Send *signum* to the process group, wait *grace*, then kill whatever is left.

        Descendants are collected before signalling so that one that moved to its
        own process group is still found and killed. Returns the exit code.
        """
        survivors = self.descendants()
        signal_group(self.pgid, signum)
        deadline = time.monotonic() + grace
        self.wait(timeout=grace)
        while _any_alive(self.pgid, survivors) and time.monotonic() < deadline:
            gevent.sleep(KILL_POLL_INTERVAL)
        kill_all(self.pgid, survivors + self.descendants())
        return self.wait()


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


def signal_group(pgid, signum):
    """Send *signum* to a process group; a group that is already gone is fine."""
    try:
        os.killpg(pgid, signum)
        return True
    except ProcessLookupError:
        return False


def kill_all(pgid, processes):
    """SIGKILL a process group and the given psutil processes (skipping reused pids)."""
    signal_group(pgid, signal.SIGKILL)
    for process in processes:
        try:
            process.kill()  # psutil checks the create time, so a reused pid is spared
        except psutil.Error:
            pass  # already gone: exactly what we want


def _any_alive(pgid, processes):
    if _group_alive(pgid):
        return True
    return any(_alive(process) for process in processes)


def _group_alive(pgid):
    """Return True while a member of the group exists.

    A zombie member counts, but not for long: the daemon is a child subreaper, so
    orphans of its services become its children and gevent's loop reaps them.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _alive(process):
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def start_time(pid):
    """Return the start time of *pid* as psutil reports it, or ``None`` if it is gone."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def kill_leftover(pid, pgid, create_time):
    """Kill the group of a process recorded by an earlier daemon, if it is still that process.

    Returns True when something was killed. The pid must still exist with the same
    start time: a reused pid belongs to someone else and is never touched.
    """
    if not pid or create_time is None:
        return False
    try:
        process = psutil.Process(pid)
        if abs(process.create_time() - create_time) > 0.01:
            return False
        survivors = descendants(pid)
    except psutil.Error:
        return False
    kill_all(pgid or pid, [process] + survivors)
    return True
