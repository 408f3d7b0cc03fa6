"""Bake configs (and read keplerd.conf) in a worker process: the daemon never loads YAML, schemas or Lua.

A bake reads a file, runs the user's Lua and validates a whole config: work that
needs marshmallow, PyYAML and lupa (several MiB resident for as long as the
daemon lives) and whose mistakes — a Lua memory bomb, a runaway bake — are best
kept out of the root daemon's address space. ``keplerd.config.worker`` does it in
a fresh interpreter; the daemon waits for the answer cooperatively. At start-up,
before gevent's hub exists, ``validate_settings_at_boot`` waits for it blocking.
"""

import base64
import collections
import json
import os
import signal
import sys
import time

from gevent import monkey
from gevent.os import make_nonblocking, nb_read, nb_write
from gevent.pool import Group

from keplerd.config.errors import ConfigError
from keplerd.osproc import process

# What Project.create needs of a bake (as keplerd.config.bake.Baked, without importing it).
Baked = collections.namedtuple("Baked", "snapshot config_bytes env_files")

# Beyond the Lua CPU cap: starting an interpreter, reading files, validating.
SLACK_SECONDS = 30.0
ENV = {"PATH": process.DEFAULT_PATH, "LANG": "C.UTF-8"}

# Start-up runs before the hub exists and must not create it (the daemon may fork after).
_select = monkey.get_original("select", "select")
_waitpid = monkey.get_original("os", "waitpid")


def bake(config_path, sys_env, home, display_name=None, options=None):
    """Return the ``Baked`` config of *config_path*, baked by a worker; raise ConfigError."""
    options = dict(options or {})
    request = {"config": config_path, "env": sys_env, "home": home, "display_name": display_name,
               "options": options}
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


def _worker_argv():
    code = f"import sys; sys.path[:0] = {sys.path!r}; from keplerd.config.worker import main; main()"
    return [sys.executable, "-I", "-c", code]


def _run_worker(request, timeout):
    """Run the worker on *request*; return ``(returncode or None on timeout, stdout, stderr)``."""
    pipes = [os.pipe2(os.O_CLOEXEC) for _ in range(3)]
    (in_read, in_write), (out_read, out_write), (err_read, err_write) = pipes
    try:
        child = process.spawn(_worker_argv(), ENV, "/", stdin=in_read, stdout=out_write, stderr=err_write)
    except process.SpawnError as error:
        for read_end, write_end in pipes:
            os.close(read_end)
            os.close(write_end)
        raise ConfigError([f"cannot start the bake worker: {error}"]) from None
    finally:
        for fd in (in_read, out_write, err_write):
            process.close_now(fd)
    for fd in (in_write, out_read, err_read):
        make_nonblocking(fd)
    pipes = Group()  # owned by this call: no pipe greenlet outlives it
    greenlets = [pipes.spawn(_write_all, in_write, request), pipes.spawn(_read_all, out_read),
                 pipes.spawn(_read_all, err_read)]
    try:
        returncode = child.wait(timeout)
        if returncode is None:
            child.kill()
        pipes.join(timeout=5.0)
    finally:
        # Also when the waiting request is cancelled (its client went away): no
        # worker and no pipe greenlet outlives it.
        if child.returncode is None:
            child.kill()
        pipes.kill()
    for greenlet in greenlets:
        if greenlet.exception is not None:
            raise ConfigError([f"cannot talk to the bake worker: {greenlet.exception}"])
    return returncode, greenlets[1].value or b"", greenlets[2].value or b""


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
        pid = process.fork_exec_plain(_worker_argv(), ENV, "/", in_read, out_write, err_write)
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
