"""The OS seam: spawn children (``children.Child`` then watches, stops and kills them).

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
import logging
import os
import signal

import gevent
from gevent.monkey import get_original
from gevent.os import nb_read

from keplerd.model import defaults
from keplerd.osproc import cgroups, child_setup, clone_into, users
from keplerd.osproc.children import Child
from keplerd.osproc.groups import signal_group

log = logging.getLogger("keplerd.process")

DEFAULT_PATH = defaults.DEFAULT_PATH
CHILD_UMASK = 0o022

# gevent's patched os.close defers closing pipes until the loop runs; the write ends
# we hand to a child must be closed at once or the reader never sees EOF.
close_now = get_original("os", "close")

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
