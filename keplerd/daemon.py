"""keplerd: the root daemon that runs, supervises and stops the services of configs.

Patches gevent first: everything after this import runs in greenlets.
"""

from gevent import config, events, monkey

# patch_all announces itself to plugins found through package entry points, which
# loads importlib.metadata and reads every installed package's metadata: 2 MiB of
# resident memory, and third-party code run inside a root daemon. Kepler has no
# plugins; the patch events still reach in-process subscribers.
events.notify_and_call_entry_points = events.notify
# The defaults, but for ssl: the daemon speaks no TLS, and patching it would load
# OpenSSL for nothing (about 4 MiB of resident memory).
# No threads in the daemon: Python runs between fork and exec (user, limits), which a
# thread holding a lock would deadlock. gevent's default resolver is a thread pool;
# c-ares resolves in the loop without one (process._refuse_if_threaded checks).
config.resolver = "ares"
# How the hub prints the context of a crashed greenlet. gevent's default, pprint.saferepr,
# imports pprint and with it dataclasses and inspect: 1.1 MiB resident for the daemon's life.
config.format_context = "reprlib.repr"
monkey.patch_all(ssl=False)

import ctypes  # noqa: E402
import fcntl  # noqa: E402
import socket  # noqa: E402
import grp  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
from gevent.event import AsyncResult, Event  # noqa: E402
from gevent.pool import Group  # noqa: E402
from gevent.queue import Queue  # noqa: E402

from keplerd import __version__, bakery, handover, paths, persist  # noqa: E402
from keplerd import daemonize as background  # noqa: E402
from keplerd import settings as daemon_settings  # noqa: E402
from keplerd.config.errors import ConfigError  # noqa: E402
from keplerd.control import handlers  # noqa: E402
from keplerd.daemon_reexec import Reexec  # noqa: E402
from keplerd.control.server import AlreadyRunning, ControlServer, SessionLimits, bind_socket  # noqa: E402
from keplerd.logs.cursor_table import CursorTable  # noqa: E402
from keplerd.notify import Notifier, watchdog_interval  # noqa: E402
from keplerd.osproc import cgroups, heap, strays  # noqa: E402
from keplerd.supervise import lifecycle  # noqa: E402
from keplerd.supervise.events import FEED  # noqa: E402
from keplerd.supervise.autostart import Autostart  # noqa: E402
from keplerd.supervise.loop_lag import LoopLag  # noqa: E402
from keplerd.supervise.registry import Registry  # noqa: E402
from keplerd.model import actions  # noqa: E402
from keplerd.model.states import DESIRED_UP  # noqa: E402

log = logging.getLogger("keplerd")

PR_SET_CHILD_SUBREAPER = 36
RELOAD, STOP, REEXEC = "reload", "stop", "reexec"
SYSTEMD_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
RESTART_ONLY_SETTINGS = ("state_dir", "socket_group", "containment", "metrics_listen", "metrics_allow_remote")


class StartupError(Exception):
    """The daemon cannot start; the message says why."""


class Daemon(Reexec):
    """The daemon's lifetime: boot, serve, reload, shut down.

    *reread* returns fresh Settings for a reload (or raises ConfigError);
    *on_ready* is called once the socket answers and boot configs are launched.
    """

    def __init__(self, settings, reread=None, notifier=None, on_ready=(), handed=None, log_path=None,
                 systemd_env=None):
        self.settings = settings
        self.state_dir = settings.state_dir
        self.socket_group = settings.socket_group
        self.pid = os.getpid()
        self.started_at = time.time()
        self.registry = Registry(self.state_dir, settings.bake_options())
        self.cursors = CursorTable()
        self.autostart = Autostart(self.registry, settings.autostart_dir)
        self._reread = reread
        self._notifier = notifier or Notifier()
        self._on_ready = list(on_ready)
        self._server = None
        self._metrics = None
        self.loop_lag = None       # LoopLag, armed in run(): the hub's loop is this process's
        self._lock_fd = None
        self._mailbox = Queue()
        self._greenlets = Group()  # the daemon's own: the watchdog, the configs' shutdowns
        self._stopped = Event()
        self._shutting_down = False
        self._handed = handed      # the runtime an earlier image handed over (daemon reexec), if any
        self._log_path = log_path
        self._systemd_env = dict(systemd_env or {})  # NOTIFY_SOCKET & co. as we got them, for the next image
        self._listener = None
        self.generation = 1        # images of this daemon so far: daemon reexec adds one
        if handed:
            self.started_at, self.generation = handed["started_at"], handed["generation"] + 1
        # Event readers resume by seq across a reexec (the feed is handed over), never across a restart.
        if handed and handed.get("events"):
            FEED.take_over(handed["events"])
        else:
            FEED.id = f"{self.pid}-{self.started_at:.6f}"

    def run(self):
        """Boot, serve until asked to stop, then stop every service and clean up."""
        self._handle_signals()
        self.loop_lag = LoopLag(gevent.get_hub().loop)
        self.loop_lag.start()
        self._start_watchdog()
        if self._handed:
            # The socket never closed: clients that connected meanwhile wait in its backlog.
            self._lock_fd = self._handed["lock_fd"]
            self._listener = socket.socket(fileno=self._handed["listener_fd"])
        else:
            self._prepare_state_dir()
            self._lock()
            self._listener = bind_socket(paths.socket_path(self.state_dir), self.socket_group)
        self._write_pid()
        _become_subreaper()
        self._contain()
        self._serve_metrics()
        persist.keep_reserve(self.state_dir)  # space for state.json when the disk is full
        if not self._handed:
            bakery.start_zygote()  # importing the bake stack overlaps with the restore below
        self._server = ControlServer(
            self._listener, self.socket_group,
            lambda session, request_id, request: handlers.dispatch(self, session, request_id, request),
            SessionLimits(**self.settings.session_limits()), on_session_end=self.cursors.close_owned_by)
        if self._handed:
            self._adopt(self._handed)
            # Only now: spawning it installs the child watcher's SIGCHLD handler, which would reap a
            # service that ended during the exec before its adoption (its exit code lost).
            bakery.start_zygote()
        else:
            self._restore_configs()
        if self.settings.autostart_dir is None:
            log.info("private state dir %s: no autostart dir is read (--autostart-dir or autostart_dir "
                     "names one)", self.state_dir)
        self.autostart.scan()
        self._server.start()
        self._announce_ready()
        if self._handed:
            self.request_reload()  # the new image reads keplerd.conf and the autostart dir, as on SIGHUP
        self._serve()
        self.shutdown()
        self._server.stop(timeout=2.0)
        if self._metrics is not None:
            self._metrics.stop()
        self.cursors.close_all()
        self._greenlets.kill()
        self.loop_lag.close()
        bakery.stop_zygote()
        self._cleanup_files()
        log.info("keplerd stopped")

    def request_shutdown(self):
        """Ask the main greenlet to shut down (signal handlers only post this)."""
        self._mailbox.put(STOP)

    def request_reload(self):
        """Ask the main greenlet to reload settings and the autostart dir."""
        self._mailbox.put(RELOAD)

    def request_reexec(self):
        """Ask the main greenlet to hand everything to a fresh image; returns why it could not.

        On success the exec replaces this process and the caller never hears back.
        """
        outcome = AsyncResult()
        self._mailbox.put((REEXEC, outcome))
        return outcome.get()

    def shutdown(self):
        """Stop every service of every config (configs in parallel); idempotent."""
        if self._shutting_down:
            self._stopped.wait()
            return
        self._shutting_down = True
        self._notifier.stopping()
        log.info("stopping all services")
        projects = list(self.registry.projects.values())
        stoppers = [self._greenlets.spawn(project.shutdown) for project in projects]
        gevent.joinall(stoppers)
        for project, stopper in zip(projects, stoppers):
            if stopper.exception is not None:
                log.error("%s: shutdown failed: %r", project.name, stopper.exception, exc_info=stopper.exc_info)
        # Every service has ended: whatever still carries this state dir's mark is a stray, and so is
        # every child the daemon adopted (one that cleared its environment and left its session too).
        strays.collect_all(self.state_dir)
        strays.collect_adopted()
        self._stopped.set()
        self._mailbox.put(STOP)

    def reload(self):
        """Re-read ``keplerd.conf`` (log level, limits, autostart dir); start new autostart configs."""
        if self._shutting_down:
            return
        self._notifier.reloading()
        self.registry.system.forget_identities()
        if self._server is not None:
            self._server.reread_group()
        if self._reread is not None:
            try:
                self._apply(self._reread())
            except ConfigError as error:
                for line in error.errors:
                    log.error("reload: %s", line)
                log.error("reload: keeping the previous settings")
        started = self.autostart.scan()
        log.info("reloaded; autostarted %d new config(s)", len(started))
        self._notifier.ready(self._status())

    # -- serving ---------------------------------------------------------------------

    def _handle_signals(self):
        """Route signals to the mailbox: handlers only post, the main greenlet acts."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            gevent.signal_handler(signum, self.request_shutdown)
        gevent.signal_handler(signal.SIGHUP, self.request_reload)

    def _serve(self):
        """Handle posted requests until one says stop."""
        while True:
            request = self._mailbox.get()
            if request == STOP:
                return
            if request == RELOAD:
                self.reload()
            else:
                _, outcome = request
                outcome.set(self._reexec_or_say_why())

    def _announce_ready(self):
        log.info("keplerd %s ready on %s (pid %s)", __version__, paths.socket_path(self.state_dir), self.pid)
        self._notifier.ready(self._status())
        for callback in self._on_ready:
            callback()

    def _status(self):
        return f"{len(self.registry.projects)} config(s) loaded; socket {paths.socket_path(self.state_dir)}"

    def _start_watchdog(self):
        """Ping systemd's watchdog from the loop, so that a frozen loop gets the daemon restarted."""
        interval = watchdog_interval(os.environ, self.pid)
        if interval is None:
            return

        def ping():
            while True:
                self._notifier.watchdog()
                gevent.sleep(interval)

        log.info("systemd watchdog: pinging every %.3gs", interval)
        self._greenlets.spawn(ping)

    def _apply(self, fresh):
        """Use the reloadable parts of *fresh* settings; warn about the others."""
        kept = {key: getattr(self.settings, key) for key in RESTART_ONLY_SETTINGS}
        for key, value in kept.items():
            if getattr(fresh, key) != value:
                log.warning("reload: %s changed to %r: it takes effect when keplerd restarts",
                            key, getattr(fresh, key))
        logging.getLogger().setLevel(fresh.log_level.upper())
        self.registry.bake_options = fresh.bake_options()
        if self._server is not None:
            self._server.limits = SessionLimits(**fresh.session_limits())
        self.autostart.directory = fresh.autostart_dir
        self.settings = fresh.replace(**kept)

    # -- boot ------------------------------------------------------------------------

    def _prepare_state_dir(self):
        os.makedirs(self.state_dir, mode=0o770, exist_ok=True)
        try:
            gid = grp.getgrnam(self.socket_group).gr_gid
        except KeyError:
            gid = 0
        os.chown(self.state_dir, 0, gid)
        os.chmod(self.state_dir, 0o770)

    def _lock(self):
        """Hold an exclusive lock on the pid file for the daemon's lifetime."""
        path = paths.pid_path(self.state_dir)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o660)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(fd, 32).decode().strip() or "?"
            os.close(fd)
            raise AlreadyRunning(f"keplerd is already running (pid {other}) on {self.state_dir}") from None
        self._lock_fd = fd

    def _write_pid(self):
        os.ftruncate(self._lock_fd, 0)
        os.pwrite(self._lock_fd, f"{self.pid}\n".encode(), 0)

    def _contain(self):
        """Choose cgroups or process groups for the services, and say which (SPEC §19)."""
        how, detail = cgroups.activate(self.settings.containment == "auto")
        if how == cgroups.CGROUP:
            log.info("containment: cgroup (one per service instance under %s)", detail)
        else:
            log.info("containment: process-group (%s)", detail)

    def _serve_metrics(self):
        """Serve ``/metrics`` when asked to (SPEC §19); prometheus_client is loaded only then."""
        if not self.settings.metrics_listen:
            return
        from keplerd.metrics import address

        try:
            where = address.parse(self.settings.metrics_listen, self.settings.metrics_allow_remote)
        except address.BadAddress as error:
            raise StartupError(str(error)) from None
        from keplerd.metrics.exporter import Exporter

        try:
            self._metrics = Exporter(self.registry, where, self.loop_lag)
        except OSError as error:
            raise StartupError(f"cannot serve metrics on {self.settings.metrics_listen}: {error.strerror}") from None
        self._metrics.start()
        log.info("metrics on %s/metrics", self.settings.metrics_listen)

    def _restore_configs(self):
        """Load every baked config and bring back the services that were up."""
        projects = self.registry.load_all()
        orphaned = sum(len(self.registry.kill_leftovers(project)) for project in projects)
        # Processes an earlier daemon left that state.json does not name (strays, a full disk).
        strays.collect_all(self.state_dir)
        for project in projects:
            self._restore(project)
        if orphaned:
            log.warning("the previous daemon did not stop its services (killed or crashed): "
                        "%d service(s) it left running were killed and restarted", orphaned)

    def _restore(self, project):
        """Bring back *project*'s services that were up (their leftovers are already killed)."""
        wanted = [name for name, service in project.services.items() if service.desired == DESIRED_UP]
        if wanted:
            log.info("%s: restarting %s", project.name, ", ".join(wanted))
            # In dependency order, awaiting only dependencies that come back too:
            # the others were not up when the daemon went away.
            lifecycle.start(project, wanted, actions.Start(no_deps=True, wait_on=frozenset(wanted)))

    def _cleanup_files(self):
        for path in (paths.socket_path(self.state_dir), paths.pid_path(self.state_dir)):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass  # already gone: nothing to clean
        if self._lock_fd is not None:
            os.close(self._lock_fd)


def _become_subreaper():
    """Adopt orphans of our services, so none escapes supervision or stays a zombie."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        log.warning("cannot become a child subreaper: %s", os.strerror(ctypes.get_errno()))


def configure_logging(level):
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main(argv=None):
    args = daemon_settings.build_parser().parse_args(argv)
    if os.environ.get("KEPLER_DAEMON_PATH"):
        # Read again on reload, by then from / when daemonized: keep what it meant here.
        os.environ["KEPLER_DAEMON_PATH"] = os.path.abspath(os.environ["KEPLER_DAEMON_PATH"])
    if os.geteuid() != 0:
        print("keplerd: must run as root (it starts services as any user)", file=sys.stderr)
        sys.exit(1)
    handed, unusable = _resume(args.resume) if args.resume else (None, None)
    if handed:
        # Validated by the image that handed over; reading keplerd.conf again would only lengthen the pause.
        settings = daemon_settings.Settings(**handed["settings"])
    else:
        try:
            settings = daemon_settings.resolve(args, validate=bakery.validate_settings_at_boot)
        except ConfigError as error:
            for line in error.errors:
                print(f"keplerd: {line}", file=sys.stderr)
            sys.exit(1)
    os.umask(0o007)
    heap.keep_big_buffers_out_of_the_heap()
    log_path = background.output_path(args.log_file, args.daemonize, settings.state_dir)
    # A resumed image is in the background already, its output on the log it inherited.
    readiness = None if args.resume else background.send_output(log_path, args.daemonize)
    configure_logging(settings.log_level)
    if unusable:
        log.warning("cannot resume: %s; booting as after a crash (services are restarted)", unusable)

    def reread():
        if log_path:
            background.reopen_log(log_path)  # a reload follows a log rotation
        return daemon_settings.resolve(args, validate=bakery.validate_settings)

    on_ready = []
    if readiness:
        # Warnings of the start-up (no kepler group, a stale socket) reach whoever started us, not only the log.
        forward = background.WarningsTo(readiness)
        logging.getLogger().addHandler(forward)
        on_ready = [lambda: logging.getLogger().removeHandler(forward), readiness.ready]
    # Notifier and watchdog take these from the environment (so services never see them): keep them for a reexec.
    systemd_env = {key: os.environ[key] for key in SYSTEMD_VARIABLES if key in os.environ}
    daemon = Daemon(settings, reread, Notifier.from_environment(os.environ), on_ready=on_ready, handed=handed,
                    log_path=log_path, systemd_env=systemd_env)
    try:
        daemon.run()
    except (AlreadyRunning, StartupError) as error:
        _fail(readiness, str(error))
    except OSError as error:
        _fail(readiness, f"cannot start: {error}")
    finally:
        if readiness:  # does nothing once the daemon has said it is ready
            readiness.failed(f"keplerd stopped during start-up (see {log_path})")


def _resume(path):
    """Return ``(record, None)`` from a usable hand-over file, else ``(None, why)`` with inherited fds closed."""
    try:
        return handover.read(path), None
    except handover.CannotResume as error:
        handover.close_inherited()
        return None, str(error)


def _fail(readiness, message):
    log.error("%s", message)
    if readiness:
        readiness.failed(message)
    sys.exit(1)
