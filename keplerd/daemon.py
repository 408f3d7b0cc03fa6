"""keplerd: the root daemon that runs, supervises and stops the services of configs.

Patches gevent first: everything after this import runs in greenlets.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import ctypes  # noqa: E402
import fcntl  # noqa: E402
import grp  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
from gevent.event import Event  # noqa: E402

from keplerd import __version__, lifecycle, paths  # noqa: E402
from keplerd.control import handlers  # noqa: E402
from keplerd.control.server import AlreadyRunning, ControlServer, bind_socket  # noqa: E402
from keplerd.logs.cursors import CursorTable  # noqa: E402
from keplerd.registry import Registry  # noqa: E402
from keplerd.service import UP  # noqa: E402

log = logging.getLogger("keplerd")

DEFAULT_SOCKET_GROUP = "kepler"
PR_SET_CHILD_SUBREAPER = 36


class StartupError(Exception):
    """The daemon cannot start; the message says why."""


class Daemon:
    """The daemon's lifetime: boot, serve, shut down."""

    def __init__(self, state_dir, socket_group=DEFAULT_SOCKET_GROUP):
        self.state_dir = state_dir
        self.socket_group = socket_group
        self.pid = os.getpid()
        self.started_at = time.time()
        self.registry = Registry(state_dir)
        self.cursors = CursorTable()
        self._server = None
        self._lock_fd = None
        self._stop_requested = Event()
        self._stopped = Event()
        self._shutting_down = False

    def run(self):
        """Boot, serve until asked to stop, then stop every service and clean up."""
        self._prepare_state_dir()
        self._lock()
        listener = bind_socket(paths.socket_path(self.state_dir), self.socket_group)
        self._write_pid()
        _become_subreaper()
        self._server = ControlServer(
            listener, self.socket_group,
            lambda session, request_id, request: handlers.dispatch(self, session, request_id, request))
        self._restore_configs()
        self._server.start()
        for signum in (signal.SIGTERM, signal.SIGINT):
            gevent.signal_handler(signum, self.request_shutdown)
        log.info("keplerd %s ready on %s (pid %s)", __version__, paths.socket_path(self.state_dir), self.pid)
        self._stop_requested.wait()
        self.shutdown()
        self._server.stop(timeout=2.0)
        self._cleanup_files()
        log.info("keplerd stopped")

    def request_shutdown(self):
        """Ask the main greenlet to shut down (signal handlers only post this)."""
        self._stop_requested.set()

    def shutdown(self):
        """Stop every service of every config (configs in parallel); idempotent."""
        if self._shutting_down:
            self._stopped.wait()
            return
        self._shutting_down = True
        log.info("stopping all services")
        projects = list(self.registry.projects.values())
        gevent.joinall([gevent.spawn(project.shutdown) for project in projects])
        self._stopped.set()
        self._stop_requested.set()

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

    def _restore_configs(self):
        """Load every baked config and bring back the services that were up."""
        for project in self.registry.load_all():
            self.registry.kill_leftovers(project)
            wanted = [name for name, service in project.services.items() if service.desired == UP]
            if wanted:
                log.info("%s: restarting %s", project.name, ", ".join(wanted))
                # In dependency order, awaiting only dependencies that come back too:
                # the others were not up when the daemon went away.
                lifecycle.start(project, wanted, no_deps=True, wait_on=set(wanted))

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


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="keplerd", description="Kepler process orchestrator daemon.")
    parser.add_argument("--state-dir", help="state directory (default $KEPLER_DAEMON_PATH or /var/lib/kepler)")
    parser.add_argument("--socket-group", default=DEFAULT_SOCKET_GROUP,
                        help="group allowed to use the socket (default: kepler)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--version", action="version", version=f"keplerd {__version__}")
    return parser.parse_args(argv)


def configure_logging(level):
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main(argv=None):
    args = parse_args(argv)
    configure_logging(args.log_level)
    if os.geteuid() != 0:
        print("keplerd: must run as root (it starts services as any user)", file=sys.stderr)
        sys.exit(1)
    os.umask(0o007)
    daemon = Daemon(paths.state_dir(args.state_dir), args.socket_group)
    try:
        daemon.run()
    except (AlreadyRunning, StartupError) as error:
        log.error("%s", error)
        sys.exit(1)
    except OSError as error:
        log.error("cannot start: %s", error)
        sys.exit(1)
