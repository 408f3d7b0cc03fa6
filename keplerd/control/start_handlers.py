"""The requests that start services and follow them: ``start``, ``restart``, ``apply`` and ``attach``.

Each may stay with the client until its services are up or have ended: it sends
their state changes (and, attached, their progress) as events, and with ``wait``
answers once the startup cluster reached its targets (``readywait``). The work
itself runs in a greenlet of the config, so a client that goes away detaches and
never aborts a restart or an apply half-way. ``replica_handlers`` follows a rolling
restart the same way (``_forward_until_done``).
"""

import logging
import time

from keplerd.control import handlers
from keplerd.control.handlers import RequestError
from keplerd.model import actions, states
from keplerd.supervise import lifecycle, readywait
from keplerd.supervise.events import Dropped, Subscriber

log = logging.getLogger("keplerd.handlers")


def handle_start(call, request):
    project = handlers._baked_project(call, request)
    names = handlers._select(project, handlers._names(request))
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
    project = handlers._project(call, request)
    names = handlers._select(project, handlers._names(request))
    if request.get("rolling"):
        from keplerd.control.replica_handlers import rolling_restart

        return rolling_restart(call, request, project, names)
    timeout = handlers._timeout(request)
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

    project = handlers._project(call, request)
    names = handlers._names(request)
    timeout = handlers._timeout(request)
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
        worker = project.spawn(_quietly, lambda: handlers._act(lambda: apply.carry_out(project, prepared)))
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
        baked = call.registry.bake_again(project, env, handlers._text(request, "home", "/"),
                                         handlers._text(request, "display_name"))
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
    timeout = handlers._timeout(request)
    if not request.get("attach"):
        names = handlers._act(action)
        if request.get("wait"):
            _wait_ready(call, project, names, timeout)
        return {"services": names}
    subscriber = Subscriber()
    project.attach(subscriber)
    try:
        names = handlers._act(action)
        call.emit({"kind": "attached", "services": names})
        return _states_until_terminal(call, project, subscriber, names)
    finally:
        project.detach(subscriber)


def handle_attach(call, request):
    """Send the states of the named services until each has ended: an attached ``start`` carried over a
    ``daemon reexec`` (SPEC §20) follows on with this, and reads their lines through a ``logs`` cursor.

    Their current states come first; names the config no longer has are left out; none named: all.
    """
    project = handlers._project(call, request)
    names = [name for name in handlers._names(request) or list(project.services) if name in project.services]
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


def _follow_until_terminal(call, project, subscriber, names):
    while not all(project.services[name].status in states.TERMINAL for name in names):
        event = subscriber.get(timeout=1.0)
        if event is not None:
            call.emit(event)


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


HANDLERS = {
    "start": handle_start,
    "restart": handle_restart,
    "apply": handle_apply,
    "attach": handle_attach,
}
