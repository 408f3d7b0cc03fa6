"""Bake configs in a worker process, so the daemon never loads YAML, schemas or Lua.

A bake reads a file, runs the user's Lua and validates a whole config: work that
needs marshmallow, PyYAML and lupa (several MiB resident for as long as the
daemon lives) and whose mistakes — a Lua memory bomb, a runaway bake — are best
kept out of the root daemon's address space. ``keplerd.config.worker`` does it in
a fresh interpreter; the daemon waits for the answer cooperatively.
"""

import base64
import collections
import json
import os
import signal
import sys

import gevent
from gevent.os import make_nonblocking, nb_read, nb_write

from keplerd import process
from keplerd.config.errors import ConfigError

# What Project.create needs of a bake (as keplerd.config.bake.Baked, without importing it).
Baked = collections.namedtuple("Baked", "snapshot config_bytes env_files")

# Beyond the Lua CPU cap: starting an interpreter, reading files, validating.
SLACK_SECONDS = 30.0
ENV = {"PATH": process.DEFAULT_PATH, "LANG": "C.UTF-8"}


def bake(config_path, sys_env, home, display_name=None, options=None):
    """Return the ``Baked`` config of *config_path*, baked by a worker; raise ConfigError."""
    options = dict(options or {})
    request = {"config": config_path, "env": sys_env, "home": home, "display_name": display_name,
               "options": options}
    timeout = SLACK_SECONDS + 2 * options.get("lua_time_limit", 2.0)
    name = display_name or os.path.basename(config_path)
    returncode, output, errors = _run_worker(json.dumps(request).encode(), timeout)
    if returncode is None:
        raise ConfigError([f"{name}: baking took longer than {timeout:g}s and was stopped"])
    try:
        answer = json.loads(output)
    except ValueError:
        reason = errors.decode(errors="replace").strip().splitlines()[-1:] or [f"exit code {returncode}"]
        raise ConfigError([f"{name}: baking failed: {reason[0]}"]) from None
    if not answer["ok"]:
        raise ConfigError(answer["errors"])
    return Baked(answer["snapshot"], base64.b64decode(answer["config"]),
                 {stored: base64.b64decode(data) for stored, data in answer["env_files"].items()})


def _run_worker(request, timeout):
    """Run the worker on *request*; return ``(returncode or None on timeout, stdout, stderr)``."""
    code = f"import sys; sys.path[:0] = {sys.path!r}; from keplerd.config.worker import main; main()"
    pipes = [os.pipe2(os.O_CLOEXEC) for _ in range(3)]
    (in_read, in_write), (out_read, out_write), (err_read, err_write) = pipes
    try:
        child = process.spawn([sys.executable, "-I", "-c", code], ENV, "/", stdin=in_read, stdout=out_write,
                              stderr=err_write)
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
    greenlets = [gevent.spawn(_write_all, in_write, request), gevent.spawn(_read_all, out_read),
                 gevent.spawn(_read_all, err_read)]
    returncode = child.wait(timeout)
    if returncode is None:
        child.stop(signal.SIGKILL, 0)
    gevent.joinall(greenlets, timeout=5.0)
    for greenlet in greenlets:
        greenlet.kill()
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
