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
from keplerd.model import actions, states
from keplerd.model.errors import UnknownName
from keplerd.supervise import lifecycle, readywait
from keplerd.supervise.events import Dropped, Subscriber
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
    rows = []
    for project in projects:
        changed = call.registry.config_changed(project)
        rows.extend({**row, "config_changed": changed} for row in project.ps_rows(stats))
    return {"services": rows}


def handle_start(call, request):
    project = _baked_project(call, request)
    names = _select(project, _names(request))
    no_deps = bool(request.get("no_deps"))
    running = {name for name, service in project.services.items() if service.supervised}

    def start():
        ordered = lifecycle.start(project, names, actions.Start(no_deps=no_deps))
        # Attached to named services, follow them and the dependencies this start started:
        # a dependency that was already running is not ours to wait for (or to stop on Ctrl+C).
        return ordered if not names else [name for name in ordered if name in names or name not in running]

    return _run_in_mode(call, project, request, start)


def handle_restart(call, request):
    """Restart; unless detached, show progress and return once the restarted services are up (SPEC §13)."""
    project = _project(call, request)
    names = _select(project, _names(request))
    if request.get("rolling"):
        from keplerd.control.replica_handlers import rolling_restart

        return rolling_restart(call, request, project, names)
    timeout = _timeout(request)
    if not request.get("attach") and not request.get("wait"):
        # In a greenlet of the config: a client that goes away never aborts the restart half-way.
        started, error = project.request_restart(names, "user").get()
        if error is not None:
            raise RequestError(error)
        return {"services": started}
    targets = set(lifecycle.restart_closure(project, [service.name for service in project.select(names)]))
    subscriber = Subscriber()
    project.attach(subscriber, logs=False)
    progress = bool(request.get("attach"))
    try:
        # In a greenlet of the config: a client that goes away (Ctrl+C) detaches, never aborts the restart.
        restarting = project.request_restart(names, "user")
        started = _forward_until_done(call, subscriber, restarting, targets if progress else ())
        # The same wait as ``start --wait``; in the request's greenlet, so a client that leaves ends it.
        waiting = project.spawn(_quietly, lambda: _wait_ready(call, project, started, timeout))
        try:
            _forward_until_done(call, subscriber, waiting, targets if progress else ())
        finally:
            waiting.kill()
        return {"services": started}
    except Dropped as error:
        raise RequestError(str(error)) from None
    finally:
        project.detach(subscriber)


def _quietly(function):
    """Return ``(result, error message)`` of *function* (a greenlet that raises would print a traceback)."""
    try:
        return function(), None
    except RequestError as error:
        return None, str(error)


def _forward_until_done(call, subscriber, worker, services):
    """Send the state changes of *services* (instances, or services for all their instances) to the client
    until *worker* ends; return its result."""
    done = {"kind": "done"}
    worker.rawlink(lambda _: subscriber.offer(done))
    while (event := subscriber.get()) is not done:
        name = event.get("service") or ""
        if event.get("kind") == "state" and (name in services or name.rpartition(".")[0] in services):
            call.emit(event)
    outcome = worker.value if worker.successful() else None
    if not isinstance(outcome, tuple):
        raise RequestError("internal error: the restart ended unexpectedly (see the daemon log)")
    result, error = outcome
    if error is not None:
        raise RequestError(error)
    return result


def handle_apply(call, request):
    """Re-bake, print the plan, restart only what changed (SPEC §16); then as ``restart`` does.

    Unless detached, progress goes to the client and the answer comes once what
    was restarted or added is up (the wait of ``start --wait``).
    """
    from keplerd.model.changes import RESTART, SCALE, START
    from keplerd.supervise import apply

    project = _project(call, request)
    names = _names(request)
    timeout = _timeout(request)
    progress = bool(request.get("attach"))
    subscriber = Subscriber()
    # The config's bake lock, from the bake until the plan is carried out: applies never interleave.
    with call.registry.bake_lock(project):
        prepared = _prepare_apply(call, project, request, names)
        plan = {"plan": prepared.entries, "global": prepared.global_fields}
        if request.get("dry_run"):
            return {**plan, "dry_run": True, "services": []}
        call.emit({"kind": "plan", **plan})
        targets = set(prepared.named(RESTART, START, SCALE))
        project.attach(subscriber, logs=False)
        # In a greenlet of the config: a client that goes away (Ctrl+C) detaches, never aborts the apply.
        worker = project.spawn(_quietly, lambda: _act(lambda: apply.carry_out(project, prepared)))
        try:
            started = _forward_until_done(call, subscriber, worker, targets if progress else ())
        except BaseException:
            worker.join()  # the lock is released once this apply is carried out, not before
            project.detach(subscriber)
            raise
    try:
        if progress or request.get("wait"):
            waiting = project.spawn(_quietly, lambda: _wait_ready(call, project, started, timeout))
            try:
                _forward_until_done(call, subscriber, waiting, targets if progress else ())
            finally:
                waiting.kill()
        return {**plan, "dry_run": False, "services": started}
    except Dropped as error:
        raise RequestError(str(error)) from None
    finally:
        project.detach(subscriber)


def _prepare_apply(call, project, request, names):
    """Bake *project*'s file again with the caller's environment and plan the apply."""
    from keplerd.config.errors import ConfigError
    from keplerd.model.changes import PlanError
    from keplerd.supervise import apply

    env = request.get("env") or {}
    if not isinstance(env, dict):
        raise RequestError("field 'env' must be an object")
    began = time.monotonic()
    try:
        baked = call.registry.bake_again(project, env, _text(request, "home", "/"), _text(request, "display_name"))
        baked_at = time.monotonic()
        prepared = apply.prepare(project, baked, names)
    except (ConfigError, PlanError) as error:
        raise RequestError(str(error)) from None
    log.info("%s: apply: baked in %.0f ms, planned in %.1f ms", project.name, (baked_at - began) * 1000,
             (time.monotonic() - baked_at) * 1000)
    return prepared


def _run_in_mode(call, project, request, action):
    """Do *action* (which returns the names it started) in the start mode asked for (SPEC §13).

    Attached: stream progress and logs until those services end. Detached with
    ``wait``: return once the startup cluster is up, failing when part of it failed
    or ``timeout`` passed. Detached: return at once.
    """
    timeout = _timeout(request)
    if not request.get("attach"):
        names = _act(action)
        if request.get("wait"):
            _wait_ready(call, project, names, timeout)
        return {"services": names}
    subscriber = Subscriber()
    project.attach(subscriber)
    try:
        names = _act(action)
        call.emit({"kind": "attached", "services": names})
        return _states_until_terminal(call, project, subscriber, names)
    finally:
        project.detach(subscriber)


def handle_attach(call, request):
    """Send the states of the named services until each has ended: an attached ``start`` carried over a
    ``daemon reexec`` (SPEC §20) follows on with this, and reads their lines through a ``logs`` cursor.

    Their current states come first; names the config no longer has are left out; none named: all.
    """
    project = _project(call, request)
    names = [name for name in _names(request) or list(project.services) if name in project.services]
    subscriber = Subscriber()
    project.attach(subscriber, logs=False)
    try:
        return _states_until_terminal(call, project, subscriber, names)
    finally:
        project.detach(subscriber)


def _states_until_terminal(call, project, subscriber, names):
    """Send the services' states now, then what *subscriber* hears until each has ended."""
    try:
        for name in names:
            call.emit({"kind": "state", "service": name, **project.services[name].runtime()})
        _follow_until_terminal(call, project, subscriber, names)
        for event in subscriber.drain():
            call.emit(event)
    except Dropped as error:
        raise RequestError(str(error)) from None
    return {"services": names}


def _act(action):
    try:
        return action()
    except lifecycle.ActionFailed as error:
        raise RequestError(str(error)) from None


def _follow_until_terminal(call, project, subscriber, names):
    while not all(project.services[name].status in states.TERMINAL for name in names):
        event = subscriber.get(timeout=1.0)
        if event is not None:
            call.emit(event)


def _timeout(request):
    value = request.get("timeout")
    if value is not None and (not isinstance(value, (int, float)) or value < 0):
        raise RequestError("field 'timeout' must be a non-negative number of seconds")
    return value


def _wait_ready(call, project, names, timeout):
    """Block until the startup cluster of *names* reached its targets; fail naming what failed or is late.

    Each service's line (``web  healthy``) goes to the client as a ``ready`` event.
    """
    width = max((len(name) for name in names), default=0)

    def tell(name, text):
        call.emit({"kind": "ready", "service": name, "line": f"{name:<{width}}  {text}"})

    try:
        readywait.wait_ready(project, names, timeout, on_line=tell)
    except readywait.WaitFailed as failure:
        raise RequestError(str(failure)) from None


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
    "start": handle_start,
    "restart": handle_restart,
    "stop": handle_stop,
    "recreate": handle_recreate,
    "apply": handle_apply,
    "inspect": handle_inspect,
    "export": handle_export,
    "prune": handle_prune,
    "daemon_status": handle_daemon_status,
    "daemon_stop": handle_daemon_stop,
    "daemon_reexec": handle_daemon_reexec,
    "attach": handle_attach,
}


def _register_instance_handlers():
    from keplerd.control import exec_handlers, replica_handlers, stream_handlers  # they use this module's helpers

    HANDLERS.update(replica_handlers.HANDLERS)
    HANDLERS.update(exec_handlers.HANDLERS)
    HANDLERS.update(stream_handlers.HANDLERS)


_register_instance_handlers()
