"""Strays: processes of a service that left its process tree, found by the mark they carry.

A service that daemonizes itself (``setsid sh -c 'cmd &'``) leaves a grandchild that
is no longer a descendant of the service's main process: the daemon, a child
subreaper, adopts it. Every process the daemon starts for a service (and its hooks)
therefore carries ``KEPLER_SERVICE_ID=<config id>/<service>`` and
``KEPLER_STATE_DIR=<state dir>`` in its environment, inherited by whatever it forks.
``collect`` kills the adopted children carrying a service's mark when the service
stops or its main process ends; ``collect_all`` kills every marked process of a state
dir at boot, when the previous daemon died and its strays went to init.

A process can clear its environment (``env -i``). It then still belongs to the
session its service's main process leads (every service process starts in a new
session): ``collect`` also takes the adopted children of that session, unless they
left it too (``setsid``). Those are found at the daemon's stop, when every service has
ended and so every adopted child is a stray (``collect_adopted``); a crash of the
daemon leaves them to init, where nothing tells them apart from other processes.

Where cgroups exist they contain a service fully; this is the fallback that works
without them (and the place a cgroup kill is called from).
"""

import logging
import os
import time

import gevent

from keplerd.osproc import children

log = logging.getLogger("keplerd.strays")

SERVICE_VAR = "KEPLER_SERVICE_ID"
STATE_VAR = "KEPLER_STATE_DIR"
MAX_ROUNDS = 20           # a chain of strays each forking the next is followed this deep
EXIT_WAIT_SECONDS = 1.0   # SIGKILL is asynchronous: how long to wait for the killed to exit
EXIT_POLL_SECONDS = 0.005


def service_mark(config_id, owner):
    """Return the mark of *owner* (a service name, or ``global``) of config *config_id*."""
    return f"{config_id}/{owner}"


def marked_env(env, state_dir, mark):
    """Return *env* with the mark variables set (they override the config's own)."""
    return {**env, SERVICE_VAR: mark, STATE_VAR: state_dir}


def collect(mark, main=None):
    """Kill the daemon's adopted children of a service, with their descendants; return their pids.

    An adopted child is the service's when it carries *mark*, or when it is in the
    session led by *main* (the service's ``children.Child``, None when unknown). The
    daemon's own live children (main processes, hooks, probes) are skipped: only
    processes re-parented to the daemon are strays. A killed stray's own children are
    re-parented to the daemon only once it has exited, so scan again until none is left.
    """
    wanted = _entry(SERVICE_VAR, mark)
    session = _session_led_by(main)

    def belongs(pid):
        return wanted in _environ(pid) or (session is not None and _session_of(pid) == session)

    return _kill_until_none(lambda: [pid for pid in _adopted() if belongs(pid)])


def collect_adopted():
    """Kill every adopted child of the daemon, with its descendants; return their pids.

    Only when no service runs (the daemon's stop): each adopted child was then left by
    one that ended, whatever its environment and session.
    """
    return _kill_until_none(_adopted)


def _session_led_by(main):
    """Return the session id of *main*'s run, or None when that id may name another session now.

    A session id is the pid of the process that made it, and the kernel reuses no
    pid while a process of its session lives: so the id names the main process's
    session until the pid goes to a new child of ours (reaped, everything of the
    session gone, and the pid given out again).
    """
    if main is None:
        return None
    if main.returncode is not None and main.pid in children.LIVE_PIDS:
        return None
    return main.pid


def collect_all(state_dir):
    """Kill every process on the machine marked with *state_dir*; return their pids.

    At boot, before any service of this daemon runs: what carries the mark was
    left by an earlier daemon of the same state dir (a crash, a full disk that
    kept a pid out of ``state.json``).
    """
    wanted = _entry(STATE_VAR, state_dir)
    me = os.getpid()
    return _kill_until_none(lambda: [int(name) for name in os.listdir("/proc")
                                     if name.isdigit() and int(name) != me and wanted in _environ(int(name))])


def _kill_until_none(scan):
    killed = []
    for _ in range(MAX_ROUNDS):
        found = scan()
        if not found:
            break
        _kill_trees(found)
        killed.extend(pid for pid in found if pid not in killed)
    return killed


def _entry(key, value):
    return os.fsencode(f"{key}={value}")


def _environ(pid):
    """Return the set of ``KEY=value`` entries of *pid*'s environment (empty when unreadable)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as file:
            return set(file.read().split(b"\0"))
    except OSError:
        return set()  # gone, a zombie, or a kernel thread


def _adopted():
    """The daemon's running children it did not spawn itself (re-parented to it: it is a subreaper).

    A killed one stays a zombie until the hub reaps it: it is not counted again.
    """
    return [pid for pid in _own_children() if pid not in children.LIVE_PIDS and _running(pid)]


def _session_of(pid):
    """Return the session id of *pid* (None when it is gone)."""
    fields = children.stat_fields(pid)
    return int(fields[3]) if fields else None


def _own_children():
    pids = []
    try:
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/children") as file:
                pids.extend(int(pid) for pid in file.read().split())
    except OSError:
        return _children_by_scan()
    return pids


def _children_by_scan():
    """Kernels without ``/proc/<pid>/task/<tid>/children``: find our children by their ppid."""
    import psutil

    try:
        return [child.pid for child in psutil.Process().children()]
    except psutil.Error:
        return []


def _kill_trees(pids):
    """SIGKILL each of *pids* with its group and descendants, and wait (bounded) until they are gone."""
    from keplerd.osproc import proctree  # psutil: loaded only when there is something to kill

    for pid in pids:
        log.warning("killing stray process %s (%s) and its descendants", pid, _name(pid))
        # Its group too: a pid that leads no group names none (a live group keeps its id unused).
        proctree.kill_tree(pid)
    deadline = time.monotonic() + EXIT_WAIT_SECONDS
    while any(map(_running, pids)) and time.monotonic() < deadline:
        gevent.sleep(EXIT_POLL_SECONDS)


def _name(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            return file.read().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return "gone"


def _running(pid):
    """True until *pid* has exited (a zombie has: its children are re-parented by then)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
    except OSError:
        return False
    return data[data.rfind(b")") + 2:][:1] not in (b"Z", b"X")
