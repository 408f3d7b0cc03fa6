"""One loaded config: its snapshot, its services, and starting and stopping them in order."""

import logging
import os
import pwd
import time

import gevent
from gevent.event import Event
from gevent.pool import Group

from keplerd import persist
from keplerd.model.encoding import encode_batched
from keplerd.logs.store import LogStore
from keplerd.model import actions, states
from keplerd.model.errors import UnknownName
from keplerd.osproc import cgroups
from keplerd.paths import ConfigPaths
from keplerd.supervise import accounting, events, lifecycle
from keplerd.supervise.instances import Instances, renamed_from, valid_counts
from keplerd.supervise.system import System

log = logging.getLogger("keplerd.project")

STATE_FORMAT = 1
STATE_RETRY_SECONDS = 1.0
PERSIST_INTERVAL = 0.15  # at least this many seconds between two writes of state.json
MAX_PERSIST_INTERVAL = 1.0  # and at most this many, however long a write takes
STATE_WRITE_SHARE = 0.05  # of the daemon's time that writing state.json may take while services change


class Project(Instances):
    """A baked config loaded in the daemon.

    Owns the greenlets of its services (one ``Group``), the subscribers that watch
    it, and ``state.json``.
    """

    def __init__(self, state_dir, config_id, snapshot, saved_state=None, system=None):
        self.id = config_id
        self.state_dir = state_dir
        self.paths = ConfigPaths(state_dir, config_id)
        self.snapshot = snapshot
        self.system = system or System()   # the OS seam, shared by its services and hooks
        self.source_path = snapshot["source_path"]
        self.name = snapshot.get("display_name") or os.path.basename(self.source_path)
        # Who baked it (SPEC §21); a snapshot older than owners is root's.
        self.owner_uid = snapshot.get("owner", 0)
        self.owner = user_name(self.owner_uid)
        self.log_listeners = set()
        self.logs = LogStore(self.paths.logs, self.log_listeners, snapshot.get("kepler", {}).get("logs"))
        self.subscribers = set()
        self.on_init_done = False
        self._greenlets = Group()
        self._changed = Event()
        self._persist_pending = False
        self._state_unwritten = False  # the last write failed: a retry is due
        self._retry = None             # the timer of that retry
        self._persist_timer = None
        self._last_write = -PERSIST_INTERVAL
        self._last_write_seconds = 0.0  # how long the last write of state.json took
        # Instance counts that ``keplerctl scale`` set, kept in state.json until the next bake (SPEC §17).
        self.scaled = valid_counts((saved_state or {}).get("scaled"), snapshot["services"])
        self.services = {}
        self._instances = {}
        self._build_services()
        if saved_state:
            self._restore(saved_state)

    # -- loading and saving ---------------------------------------------------------

    @classmethod
    def create(cls, state_dir, config_id, baked, owner=0, system=None):
        """Write a freshly baked config, owned by uid *owner*, into its state dir and return it loaded."""
        baked.snapshot["owner"] = owner
        paths = ConfigPaths(state_dir, config_id)
        os.makedirs(paths.logs, mode=0o770, exist_ok=True)
        os.makedirs(paths.env_files, mode=0o770, exist_ok=True)
        persist.write_bytes(paths.source_path, baked.snapshot["source_path"].encode())
        persist.write_bytes(paths.config_copy, baked.config_bytes)
        for name, data in baked.env_files.items():
            persist.write_bytes(os.path.join(paths.env_files, name), data)
        persist.write_json(paths.snapshot, baked.snapshot)
        project = cls(state_dir, config_id, baked.snapshot, system=system)
        project.write_state()
        return project

    @classmethod
    def load(cls, state_dir, config_id, system=None):
        """Load a config from its state dir (``snapshot.json`` and ``state.json``)."""
        paths = ConfigPaths(state_dir, config_id)
        snapshot = persist.read_json(paths.snapshot)
        if snapshot is None:
            raise FileNotFoundError(paths.snapshot)
        return cls(state_dir, config_id, snapshot, persist.read_json(paths.state), system=system)

    def _restore(self, saved):
        self.on_init_done = saved.get("on_init_done", False)
        services = saved.get("services", {})
        for name, service in self.services.items():
            if name in services:
                service.restore(services[name])
                continue
            renamed = renamed_from(name, service.base, services)
            if renamed is not None:
                # A daemon killed in an apply that renamed it (snapshot written, state.json not yet).
                log.warning("%s: %s was recorded as %s: taking its state and logs", self.name, name, renamed)
                self.logs.rename(renamed, name)
                service.log = self.logs.writer(name, service.base_spec.get("logs"))  # the files it now names
                service.restore(services[renamed])

    def take_definition(self, snapshot, baked=None):
        """Make *snapshot* this config's definition (``apply``); services are redefined by the caller.

        The copies of the files it was baked from (*baked*, when it is a whole
        bake) are written first; ``snapshot.json`` last, by an atomic rename: a
        daemon that dies at any point loads the old snapshot or the new one.
        """
        if baked is not None:
            persist.write_bytes(self.paths.config_copy, baked.config_bytes)
            for name, data in baked.env_files.items():
                persist.write_bytes(os.path.join(self.paths.env_files, name), data)
        persist.write_json(self.paths.snapshot, snapshot)
        old_logs, self.snapshot = self.snapshot["kepler"]["logs"], snapshot
        if snapshot["kepler"]["logs"] != old_logs:
            self.logs.forget("global", snapshot["kepler"]["logs"])  # global hook logs: the new settings
        # Whoever applied the whole file owns it from now on, as after a recreate (SPEC §21).
        self.owner_uid = snapshot.get("owner", 0)
        self.owner = user_name(self.owner_uid)

    def forget_service(self, name):
        """Drop a stopped service (every instance) that the definition no longer has, and delete its logs."""
        for service in self._instances.pop(name, None) or [self.services[name]]:
            self.services.pop(service.name)
            self.logs.clear(service.name)
            self.logs.forget(service.name)
        self.scaled.pop(name, None)
        self.persist()

    def saved_services(self):
        """Return the service states of ``state.json`` as the previous daemon left them."""
        saved = persist.read_json(self.paths.state) or {}
        return saved.get("services", {})

    def state_json(self):
        """Return ``state.json`` as bytes, encoded a few services at a time.

        Never all the runtimes as dicts at once: ~1.2 KiB each, for every write while 300 services start.
        """
        head = persist.encode_json({"format": STATE_FORMAT, "on_init_done": self.on_init_done, "scaled": self.scaled})
        runtimes = ((name, service.runtime()) for name, service in self.services.items())
        return head[:-1] + b',"services":{' + encode_batched(runtimes, dict) + b"}}"

    def write_state(self):
        """Write ``state.json`` now (the one place it is written); raise OSError.

        A full disk releases the state dir's reserve first (``persist.Reserve``).
        """
        persist.write_state_json(self.state_dir, self.paths.state, self.state_json())
        self.system.trim_heap_soon()  # the state it was built from is free now (osproc/heap.py)

    def write_state_now(self):
        """Write ``state.json`` now if the disk lets us, else as ``persist`` retries (never raises)."""
        try:
            self.write_state()
        except OSError:
            self.persist()

    def persist(self):
        """Write ``state.json`` soon, at most once per ``persist_interval``: changes meanwhile share a write.

        Each write is an fsync (milliseconds) that stalls every greenlet; a burst of
        changes (300 services starting) costs a few writes instead of hundreds.
        ``shutdown`` writes at once; a crash may lose the last interval.
        """
        if self._persist_pending:
            return
        self._persist_pending = True
        wait = self._last_write + persist_interval(self._last_write_seconds) - time.monotonic()
        if wait <= 0:
            gevent.get_hub().loop.run_callback(self._write_pending_state)
        else:
            self._persist_timer = gevent.get_hub().loop.timer(wait)
            self._persist_timer.start(self._write_pending_state)

    def _write_pending_state(self):
        self._persist_pending = False
        self._persist_timer = None
        self._last_write = time.monotonic()
        if not os.path.isdir(self.paths.root):
            return
        try:
            self.write_state()
        except OSError as error:
            self._last_write_seconds = 0.0
            if not self._state_unwritten:
                log.error("%s: cannot write state.json: %s (retrying every %gs)", self.name, error,
                          STATE_RETRY_SECONDS)
            self._state_unwritten = True
            if self._retry is None:
                self._retry = gevent.get_hub().loop.timer(STATE_RETRY_SECONDS)
                self._retry.start(self._retry_state_write)
            return
        self._last_write_seconds = time.monotonic() - self._last_write
        if self._state_unwritten:
            self._state_unwritten = False
            log.info("%s: state.json written again", self.name)

    def _retry_state_write(self):
        self._retry = None
        self.persist()

    # -- events ----------------------------------------------------------------------

    def spawn(self, function, *args):
        """Run *function* in a greenlet owned by this config."""
        return self._greenlets.spawn(function, *args)

    def adopt(self, greenlet):
        """Start *greenlet* (created first, so that others can refer to it) as one of this config's."""
        self._greenlets.start(greenlet)

    def hold(self, greenlet):
        """Own *greenlet* before it starts (a parked supervisor's successor): a shutdown kills it unstarted."""
        self._greenlets.add(greenlet)

    def service_changed(self, service):
        """Record and announce a service's new state."""
        self.persist()
        changed, self._changed = self._changed, Event()
        changed.set()
        event = {"kind": "state", "config": self.name, "service": service.name, **service.runtime()}
        for subscriber in tuple(self.subscribers):
            subscriber.offer(event)

    def record(self, service, kind, **fields):
        """Publish an event of *service* (a name, or ``global``) on the daemon's feed (SPEC §19)."""
        events.FEED.publish({"time": time.time(), "config": self.name, "config_path": self.source_path,
                             "config_id": self.id, "owner": self.owner, "service": service, "kind": kind,
                             **fields})

    def wait_change(self, timeout=None):
        """Block until any service of this config changes state (or *timeout*)."""
        return self._changed.wait(timeout)

    def attach(self, subscriber, logs=True):
        """Send state changes (and log output when *logs*) to *subscriber*."""
        self.subscribers.add(subscriber)
        if logs:
            subscriber.log_listener = _log_forwarder(self.name, subscriber)
            self.log_listeners.add(subscriber.log_listener)

    def detach(self, subscriber):
        self.subscribers.discard(subscriber)
        self.log_listeners.discard(getattr(subscriber, "log_listener", None))

    # -- commands --------------------------------------------------------------------

    def select(self, names):
        """Return the service instances named (all when *names* is empty); raise ``UnknownName`` on unknown.

        ``web`` names every instance of ``web``, ``web.2`` one of them (SPEC §17).
        """
        if not names:
            return list(self.services.values())
        found, unknown = {}, []
        for name in names:
            matched = self._match(name)
            if not matched:
                unknown.append(name)
            found.update((service.name, service) for service in matched)
        if unknown:
            raise UnknownName(f"no such service: {', '.join(unknown)}")
        return list(found.values())

    def _match(self, name):
        if name in self.services:
            return [self.services[name]]
        if name in self._instances:
            return self.instances(name)
        base, _, index = name.rpartition(".")
        if index.isdigit() and 1 <= int(index) <= len(self.instances(base)):
            return [self.instances(base)[int(index) - 1]]  # ``web.1`` of a plain ``web``
        return []

    def names(self, names):
        """Return the instance names *names* select, or () for the whole config."""
        return [service.name for service in self.select(names)] if names else []

    def all_terminal(self, names=()):
        return all(service.status in states.TERMINAL for service in self.select(names))

    def edges(self):
        """Return ``{instance: [instances it depends on]}``: an instance depends on every instance of a dependency."""
        return {name: [dep.name for base in service.base_spec["depends_on"] for dep in self.instances(base)]
                for name, service in self.services.items()}

    def start_order(self, names):
        """Return the instances in *names* in the config's start order (instances ascending)."""
        return [service.name for base in self.snapshot["start_order"] for service in self.instances(base)
                if service.name in names]

    @property
    def global_hooks(self):
        return self.snapshot["kepler"]["hooks"]

    def request_restart(self, names, reason):
        """Restart *names* for *reason* (``actions.RESTART_REASONS``) in a greenlet of this config.

        The one door of every restart: a user's, a watch's, and those propagated to
        ``restart: true`` dependents (a policy restart happens inside the service's
        supervisor, which then asks here for its dependents). Returns the greenlet;
        its value is ``(started names, None)`` or ``(None, why it failed)``.
        """
        return self.spawn(lifecycle.restart_requested, self, list(names), reason)

    # -- views -----------------------------------------------------------------------

    def ps_rows(self, stats=False):
        """Yield the rows of ``ps``: each service's runtime, whether its process is stopped (SIGSTOP), and,
        with *stats*, what it costs (SPEC §19). One at a time: the caller encodes each as it comes."""
        for service in self.services.values():
            row = {"config": self.name, "config_path": self.source_path, "owner": self.owner, "name": service.name,
                   "service": service.base, "replica": service.index if service.name != service.base else None,
                   **service.runtime(), "paused": bool(service.pid) and self.system.paused(service.pid)}
            if stats:
                row.update(accounting.stats_of(self, service))
            yield row

    def inspect(self, names=()):
        return {
            "config": {"id": self.id, "source_path": self.source_path, "state_dir": self.paths.root,
                       "owner": self.owner, "owner_uid": self.owner_uid,
                       "on_init_done": self.on_init_done, "hooks": self.global_hooks},
            "services": {service.name: {"config": service.spec, "state": service.runtime(),
                                        "effective_wait": service.spec["effective_wait"],
                                        "containment": cgroups.mode(),
                                        "cgroup": _cgroup_of(self.id, service)}
                         for service in self.select(names)},
        }

    # -- hand-over to the next image of the daemon (SPEC §20) ---------------------------

    def at_rest(self):
        """Tell whether every supervisor only waits (see ``Service.at_rest``)."""
        return all(service.at_rest() for service in self.services.values())

    def hand_over(self):
        """Return this config's runtime for the next image, having written ``state.json`` for a fallback."""
        self.logs.flush()
        self.write_state()
        return {"on_init_done": self.on_init_done,
                "services": {name: service.hand_over() for name, service in self.services.items()}}

    def take_over(self, record):
        """Carry on with the runtime the previous image handed over."""
        self.on_init_done = record["on_init_done"]
        for name, service_record in record["services"].items():
            if name in self.services:
                self.services[name].take_over(service_record)

    def shutdown(self):
        """Stop every service without changing what the user asked for, then close logs.

        Whatever goes wrong, no process of this config outlives it and ``state.json``
        is written: a stop that fails kills what is left, and the failure is raised.
        """
        try:
            lifecycle.stop(self, why=actions.SHUTDOWN)
        except BaseException:
            for service in self.services.values():
                service.kill_process()
            raise
        finally:
            self.close()
            self.write_state()

    def close(self):
        """Let go of everything this config holds in the daemon (its services have ended)."""
        for service in self.services.values():
            service.disarm_watch()  # a watch outlives an exit (SPEC §10): its inotify fd goes now
        self._greenlets.kill()
        if self._persist_timer is not None:  # a write still due happens now, not after the close
            self._persist_timer.stop()
            self._write_pending_state()
        if self._retry is not None:
            self._retry.stop()
        self.close_logs()

    def close_logs(self):
        self.logs.close()


def _cgroup_of(config_id, service):
    """Return the cgroup of *service*: its running process's (a failed rename leaves it elsewhere), else its own."""
    cgroup = getattr(service.child, "cgroup", None)
    return cgroup if cgroup is not None else cgroups.path_of(config_id, service.name)


def persist_interval(last_write_seconds):
    """Return the least time between two writes of ``state.json``, given how long the last one took.

    A write of 1,000 services' state (400 KB, encoded and fsynced) takes ~10 ms,
    more on a loaded machine: writing every PERSIST_INTERVAL would take a third of
    the daemon's time while they start. Spacing writes by the time they take keeps
    that to STATE_WRITE_SHARE, within PERSIST_INTERVAL … MAX_PERSIST_INTERVAL.
    """
    return min(MAX_PERSIST_INTERVAL, max(PERSIST_INTERVAL, last_write_seconds / STATE_WRITE_SHARE))


def user_name(uid):
    """Return the name of *uid*, or the number as text when it has no passwd entry."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _log_forwarder(config_name, subscriber):
    def forward(name, stream, data):
        subscriber.offer(
            {"kind": "log", "config": config_name, "name": name, "stream": stream,
             "data": data.decode("utf-8", "replace")},
            size=len(data) + 100,
        )
    return forward
