"""Bake configs (and read keplerd.conf) in a worker process: the daemon never loads YAML, schemas or Lua.

A bake reads a file, runs the user's Lua and validates a whole config: work that
needs marshmallow, PyYAML and lupa (several MiB resident for as long as the
daemon lives) and whose mistakes — a Lua memory bomb, a runaway bake — are best
kept out of the root daemon's address space. ``keplerd.config.worker`` does it in
a process of its own, forked by a warm zygote (``keplerd.config.zygote``, started
with the daemon) or, when there is none, a fresh interpreter; the daemon waits for
the answer cooperatively. At start-up, before gevent's hub exists,
``validate_settings_at_boot`` waits for a fresh interpreter blocking.
"""

import base64
import collections
import itertools
import json
import logging
import os
import signal
import socket
import sys
import time

from gevent import monkey
from gevent.event import AsyncResult
from gevent.os import make_nonblocking, nb_read, nb_write
from gevent.pool import Group

from keplerd.config.errors import ConfigError
from keplerd.osproc import process

# What Project.create needs of a bake (as keplerd.config.bake.Baked, without importing it).
Baked = collections.namedtuple("Baked", "snapshot config_bytes env_files")

# Beyond the Lua CPU cap: starting an interpreter, reading files, validating.
SLACK_SECONDS = 30.0
ZYGOTE_EXIT_SECONDS = 2.0  # a zygote told to go exits in milliseconds; one that has not by then is killed
ENV = {"PATH": process.DEFAULT_PATH, "LANG": "C.UTF-8"}

log = logging.getLogger("keplerd.bakery")

# Start-up runs before the hub exists and must not create it (the daemon may fork after).
_select = monkey.get_original("select", "select")
_waitpid = monkey.get_original("os", "waitpid")


def bake(config_path, sys_env, home, display_name=None, options=None, caller=None):
    """Return the ``Baked`` config of *config_path*, baked by a worker; raise ConfigError.

    *caller* describes a non-root caller (``keplerd.config.runas``); None for root.
    """
    options = dict(options or {})
    request = {"config": config_path, "env": sys_env, "home": home, "display_name": display_name,
               "options": options, "caller": caller}
    timeout = SLACK_SECONDS + 2 * options.get("lua_time_limit", 2.0)
    name = display_name or os.path.basename(config_path)
    answer = _answer(_run_worker(json.dumps(request).encode(), timeout), f"{name}: baking", timeout)
    return Baked(answer["snapshot"], base64.b64decode(answer["config"]),
                 {stored: base64.b64decode(data) for stored, data in answer["env_files"].items()})


def validate_settings(data, display_name):
    """Return the settings the ``keplerd.conf`` text *data* sets, as a dict, validated by a worker."""
    outcome = _run_worker(_settings_request(data, display_name), SLACK_SECONDS)
    return _answer(outcome, f"{display_name}: reading", SLACK_SECONDS)["values"]


def validate_settings_at_boot(data, display_name):
    """``validate_settings``, waiting blocking: for start-up, before gevent's hub exists."""
    outcome = _run_worker_blocking(_settings_request(data, display_name), SLACK_SECONDS)
    return _answer(outcome, f"{display_name}: reading", SLACK_SECONDS)["values"]


def _settings_request(data, display_name):
    raw = data.encode() if isinstance(data, str) else data
    return json.dumps({"settings": base64.b64encode(raw).decode("ascii"), "display_name": display_name}).encode()


def _answer(outcome, doing, timeout):
    """Return the worker's answer from ``(returncode, stdout, stderr)``; raise ConfigError."""
    returncode, output, errors = outcome
    if returncode is None:
        raise ConfigError([f"{doing} took longer than {timeout:g}s and was stopped"])
    try:
        answer = json.loads(output)
    except ValueError:
        reason = errors.decode(errors="replace").strip().splitlines()[-1:] or [f"exit code {returncode}"]
        raise ConfigError([f"{doing} failed: {reason[0]}"]) from None
    if not answer["ok"]:
        raise ConfigError(answer["errors"])
    return answer


def _python_argv(module):
    code = f"import sys; sys.path[:0] = {sys.path!r}; from {module} import main; main()"
    return [sys.executable, "-I", "-c", code]


class Zygote:
    """The warm bake worker of ``keplerd.config.zygote``: forks a worker per bake on request.

    One greenlet (owned by the zygote) reads its messages: the pid of each worker
    it forked, then the worker's return code once reaped.
    """

    def __init__(self):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.child = process.spawn(_python_argv("keplerd.config.zygote"), ENV, "/", stdin=theirs.fileno(),
                                       stderr=sys.stderr.fileno())
        finally:
            theirs.close()
        self._socket = ours
        self._tokens = itertools.count(1)
        self._forked = {}    # token -> AsyncResult of the worker's pid
        self._exits = {}     # pid -> AsyncResult of its return code
        self._greenlets = Group()
        self._greenlets.spawn(self._read_messages)

    @property
    def alive(self):
        return self.child.returncode is None and not self._socket.closed

    def fork(self, stdin, stdout, stderr):
        """Have a worker forked with these fds; return its pid (ConfigError if the zygote is gone)."""
        token = str(next(self._tokens))
        forked = self._forked[token] = AsyncResult()
        try:
            socket.send_fds(self._socket, [f"bake {token}".encode()], [stdin, stdout, stderr])
            pid = forked.get()
        except OSError as error:
            raise ConfigError([f"cannot start a bake worker: {error.strerror}"]) from None
        finally:
            self._forked.pop(token, None)
        self._exits[pid] = AsyncResult()
        return pid

    def wait(self, pid, timeout):
        """Return the worker's return code (negative: signal), or None on timeout."""
        exited = self._exits[pid]
        exited.wait(timeout)
        if not exited.ready():
            return None
        del self._exits[pid]
        return exited.get()  # raises ConnectionError when the zygote ended first

    def kill(self, pid):
        """End a worker that has not ended yet (the zygote reaps it, so the pid is still that worker's)."""
        exited = self._exits.pop(pid, None)
        if exited is not None and not exited.ready() and self.alive:
            self._socket.send(f"kill {pid}".encode())

    def close(self):
        """End the zygote and reap it, so that it never outlives the daemon.

        It exits when its socket closes; one that does not (stopped, stuck) is killed
        with its process group, which holds any bake worker still running.
        """
        self._greenlets.kill()
        self._socket.close()
        if self.child.wait(ZYGOTE_EXIT_SECONDS) is None:
            log.warning("bake zygote %d did not exit when told to: killing it", self.child.pid)
            self.child.kill()
            self.child.wait(ZYGOTE_EXIT_SECONDS)

    def _read_messages(self):
        try:
            while message := self._socket.recv(256):
                kind, first, second = message.decode().split(" ")
                if kind == "pid":
                    self._forked[first].set(int(second))
                elif kind == "exit" and int(first) in self._exits:
                    self._exits[int(first)].set(int(second))
        except OSError as error:
            log.warning("bake zygote: %s", error.strerror)
        finally:
            gone = ConnectionError("the bake zygote ended")
            for pending in (*self._forked.values(), *self._exits.values()):
                if not pending.ready():
                    pending.set_exception(gone)
            self._socket.close()


_zygote = None


def start_zygote():
    """Start the warm bake worker (once the hub runs); bakes fall back to a fresh interpreter without it."""
    global _zygote
    if _zygote is None or not _zygote.alive:
        try:
            _zygote = Zygote()
        except process.SpawnError as error:
            log.warning("no warm bake worker, baking in fresh interpreters: %s", error)
            _zygote = None
    return _zygote


def stop_zygote():
    global _zygote
    if _zygote is not None:
        _zygote.close()
        _zygote = None


def _run_worker(request, timeout):
    """Run a worker on *request*; return ``(returncode or None on timeout, stdout, stderr)``."""
    pipes = [os.pipe2(os.O_CLOEXEC) for _ in range(3)]
    (in_read, in_write), (out_read, out_write), (err_read, err_write) = pipes
    try:
        worker = _start_worker(in_read, out_write, err_write)
    except ConfigError:
        for fd in (in_write, out_read, err_read):
            process.close_now(fd)
        raise
    finally:
        for fd in (in_read, out_write, err_write):
            process.close_now(fd)
    for fd in (in_write, out_read, err_read):
        make_nonblocking(fd)
    pipes = Group()  # owned by this call: no pipe greenlet outlives it
    greenlets = [pipes.spawn(_write_all, in_write, request), pipes.spawn(_read_all, out_read),
                 pipes.spawn(_read_all, err_read)]
    returncode = None
    try:
        returncode = worker.wait(timeout)
        pipes.join(timeout=5.0)
    finally:
        # Also when the waiting request is cancelled (its client went away): no
        # worker and no pipe greenlet outlives it.
        if returncode is None:
            worker.kill()
        pipes.kill()
    for greenlet in greenlets:
        if greenlet.exception is not None:
            raise ConfigError([f"cannot talk to the bake worker: {greenlet.exception}"])
    return returncode, greenlets[1].value or b"", greenlets[2].value or b""


def _start_worker(stdin, stdout, stderr):
    """Start a bake worker on these fds: forked by the zygote when one runs, else a fresh interpreter."""
    zygote = start_zygote() if _zygote is not None else None
    if zygote is not None:
        try:
            return _ZygoteWorker(zygote, zygote.fork(stdin, stdout, stderr))
        except (ConfigError, ConnectionError) as error:
            log.warning("warm bake worker unavailable (%s): baking in a fresh interpreter", error)
    try:
        return process.spawn(_python_argv("keplerd.config.worker"), ENV, "/", stdin=stdin, stdout=stdout,
                             stderr=stderr)
    except process.SpawnError as error:
        raise ConfigError([f"cannot start the bake worker: {error}"]) from None


class _ZygoteWorker:
    """A worker forked by the zygote, with the ``wait``/``kill`` of a ``children.Child``."""

    def __init__(self, zygote, pid):
        self.zygote = zygote
        self.pid = pid

    def wait(self, timeout):
        try:
            return self.zygote.wait(self.pid, timeout)
        except ConnectionError:
            return -signal.SIGKILL  # the zygote died, and its worker with it (PR_SET_PDEATHSIG)

    def kill(self):
        self.zygote.kill(self.pid)


def _write_all(fd, data):
    try:
        view = memoryview(data)
        while view:
            view = view[nb_write(fd, view):]
    except BrokenPipeError:
        pass  # the worker died early: its stderr says why
    finally:
        process.close_now(fd)  # at once: the worker reads its request until EOF


def _read_all(fd):
    chunks = []
    try:
        while chunk := nb_read(fd, 65536):
            chunks.append(chunk)
    finally:
        process.close_now(fd)
    return b"".join(chunks)


def _run_worker_blocking(request, timeout):
    """``_run_worker`` without gevent: plain pipes, select and waitpid (no hub, no child watcher)."""
    (in_read, in_write), (out_read, out_write), (err_read, err_write) = pipes = [
        os.pipe2(os.O_CLOEXEC) for _ in range(3)]
    try:
        pid = process.fork_exec_plain(_python_argv("keplerd.config.worker"), ENV, "/", in_read, out_write, err_write)
    except OSError as error:
        for fd in (fd for pair in pipes for fd in pair):
            os.close(fd)
        raise ConfigError([f"cannot start the settings worker: {error.strerror}"]) from None
    for fd in (in_read, out_write, err_write):
        os.close(fd)
    try:
        os.write(in_write, request)  # a settings request is far smaller than a pipe
    except BrokenPipeError:
        pass  # the worker died early: its stderr says why
    finally:
        os.close(in_write)
    received = {out_read: [], err_read: []}
    open_fds = [out_read, err_read]
    deadline = time.monotonic() + timeout
    while open_fds and (left := deadline - time.monotonic()) > 0:
        for fd in _select(open_fds, [], [], left)[0]:
            chunk = os.read(fd, 65536)
            if chunk:
                received[fd].append(chunk)
            else:
                open_fds.remove(fd)
    if open_fds:
        os.kill(pid, signal.SIGKILL)
    _, status = _waitpid(pid, 0)
    for fd in (out_read, err_read):
        os.close(fd)
    returncode = None if open_fds else os.waitstatus_to_exitcode(status)
    return returncode, b"".join(received[out_read]), b"".join(received[err_read])
