"""The daemon's answer to each request type of the control protocol.

A handler takes the ``Call`` (who asked, how to send events) and the request
body, and returns the response fields; raising ``RequestError`` answers with
that message. Nothing a client sends may crash the daemon.

Who may do what is decided in one place, before and around every handler:
``dispatch`` refuses root-only requests, and handlers reach configs only through
``call.registry``, the caller's view of the registry (``keplerd.control.access``).
"""

import logging
import time


from keplerd import __version__, paths
from keplerd.control import requests
from keplerd.control.access import Caller, CallerRegistry, PermissionDenied
from keplerd.control.protocol import raw_array
from keplerd.model import states
from keplerd.model.errors import UnknownName
from keplerd.supervise import lifecycle
from keplerd.supervise.registry import NotLoaded
from keplerd.units import parse_signal

log = logging.getLogger("keplerd.handlers")


class RequestError(Exception):
    """A request that cannot be done; the message goes back to the client."""


class Call:
    """One request in flight: the daemon, the session, the request id and who sent it.

    ``registry`` is the registry as the caller may use it: every config a handler
    reaches through it has passed the access check (SPEC §21).
    """

    def __init__(self, daemon, session, request_id):
        self.daemon = daemon
        self.session = session
        self.request_id = request_id
        self.caller = Caller(session.peer, getattr(daemon.settings, "allow_run_as", None))
        self.registry = CallerRegistry(daemon.registry, self.caller)

    def emit(self, event):
        self.session.emit(self.request_id, event)


def dispatch(daemon, session, request_id, request):
    """Run the handler of *request* and return its response (never raises)."""
    try:
        requests.check(request)
    except requests.BadRequest as error:
        return {"ok": False, "error": str(error)}
    handler = HANDLERS.get(request["type"])
    if handler is None:
        return {"ok": False, "error": f"unknown request type: {request['type']!r}"}
    try:
        call = Call(daemon, session, request_id)
        call.caller.authorize(request["type"])
        return {"ok": True, **(handler(call, request) or {})}
    except (RequestError, PermissionDenied) as error:
        return {"ok": False, "error": str(error)}
    except NotLoaded as error:
        return {"ok": False, "error": str(error)}
    except UnknownName as error:
        return {"ok": False, "error": str(error)}
    except Exception as error:
        log.exception("request %s failed", request["type"])
        return {"ok": False, "error": f"internal error: {error}"}


# -- helpers ---------------------------------------------------------------------


def _text(request, key, default=None):
    value = request.get(key, default)
    if value is not None and not isinstance(value, str):
        raise RequestError(f"field {key!r} must be a string")
    return value


def _names(request):
    names = request.get("services") or []
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise RequestError("field 'services' must be a list of names")
    return names


def _config_path(request):
    path = _text(request, "config")
    if not path:
        raise RequestError("field 'config' is required")
    return path


def _project(call, request):
    return call.registry.find(_config_path(request))


def _baked_project(call, request):
    from keplerd.config.errors import ConfigError

    env = request.get("env") or {}
    if not isinstance(env, dict):
        raise RequestError("field 'env' must be an object")
    try:
        return call.registry.get_or_bake(_config_path(request), env, _text(request, "home", "/"),
                                         _text(request, "display_name"))
    except ConfigError as error:
        raise RequestError(str(error)) from None
    except OSError as error:
        raise RequestError(f"cannot read config: {error}") from None


def _select(project, names):
    """Return the instance names *names* select (``web`` → ``web.1``, ``web.2``; none: the whole config)."""
    return project.names(names)  # UnknownName: answered as the client's mistake


def _signal(request):
    value = request.get("signal")
    if value is None:
        return None
    try:
        return parse_signal(value)
    except ValueError as error:
        raise RequestError(str(error)) from None


def _act(action):
    try:
        return action()
    except lifecycle.ActionFailed as error:
        raise RequestError(str(error)) from None


def _timeout(request):
    value = request.get("timeout")
    if value is not None and (not isinstance(value, (int, float)) or value < 0):
        raise RequestError("field 'timeout' must be a non-negative number of seconds")
    return value


# -- requests ----------------------------------------------------------------------


def handle_ping(call, request):
    return {"pong": True}


def handle_ps(call, request):
    if request.get("all"):
        projects = list(call.registry.projects.values())
    else:
        try:
            projects = [_project(call, request)]
        except NotLoaded:
            projects = []
    stats = bool(request.get("stats"))
    return {"services": raw_array(_ps_rows(call, projects, stats))}


def _ps_rows(call, projects, stats):
    for project in projects:
        changed = call.registry.config_changed(project)
        for row in project.ps_rows(stats):
            row["config_changed"] = changed
            yield row


def handle_stop(call, request):
    project = _project(call, request)
    names = _select(project, _names(request))
    signum = _signal(request)
    clean = bool(request.get("clean"))
    if clean and names:
        raise RequestError("--clean stops the whole config: do not name services")
    _act(lambda: lifecycle.stop(project, names, signum))
    if clean:
        _act(lambda: lifecycle.clean(project))
        call.registry.unload(project, remove_files=True)
        return {"cleaned": project.paths.root}
    return {}


def handle_recreate(call, request):
    project = _project(call, request)
    busy = [service.name for service in project.services.values() if service.status not in states.TERMINAL]
    if busy:
        raise RequestError(f"cannot recreate while services are running: {', '.join(busy)} "
                           f"(stop them first)")
    from keplerd.config.errors import ConfigError

    env = request.get("env") or {}
    try:
        fresh = call.registry.rebake(project, env, _text(request, "home", "/"), _text(request, "display_name"))
    except ConfigError as error:
        raise RequestError(str(error)) from None
    return {"services": list(fresh.services)}


def handle_inspect(call, request):
    project = _project(call, request)
    return {"inspect": project.inspect(_select(project, _names(request)))}


def handle_export(call, request):
    """Return the config's snapshot for ``keplerctl export``, baking it first if needed (starts nothing)."""
    return {"snapshot": _baked_project(call, request).snapshot}


def handle_prune(call, request):
    """Remove the state of configs that are all stopped or whose file is gone (SPEC §13)."""
    force, dry_run = bool(request.get("force")), bool(request.get("dry_run"))
    removed = []
    for project, why in call.registry.prunable(force):
        removed.append({"config": project.source_path, "id": project.id, "why": why})
        if dry_run:
            continue
        if not project.all_terminal():
            _act(lambda project=project: lifecycle.stop(project))
        call.registry.unload(project, remove_files=True)
    return {"pruned": removed, "dry_run": dry_run}


def handle_daemon_status(call, request):
    daemon = call.daemon
    configs = []
    for project in call.registry.projects.values():
        running = sum(service.status in states.UP for service in project.services.values())
        configs.append({"config": project.source_path, "id": project.id,
                        "running": running, "total": len(project.services)})
    # The lag of the last tick, and the worst of the last minute: a stall that made a probe time
    # out or a restart late is over by the time someone looks, but the minute still shows it.
    return {"pid": daemon.pid, "version": __version__, "uptime": time.time() - daemon.started_at,
            "generation": daemon.generation,
            "loop_lag_ms": round(daemon.loop_lag.seconds * 1000, 3),
            "loop_lag_max_ms": round(daemon.loop_lag.worst() * 1000, 3),
            "socket": paths.socket_path(daemon.state_dir), "state_dir": daemon.state_dir, "configs": configs}


def handle_daemon_stop(call, request):
    call.daemon.shutdown()
    return {}


def handle_daemon_reexec(call, request):
    """Hand over to a fresh image (SPEC §20); answered only when that could not happen (exec cuts the rest)."""
    reason = call.daemon.request_reexec()
    raise RequestError(f"cannot re-execute: {reason}")


HANDLERS = {
    "ping": handle_ping,
    "ps": handle_ps,
    "stop": handle_stop,
    "recreate": handle_recreate,
    "inspect": handle_inspect,
    "export": handle_export,
    "prune": handle_prune,
    "daemon_status": handle_daemon_status,
    "daemon_stop": handle_daemon_stop,
    "daemon_reexec": handle_daemon_reexec,
}


def _register_instance_handlers():
    from keplerd.control import (  # they use this module's helpers
        exec_handlers,
        replica_handlers,
        start_handlers,
        stream_handlers,
    )

    HANDLERS.update(start_handlers.HANDLERS)
    HANDLERS.update(replica_handlers.HANDLERS)
    HANDLERS.update(exec_handlers.HANDLERS)
    HANDLERS.update(stream_handlers.HANDLERS)


_register_instance_handlers()
