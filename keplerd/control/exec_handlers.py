"""``keplerctl exec`` over the socket (SPEC §17): start a one-off command, feed it, resize it, signal it.

The ``exec`` request lives as long as the command: it announces a token
(``exec_started``), streams ``output`` events and answers with the exit code.
``exec_input``, ``exec_resize`` and ``exec_signal`` name that token and are only
accepted on the same connection. The connection going away kills the request's
greenlet, and with it the command.
"""

import base64
import os

from keplerd.control import handlers
from keplerd.control.handlers import RequestError
from keplerd.osproc.process import SpawnError
from keplerd.units import parse_signal

_RUNNING = {}  # token -> (session, OneOff)


def handle_exec(call, request):
    """Run a command as the named instance runs; return its exit code once it ends."""
    project = handlers._baked_project(call, request)  # a config not started yet is baked, as start does
    name = handlers._text(request, "service")
    argv = request.get("command")
    if not name:
        raise RequestError("field 'service' is required")
    if not isinstance(argv, list) or not argv or not all(isinstance(arg, str) for arg in argv):
        raise RequestError("field 'command' must be a non-empty list of strings")
    instance = project.select([name])[0]  # ``web`` of a replicated web: its first instance, as compose does
    tty = _window(request) if request.get("tty") else None

    def forward(stream, data):
        call.emit({"kind": "output", "stream": stream, "data": base64.b64encode(data).decode()})

    try:
        command = instance.one_offs.run(argv, forward, tty)  # in its cgroup, with its mark: a stop ends it
    except (SpawnError, OSError) as error:
        raise RequestError(f"cannot run {argv[0]}: {error}") from None
    token = os.urandom(16).hex()  # not `secrets`: it loads OpenSSL into the daemon (~4 MiB) for this
    _RUNNING[token] = (call.session, command)
    try:
        call.emit({"kind": "exec_started", "exec": token, "pid": command.child.pid})
        return {"exit_code": command.wait()}
    finally:  # also when the client went away (this greenlet is killed): no command outlives it
        _RUNNING.pop(token, None)
        command.close()
        instance.one_offs.ended(command)


def _window(request):
    rows, columns = request.get("rows", 24), request.get("columns", 80)
    if not all(isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536
               for value in (rows, columns)):
        raise RequestError("fields 'rows' and 'columns' must be positive integers")
    return rows, columns


def _running(call, request):
    entry = _RUNNING.get(request.get("exec"))
    if entry is None or entry[0] is not call.session:
        raise RequestError("no such exec on this connection")
    return entry[1]


def handle_exec_input(call, request):
    command = _running(call, request)
    data = handlers._text(request, "data", "")
    try:
        command.write(base64.b64decode(data, validate=True))
    except ValueError:
        raise RequestError("field 'data' must be base64") from None
    if request.get("eof"):
        command.close_input()
    return {}


def handle_exec_resize(call, request):
    _running(call, request).resize(*_window(request))
    return {}


def handle_exec_signal(call, request):
    command = _running(call, request)
    try:
        command.send_signal(parse_signal(request.get("signal")))
    except ValueError as error:
        raise RequestError(str(error)) from None
    return {}


HANDLERS = {"exec": handle_exec, "exec_input": handle_exec_input, "exec_resize": handle_exec_resize,
            "exec_signal": handle_exec_signal}
