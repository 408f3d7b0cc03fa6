"""A fake OS for in-process supervision tests: children whose exits the test controls.

It stands in for ``keplerd.supervise.system.System``. Every spawn (a service's
process or a hook run, told apart by their log names: ``web``, ``web.pre_start``,
``global.post_stop``) is recorded in ``FakeSystem.journal``; what a spawn does is
set per log name with ``FakeSystem.script``. By default a hook exits 0 at once and
a service runs until it is stopped or the test ends it (``child.exit(code)``);
script a hook with ``exit_code=None`` to have it run until it is killed.
"""

import contextlib
import itertools
import signal

import gevent
from gevent.event import AsyncResult, Event
from gevent.queue import Queue

from keplerd.logs.format import now_stamp
from keplerd.osproc import strays
from keplerd.osproc.process import SpawnError
from keplerd.supervise.health import ProbeResult

_pids = itertools.count(40000)


class Behaviour:
    """What spawning one log name does (see ``FakeSystem.script``)."""

    def __init__(self, exit_code=None, spawn_error=None, ignores_stop=False, output=None):
        self.exit_code = exit_code       # exit at once with this code (None: keep running)
        self.spawn_error = spawn_error   # refuse to start, with this reason
        self.ignores_stop = ignores_stop  # survive the stop signal until killed after the grace period
        self.output = output             # a line written to stdout at start


class FakeChild:
    """A pretend child process: exits when the test (or a signal) says so."""

    def __init__(self, system, name, spec, behaviour, writer):
        self.system = system
        self.writer = writer
        self.name = name
        self.spec = spec
        self.pid = self.pgid = next(_pids)
        self.create_time = 1000.0 + self.pid
        self.returncode = None
        self.signals = []
        self._ignores_stop = behaviour.ignores_stop
        self._exit = AsyncResult()

    def exit(self, returncode=0):
        """End the child with *returncode* (negative: killed by that signal)."""
        if self.returncode is None:
            self.returncode = returncode
            self.system.journal.append(("exit", self.name, returncode))
            self._exit.set(returncode)

    def say(self, text, stream="stdout"):
        """Write one line of output, as the child's pump would store it."""
        self.writer.write(stream, now_stamp() + text.encode() + b"\n")

    @property
    def running(self):
        return self.returncode is None

    def wait(self, timeout=None):
        return self._exit.wait(timeout)

    def rawlink(self, callback):
        self._exit.rawlink(callback)

    def unlink(self, callback):
        self._exit.unlink(callback)

    def stop(self, signum, grace):
        self.signals.append(signum)
        self.system.journal.append(("stop", self.name, signum))
        if not self._ignores_stop:
            self.exit(-signum)
        if self.wait(grace) is None:
            self.kill()
        return self.wait()

    def kill(self):
        self.signals.append(signal.SIGKILL)
        self.exit(-signal.SIGKILL)


class FakeNotifySocket:
    """A pretend NOTIFY_SOCKET: what the test puts in ``messages`` is what the service sent."""

    def __init__(self, path):
        self.path = path
        self.messages = Queue()
        self.closed = False

    def listen(self, on_message):
        from keplerd.supervise.readiness import parse

        while True:
            on_message(parse(self.messages.get().encode()))

    def close(self):
        self.closed = True


class FakeSystem:
    """The OS seam, faked: records spawns, signals and probes; children exit on command."""

    def __init__(self):
        self.journal = []       # ("spawn" | "exit" | "stop" | "signal" | "probe", name, detail)
        self.environments = {}  # log name -> the environment of its last spawn (with the stray mark)
        self.stray_sweeps = []  # the marks strays were collected for, in order
        self.children = []      # every FakeChild, in spawn order
        self.behaviours = {}
        self.probe_results = {}  # service name -> (passed, exit_code) still to give: a list, or held (Queue)
        self.leftovers = set()   # (pid, create_time) an earlier daemon left running
        self.spawned = Event()
        self.notify_sockets = []
        self.inotify = None      # an INotify class to use instead of the real one

    @contextlib.contextmanager
    def passing_child(self):
        """A hook run or probe is under way (the real System counts them for ``daemon reexec``)."""
        yield

    # -- the test's side -------------------------------------------------------------

    def script(self, name, **behaviour):
        """Set what spawning log name *name* does from now on (see ``Behaviour``)."""
        self.behaviours[name] = Behaviour(**behaviour)

    def hold_probes(self, name):
        """Make each probe of service *name* wait for ``answer_probe``."""
        self.probe_results[name] = Queue()

    def answer_probe(self, name, passed):
        """Answer the next held probe of *name*; return once it has been taken."""
        queue = self.probe_results[name]
        queue.put((passed, 0 if passed else 1))
        with gevent.Timeout(5, AssertionError(f"no probe of {name} took the answer")):
            while queue.qsize():
                gevent.sleep(0.001)
        gevent.sleep(0)  # let the verdict be handled

    def probes(self, name):
        return sum(1 for kind, probed, _ in self.journal if kind == "probe" and probed == name)

    def delays(self):
        """Return the back-off delays slept, in order."""
        return [seconds for kind, _, seconds in self.journal if kind == "sleep"]

    def stops(self):
        """Return ``(log name, signal)`` of every stop asked, in order."""
        return [(name, signum) for kind, name, signum in self.journal if kind == "stop"]

    def spawns(self, prefix=None):
        """Return the log names spawned, in order (only those starting with *prefix*)."""
        return [name for kind, name, _ in self.journal
                if kind == "spawn" and (prefix is None or name == prefix or name.startswith(prefix + "."))]

    def child(self, name):
        """Return the latest child spawned under log name *name*."""
        found = [child for child in self.children if child.name == name]
        assert found, f"{name} was never spawned (spawned: {self.spawns()})"
        return found[-1]

    def running(self, name):
        return any(child.name == name and child.running for child in self.children)

    def wait_spawn(self, name, count=1, timeout=5):
        """Block until *name* was spawned *count* times; return its latest child."""
        with gevent.Timeout(timeout, AssertionError(f"{name} not spawned {count}x: {self.spawns()}")):
            while sum(child.name == name for child in self.children) < count:
                self.spawned.clear()
                self.spawned.wait()
        return self.child(name)

    # -- the seam --------------------------------------------------------------------

    def spawn_logged(self, writer, spec, env=None, instance=None):
        name = writer.name
        self.environments[name] = env
        behaviour = self.behaviours.get(name) or Behaviour(exit_code=0 if "." in name else None)
        if behaviour.spawn_error:
            self.journal.append(("spawn-failed", name, behaviour.spawn_error))
            raise SpawnError(behaviour.spawn_error)
        child = FakeChild(self, name, spec, behaviour, writer)
        self.children.append(child)
        self.journal.append(("spawn", name, tuple(spec["command"])))
        if behaviour.output:
            child.say(behaviour.output)
        if behaviour.exit_code is not None:
            # As a real child: it exits after the spawn returned, never inside it.
            gevent.get_hub().loop.run_callback(child.exit, behaviour.exit_code)
        self.spawned.set()
        return child, []

    def probe(self, check, spec, spawn):
        name = next((child.name for child in reversed(self.children) if child.spec is spec), "?")
        results = self.probe_results.get(name)
        if isinstance(results, Queue):
            passed, exit_code = results.get()   # held: the test answers each probe
        else:
            passed, exit_code = results.pop(0) if results else (True, 0)
        self.journal.append(("probe", name, passed))
        return ProbeResult(passed, exit_code, "" if passed else "probe failed")

    def notify_socket(self, path, user, group):
        """A notify socket the test speaks into: ``system.notify(name, "READY=1")``."""
        socket = FakeNotifySocket(path)
        self.notify_sockets.append(socket)
        return socket

    def notify(self, service_spec_name, text):
        """Send *text* on the latest notify socket (of the latest run)."""
        self.notify_sockets[-1].messages.put(text)

    def open_inotify(self, **options):
        """A real inotify by default (watches on temp dirs are harmless); tests may set ``inotify``."""
        from inotify_simple import INotify

        return (self.inotify or INotify)(**options)

    def take_turn(self):
        pass  # one turn at a time is the loop's concern, not a rule of supervision

    def trim_heap_soon(self):
        """Nothing to give back: the test's heap is the test runner's."""

    def sleep(self, seconds):
        """Record a back-off delay and let the loop turn once instead of waiting it."""
        self.journal.append(("sleep", None, seconds))
        gevent.sleep(0)

    def signal_group(self, pgid, signum):
        for child in self.children:
            if child.pgid == pgid and child.running:
                self.journal.append(("signal", child.name, signum))
                if signum == signal.SIGKILL:
                    child.kill()
                return True
        return False

    def end_leftovers(self, child):
        """The main process exited: what it left in its group goes (no cgroups here)."""
        self.signal_group(child.pgid, signal.SIGKILL)

    def kill_leftover_cgroups(self, config_id):
        return []

    def rename_cgroup(self, child, name, limits):
        """A renamed instance's running child: its cgroup would follow (none here)."""
        self.journal.append(("rename-cgroup", child.name, name))

    def reading(self, child):
        from keplerd.osproc.usage import Reading

        return Reading(0.0, 0, 1 if child.running else 0)

    def paused(self, pid):
        return False

    def service_mark(self, config_id, owner):
        return strays.service_mark(config_id, owner)

    def marked_env(self, env, state_dir, mark):
        return strays.marked_env(env, state_dir, mark)

    def collect_strays(self, mark, main=None):
        """Nothing escapes a fake tree: record the sweep (services sweep at every end)."""
        self.stray_sweeps.append(mark)
        return []

    def kill_leftover(self, pid, create_time):
        if (pid, create_time) in self.leftovers:
            self.leftovers.discard((pid, create_time))
            self.journal.append(("kill-leftover", pid, create_time))
            return True
        return False

    def forget_identities(self):
        self.journal.append(("forget-identities", None, None))

    def start_time(self, pid):
        return next((child.create_time for child in self.children if child.pid == pid and child.running), None)
