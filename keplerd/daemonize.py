"""``keplerd --daemonize``: go to the background, and return only once the daemon is ready.

The classic double fork (the daemon is no session leader, so it can never get a
controlling terminal), with a pipe back to the process that was started: the
daemon writes ``ready`` once its socket answers, or ``error <why>`` when it
cannot start. That process then exits 0, or prints the reason and exits 1, which
is what an init script needs.

Also where the daemon's output goes (``output_path``, ``send_output``), and
start-up warnings passed on to the waiting process (``WarningsTo``).

This runs before gevent's hub exists (nothing has yielded yet), so the raw
``fork`` is safe and the daemon starts with a fresh loop.
"""

import logging
import os
import sys

from gevent import monkey

# gevent's patched fork would install a child watcher (and so create the hub) in the parent.
_fork = monkey.get_original("os", "fork")
_waitpid = monkey.get_original("os", "waitpid")

READY = b"ready"
ERROR = b"error "
WARNING = b"warning "


class Readiness:
    """The daemon's end of the pipe: tell the waiting process we are ready, or why we failed."""

    def __init__(self, fd):
        self._fd = fd

    def ready(self):
        self._say(READY, last=True)

    def failed(self, message):
        self._say(ERROR + message.encode(errors="replace"), last=True)

    def warn(self, message):
        """Pass a start-up warning on to the person starting the daemon (it also goes to the log)."""
        self._say(WARNING + message.replace("\n", " ").encode(errors="replace"), last=False)

    def _say(self, message, last):
        if self._fd is None:
            return
        try:
            os.write(self._fd, message + b"\n")
        except BrokenPipeError:
            last = True  # the waiting process was killed: nobody is left to tell
        if last:
            os.close(self._fd)
            self._fd = None


class WarningsTo(logging.Handler):
    """Pass warnings and errors logged during start-up on to ``keplerd --daemonize``'s caller."""

    def __init__(self, readiness):
        super().__init__(logging.WARNING)
        self._readiness = readiness

    def emit(self, record):
        if record.levelno == logging.WARNING:  # errors end the start-up: failed() says those
            self._readiness.warn(record.getMessage())


def output_path(log_file, go_to_background, state_dir):
    """Return where the daemon's output goes, or None to leave it where it is (the terminal).

    ``--log-file`` if given, else ``keplerd.log`` in the state dir for a daemon going
    to the background (``--daemonize``).
    """
    if log_file:
        return log_file
    if go_to_background:
        return os.path.join(state_dir, "keplerd.log")
    return None


def send_output(log_path, go_to_background):
    """Send output to *log_path* (if any); with *go_to_background* (``--daemonize``), go there too.

    Returns the daemonized process's Readiness, or None in the foreground.
    """
    if log_path is None:
        return None
    try:
        os.makedirs(os.path.dirname(log_path), mode=0o770, exist_ok=True)
        log_fd = open_log(log_path)
    except OSError as error:
        print(f"keplerd: cannot open log file {log_path}: {error.strerror}", file=sys.stderr)
        sys.exit(1)
    if go_to_background:
        return daemonize(log_fd, log_path)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    return None


def open_log(path):
    """Open (append) the file the daemon's stdout and stderr will go to; raise OSError."""
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)


def daemonize(log_fd, log_path):
    """Fork into the background; return the daemon's Readiness, in the daemon.

    The calling process waits for the daemon to say it is ready or failed, then
    exits: it never returns. The daemon's stdin is ``/dev/null`` and its stdout
    and stderr go to *log_fd*.
    """
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    leader = _fork()
    if leader:
        os.close(write_fd)
        os.close(log_fd)
        _waitpid(leader, 0)  # the session leader exits as soon as it has forked the daemon
        sys.exit(_await_daemon(read_fd, log_path))
    os.close(read_fd)
    os.setsid()
    if _fork():
        os._exit(0)  # the session leader leaves the daemon an orphan, adopted by init
    os.chdir("/")
    redirect_output(log_fd)
    os.close(log_fd)
    return Readiness(write_fd)


def reopen_log(path):
    """Point stdout and stderr at a freshly opened *path* (after a log rotation)."""
    try:
        log_fd = open_log(path)
    except OSError as error:
        print(f"cannot reopen log file {path}: {error.strerror}", file=sys.stderr)
        return
    sys.stderr.flush()
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)


def redirect_output(log_fd):
    """Point stdin at ``/dev/null`` and stdout and stderr at *log_fd*."""
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)


def _await_daemon(read_fd, log_path):
    """Return the exit code of ``keplerd --daemonize``: 0 once the daemon says it is ready.

    Warnings the daemon passes on meanwhile are printed as they come.
    """
    pending = b""
    with os.fdopen(read_fd, "rb") as pipe:
        for line in pipe:
            answer = line.strip()
            if answer.startswith(WARNING):
                print(f"keplerd: warning: {answer[len(WARNING):].decode(errors='replace')}", file=sys.stderr)
                continue
            pending = answer
            break
    if pending == READY:
        return 0
    if pending.startswith(ERROR):
        print(f"keplerd: {pending[len(ERROR):].decode(errors='replace')}", file=sys.stderr)
    else:
        print(f"keplerd: the daemon exited during start-up (see {log_path})", file=sys.stderr)
    return 1
