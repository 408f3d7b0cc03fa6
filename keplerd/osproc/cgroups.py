"""Cgroup v2 containment: one cgroup per service instance (SPEC §19).

The cgroups live under a root: the daemon's own cgroup when systemd delegated it
(``Delegate=yes``; the daemon then moves itself into the ``daemon`` leaf, since a
cgroup that enables controllers for its children may hold no process), else
``kepler/`` under the cgroup2 mount (``/sys/fs/cgroup`` on pure v2 hosts,
``/sys/fs/cgroup/unified`` on hybrid ones). A service instance runs in
``<root>/<config-id>/<service>``.

The child starts in its cgroup: it is cloned straight into it
(``clone_into``, ``clone3(CLONE_INTO_CGROUP)``) where the kernel and the build
allow it. Otherwise, and for a child that runs Python before exec (limits, a
user, a terminal), it joins by inheritance: the daemon writes itself into the
service's ``cgroup.procs`` right before ``fork_exec`` and back into its own
cgroup right after (``joined``). The daemon has no threads and does not yield in
between, so nothing else of it runs there (see docs/decisions.md).

Without a writable cgroup2 hierarchy (``activate`` says why) every function here
is a no-op and the daemon falls back on process groups (``mode()``).
"""

import contextlib
import errno
import logging
import os

from keplerd.osproc import usage

log = logging.getLogger("keplerd.cgroups")

DAEMON_LEAF = "daemon"
CGROUP = "cgroup"
PROCESS_GROUP = "process-group"
KILL_WAIT_SECONDS = 5.0
_KILL_POLL_SECONDS = 0.005
CPU_PERIOD_USEC = 100_000

# A service's ``limits.<key>``: the controller it needs and how it is written.
CONTROLLED_LIMITS = {
    "memory_max": ("memory", "memory.max", str),
    "cpus": ("cpu", "cpu.max", lambda cpus: f"{max(1000, round(cpus * CPU_PERIOD_USEC))} {CPU_PERIOD_USEC}"),
    "pids_max": ("pids", "pids.max", str),
}


class LimitUnavailable(Exception):
    """A limit needs a controller (or cgroups) that keplerd cannot use; the message says which."""


class _Hierarchy:
    """Where Kepler's cgroups live (``root``), the daemon's own cgroup (``home``), the cgroup2 ``mount``."""

    def __init__(self, root, home, mount):
        self.root = root
        self.home = home
        self.mount = mount


_active = None
_reason = "cgroups were not looked for"


def activate(enabled=True):
    """Find and prepare a writable cgroup2 root; return ``(mode, detail)`` for the boot log."""
    global _active, _reason
    _active = None
    if not enabled:
        _reason = "disabled by the containment setting"
        return PROCESS_GROUP, _reason
    try:
        _active = _prepare_hierarchy(*_locate())
    except (OSError, LookupError) as error:
        _reason = getattr(error, "strerror", None) or str(error)
        return PROCESS_GROUP, _reason
    return CGROUP, _active.root


def deactivate():
    """Forget the hierarchy (tests of the fallback in one process)."""
    global _active
    _active = None


def mode():
    """Return ``"cgroup"`` or ``"process-group"``: how service processes are contained."""
    return CGROUP if _active is not None else PROCESS_GROUP


def path_of(config_id, service):
    """Return the cgroup directory of a service instance, or None without cgroups."""
    if _active is None:
        return None
    return os.path.join(_active.root, config_id, service)


def _locate():
    """Return ``(mount, own cgroup)`` of the cgroup2 hierarchy, or raise LookupError."""
    mount = None
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            separator = fields.index("-")
            if fields[separator + 1] == "cgroup2" and fields[3] == "/":
                mount = fields[4]
                break
    if mount is None:
        raise LookupError("no cgroup2 file system is mounted")
    with open("/proc/self/cgroup") as own:
        for line in own:
            if line.startswith("0::"):
                return mount, line[3:].strip()
    raise LookupError("the daemon is in no cgroup2 cgroup")


def _prepare_hierarchy(mount, own):
    home = os.path.normpath(mount + own)
    if os.path.basename(home) == DAEMON_LEAF and _delegated(os.path.dirname(home)):
        home = os.path.dirname(home)  # a re-executed daemon, already in its leaf
    if own != "/" and _delegated(home):
        root = home
        home = os.path.join(root, DAEMON_LEAF)
        os.makedirs(home, exist_ok=True)
        _write(os.path.join(home, "cgroup.procs"), str(os.getpid()))
    else:
        root = os.path.join(mount, "kepler")
        _make_dir(root)
        # Proves cgroup.procs is writable for us, without moving anywhere new.
        _write(os.path.join(home, "cgroup.procs"), str(os.getpid()))
    if not os.path.exists(os.path.join(root, "cgroup.kill")):
        raise LookupError(f"{root} has no cgroup.kill (Linux 5.14 or later is needed)")
    hierarchy = _Hierarchy(root, home, mount)
    _round_trip(hierarchy)
    return hierarchy


def _round_trip(hierarchy):
    """Move the daemon into a probe cgroup and back home, as every spawn will; raise OSError if it cannot.

    Coming back must work before any service relies on it: a daemon stranded in a
    service's cgroup would die with that service.
    """
    probe = os.path.join(hierarchy.root, f".probe-{os.getpid()}")
    os.makedirs(probe, exist_ok=True)
    try:
        pid = str(os.getpid())
        _write(os.path.join(probe, "cgroup.procs"), pid)
        _write(os.path.join(hierarchy.home, "cgroup.procs"), pid)
    finally:
        _remove(probe)


def _make_dir(path):
    """Make a cgroup directory readable by all (as systemd's): a service may read its own limits.

    Only root may write in it, whatever the daemon's umask.
    """
    try:
        os.mkdir(path)
    except FileExistsError:
        return
    os.chmod(path, 0o755)


def _delegated(path):
    """Return True when systemd delegated *path* to us (``Delegate=yes`` marks it)."""
    for name in ("trusted.delegate", "user.delegate"):
        try:
            if os.getxattr(path, name) == b"1":
                return True
        except OSError:
            continue
    return False


def _write(path, text):
    """Write *text* to a cgroup file in one write(2), through an unbuffered file.

    Two of these run per spawn (``joined``): a text file would add an ioctl, an
    lseek and a Python-side buffer to each.
    """
    with open(path, "wb", buffering=0) as file:
        file.write(text.encode())


def _read(path):
    """Return the text of a cgroup file, read unbuffered (``ps --stats`` reads three per service)."""
    with open(path, "rb", buffering=0) as file:
        return file.read().decode()


# -- placing a service ---------------------------------------------------------------


def prepare(config_id, service, limits):
    """Create the instance's cgroup with *limits* applied; return its path (None without cgroups).

    Raises ``LimitUnavailable`` when a limit cannot be applied, naming the controller.
    """
    wanted = {key: limits[key] for key in CONTROLLED_LIMITS if (limits or {}).get(key) is not None}
    if _active is None:
        if wanted:
            key = next(iter(wanted))
            raise LimitUnavailable(f"limits.{key} needs the cgroup {CONTROLLED_LIMITS[key][0]} controller, "
                                   f"but keplerd has no writable cgroup v2 hierarchy ({_reason})")
        return None
    return prepare_path(os.path.join(_active.root, config_id, service), limits)


def prepare_path(path, limits):
    """Create cgroup *path* (an instance's) with *limits* applied and return it; raise ``LimitUnavailable``."""
    wanted = {key: limits[key] for key in CONTROLLED_LIMITS if (limits or {}).get(key) is not None}
    config_dir = os.path.dirname(path)
    try:
        _make_dir(config_dir)
        _make_dir(path)
        if wanted:
            _apply_limits(config_dir, path, wanted)
    except OSError as error:
        raise LimitUnavailable(f"cannot prepare cgroup {path}: {error.strerror}") from None
    return path


def _apply_limits(config_dir, path, wanted):
    needed = sorted({CONTROLLED_LIMITS[key][0] for key in wanted})
    available = _read(os.path.join(_active.root, "cgroup.controllers")).split()
    for key in wanted:
        controller = CONTROLLED_LIMITS[key][0]
        if controller not in available:
            raise LimitUnavailable(f"limits.{key} needs the cgroup {controller} controller, which is not "
                                   f"available to keplerd (not in {_active.root}/cgroup.controllers)")
    enable = " ".join(f"+{controller}" for controller in needed)
    for parent in (_active.root, config_dir):
        _write(os.path.join(parent, "cgroup.subtree_control"), enable)
    for key, value in wanted.items():
        _controller, filename, render = CONTROLLED_LIMITS[key]
        _write(os.path.join(path, filename), render(value))


@contextlib.contextmanager
def joined(path):
    """Put the daemon in cgroup *path* for the block (a fork inside it starts there).

    The block must not yield to other greenlets: the daemon is back home on exit.
    """
    if path is None:
        yield
        return
    pid = str(os.getpid())
    _write(os.path.join(path, "cgroup.procs"), pid)
    try:
        yield
    finally:
        _write(os.path.join(_active.home, "cgroup.procs"), pid)


def cgroup_of(pid):
    """Return the cgroup directory of *pid* when it is one of ours (a service instance's), else None.

    For a service process a re-executed daemon takes over (``daemon reexec``).
    """
    if _active is None:
        return None
    try:
        with open(f"/proc/{pid}/cgroup") as own:
            lines = own.read().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("0::"):
            path = os.path.normpath(_active.mount + line[3:])
            if os.path.dirname(os.path.dirname(path)) == _active.root:
                return path
    return None


# -- ending a service ----------------------------------------------------------------


def populated(path):
    """Return True while a process lives in cgroup *path* (or below it)."""
    try:
        return "populated 1" in _read(os.path.join(path, "cgroup.events"))
    except FileNotFoundError:
        return False


def kill(path):
    """SIGKILL every process of cgroup *path* at once (forks racing with it included)."""
    try:
        _write(os.path.join(path, "cgroup.kill"), "1")
    except FileNotFoundError:
        pass  # already removed: nothing left to kill


def kill_and_remove(path, sleep):
    """Kill everything in cgroup *path*, wait until it is empty, remove it and its empty config dir.

    *sleep* is the cooperative sleep of the caller. Returns False if it stayed busy.
    """
    waited = 0.0
    while populated(path):
        kill(path)
        if waited >= KILL_WAIT_SECONDS:
            log.warning("cgroup %s is still populated %gs after cgroup.kill; leaving it", path, waited)
            return False
        sleep(_KILL_POLL_SECONDS)
        waited += _KILL_POLL_SECONDS
    _remove(path)
    _remove(os.path.dirname(path))  # the config's dir, once its last service is gone
    return True


def remove_if_empty(path):
    """Remove cgroup *path* if no process lives in it (else leave it; a missing one is fine)."""
    _remove(path)


def _remove(path):
    try:
        os.rmdir(path)
    except OSError as error:
        if error.errno not in (errno.ENOENT, errno.EBUSY, errno.ENOTEMPTY):
            log.warning("cannot remove cgroup %s: %s", path, error.strerror)


def leftovers(config_id):
    """Return the paths of the service cgroups a previous daemon left for *config_id*."""
    if _active is None:
        return []
    config_dir = os.path.join(_active.root, config_id)
    try:
        names = os.listdir(config_dir)
    except FileNotFoundError:
        return []
    return [os.path.join(config_dir, name) for name in sorted(names)
            if os.path.isdir(os.path.join(config_dir, name))]


# -- accounting ----------------------------------------------------------------------


def pids(path):
    """Return the pids in cgroup *path* (empty when it is gone)."""
    try:
        return [int(pid) for pid in _read(os.path.join(path, "cgroup.procs")).split()]
    except FileNotFoundError:
        return []


def reading(path):
    """Return ``usage.Reading`` of cgroup *path*: ``cpu.stat``, ``memory.current`` or the RSS summed."""
    members = pids(path)
    try:
        cpu_seconds = _cpu_usec(_read(os.path.join(path, "cpu.stat"))) / 1e6
    except FileNotFoundError:
        cpu_seconds = 0.0
    try:
        memory = int(_read(os.path.join(path, "memory.current")))
    except (FileNotFoundError, ValueError):
        memory = sum(usage.resident_bytes(pid) for pid in members)
    return usage.Reading(cpu_seconds, memory, len(members))


def _cpu_usec(text):
    for line in text.splitlines():
        if line.startswith("usage_usec "):
            return int(line.split()[1])
    return 0
