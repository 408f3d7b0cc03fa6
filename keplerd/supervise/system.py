"""The OS seam: everything supervision asks of the operating system, in one object.

``Project`` holds one ``System`` and its services and hooks reach the OS only
through it (as honcho's ``_process_ctor`` or supervisor's ``options``), so the
supervision rules can be tested in-process against a fake whose children exit
when the test says (``tests/unit/fake_system.py``).

What a child must offer (``osproc.children.Child`` is the real one): ``pid``,
``pgid``, ``create_time``, ``returncode``, ``wait(timeout)``, ``stop(signum, grace)``,
``kill()``.
"""

import contextlib
import logging

import gevent
from gevent.lock import BoundedSemaphore, Semaphore

from keplerd.osproc import cgroup_rename, cgroups, children, groups, heap, launch, process, strays

log = logging.getLogger("keplerd.system")

# How many children may be between their start and their exec at once. They exec in
# parallel, on every CPU; the daemon goes on with each once its exec is done, and
# at most this many come back in one turn of the loop (each ~0.5 ms of work).
EXECS_IN_FLIGHT = 8
# How many stoppers act between two idle turns of the loop (each ~0.3 ms before it waits).
ACTS_PER_TURN = 8


class System:
    """The real operating system, by way of ``osproc`` (the only code that forks or kills)."""

    def __init__(self):
        self._fork_gate = Semaphore()
        self._exec_slots = BoundedSemaphore(EXECS_IN_FLIGHT)
        self._turns_taken = 0
        self.passing_children = 0   # hook runs and probes now: nobody hands those over (SPEC §20)

    @contextlib.contextmanager
    def passing_child(self):
        """Count a hook run or probe while it runs: ``daemon reexec`` waits until there is none."""
        self.passing_children += 1
        try:
            yield
        finally:
            self.passing_children -= 1

    def adopt_child(self, pid, create_time):
        """Watch a service process an earlier image of this daemon spawned: a child, or None if gone."""
        return children.Child.adopt(pid, create_time)

    def spawn_logged(self, writer, spec, env=None, instance=None):
        """Start a service or hook *spec* logging to *writer*: ``(child, pumps)``; raise SpawnError.

        *env* replaces the spec's environment (it adds the stray mark, ``osproc/strays.py``);
        *instance* (``(config id, service)``) gives a service's process its cgroup.
        """
        # Starting a child holds the loop (a fork for milliseconds, a clone for tens of
        # microseconds), and greenlets that are ready run back to back: 300 services
        # starting at once would start for a whole second before the loop looked at a
        # timer or a pipe. One start at a time, each after an idle loop
        # (``process.serve_ready_io``), keeps every stall to one start. The gate is not
        # held while the child goes on to exec (under load it waits for a CPU: one exec
        # at a time paced a 1,000-service start at 4 s, the daemon idle 80 % of it);
        # a few children exec at once, so that few come back to the loop together.
        with self._exec_slots:
            return launch.spawn_logged(writer, spec, instance, env=env, gate=self._fork_gate)

    def take_turn(self):
        """Wait for this greenlet's turn to act on a child: a few at a time, each few after an idle loop.

        The stoppers of a whole config start together, and each signals its service
        before it waits: 300 of them back to back held the loop for 10-60 ms a turn.
        One per idle loop made a stop of 1,000 twice as long (0.47 -> 0.85 s).
        """
        with self._fork_gate:
            self._turns_taken += 1
            if self._turns_taken % ACTS_PER_TURN == 0:
                process.serve_ready_io()

    def rename_cgroup(self, child, name, limits):
        """Give the cgroup *child* runs in the instance name *name* (``web`` → ``web.1``), with *limits*.

        If that fails the process keeps running, contained, in its cgroup under
        the old name (``child.cgroup`` still says where): stop, accounting and the
        end of the run use that one, and the next run starts in a cgroup of the new name.
        """
        if child.cgroup is None:
            return
        try:
            child.cgroup = cgroup_rename.rename(child.cgroup, name, limits)
        except OSError as error:
            log.warning("cannot rename cgroup %s to %s: %s; the process stays in it until it ends",
                        child.cgroup, name, error.strerror)

    def one_off_cgroup(self, child, config_id, name, limits):
        """Return the cgroup an exec'd command of instance *name* joins (None without cgroups).

        The running *child*'s own (wherever a failed rename left it), else the
        instance's, made with its *limits* for the command. Raises ``process.SpawnError``.
        """
        if child is not None and getattr(child, "cgroup", None) is not None:
            return child.cgroup
        try:
            return cgroups.prepare(config_id, name, limits)
        except cgroups.LimitUnavailable as error:
            raise process.SpawnError(str(error)) from None

    def remove_idle_cgroup(self, path):
        """Remove cgroup *path* if nothing runs in it any more (else it stays, for the next stop or boot)."""
        cgroups.remove_if_empty(path)

    def paused(self, pid):
        """True when *pid* is stopped (SIGSTOP, a debugger): ``ps`` says ``(paused)``."""
        return pid in children.PAUSED_PIDS

    def service_mark(self, config_id, owner):
        """The mark of a service's (or ``global``'s) processes: ``<config id>/<owner>``."""
        return strays.service_mark(config_id, owner)

    def marked_env(self, env, state_dir, mark):
        """*env* with the stray mark of *mark* under *state_dir* (what ``collect_strays`` looks for)."""
        return strays.marked_env(env, state_dir, mark)

    def collect_strays(self, mark, main=None):
        """Kill what a service left outside its process tree (it carries *mark*, or is in *main*'s session)."""
        return strays.collect(mark, main)

    def end_leftovers(self, child):
        """The main process of *child* exited: kill what is left of its group and cgroup."""
        child.end_leftovers()

    def reading(self, child):
        """Return what *child*'s run costs now: a ``usage.Reading``."""
        return child.reading()

    def kill_leftover_cgroups(self, config_id):
        """Kill and remove the cgroups an earlier daemon left for a config; return those that held processes."""
        killed = []
        for path in cgroups.leftovers(config_id):
            if cgroups.populated(path):
                killed.append(path)
            cgroups.kill_and_remove(path, gevent.sleep)
        return killed

    def probe(self, check, spec, spawn):
        """Run the health *check* of the service *spec* once: a ``health.ProbeResult``.

        *spawn* starts the helper greenlet that reads a command probe's output.
        """
        from keplerd.supervise import health

        with self.passing_child():
            return health.probe(check, spec, spawn)

    def notify_socket(self, path, user, group):
        """Bind a service run's ``NOTIFY_SOCKET`` at *path*, owned by its user (``readiness.NotifySocket``)."""
        from keplerd.supervise import readiness

        return readiness.NotifySocket(path, user, group)

    def adopt_notify_socket(self, path, fd):
        """Take over a run's ``NOTIFY_SOCKET`` an earlier image of the daemon handed over."""
        from keplerd.supervise import readiness

        return readiness.NotifySocket.adopt(path, fd)

    def open_inotify(self, **options):
        """Return a new inotify instance (``inotify_simple.INotify``) for a service's file watch."""
        from inotify_simple import INotify  # loaded by the first service that watches

        return INotify(**options)

    def trim_heap_soon(self):
        """Give the heap's free pages back to the OS shortly (a supervisor ended: its saved stack is free)."""
        heap.TRIMMER.soon()

    def sleep(self, seconds):
        """Wait *seconds* cooperatively (the restart back-off; faked, it costs a test nothing)."""
        gevent.sleep(seconds)

    def signal_group(self, pgid, signum):
        """Signal a process group; False when it is already gone."""
        return groups.signal_group(pgid, signum)

    def kill_leftover(self, pid, create_time):
        """Kill what an earlier daemon recorded, if that process still exists; True if it did."""
        return children.kill_leftover(pid, create_time)

    def forget_identities(self):
        """Resolve users and groups afresh at the next spawns (after a bake or a reload)."""
        process.forget_identities()

    def start_time(self, pid):
        """Return when *pid* started (epoch seconds), or None if it is gone."""
        return children.start_time(pid)
