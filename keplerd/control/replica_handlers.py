"""Requests about instances (SPEC §17): ``scale``, ``signal`` and ``restart --rolling``.

Like every handler, these reach a config only through ``call.registry`` (the
caller's view), so the access rules of SPEC §21 hold for them too.
"""

from keplerd.control import handlers, start_handlers
from keplerd.control.handlers import RequestError
from keplerd.supervise import replicas
from keplerd.supervise.events import Dropped, Subscriber
from keplerd.units import parse_signal, signal_name


def handle_scale(call, request):
    """Set instance counts (``{"counts": {"web": 5}}``); every count is checked before any change."""
    project = handlers._project(call, request)
    counts = request.get("counts")
    if not isinstance(counts, dict) or not counts:
        raise RequestError("field 'counts' must map service names to counts")
    for base, count in counts.items():
        if base not in project.snapshot["services"]:
            raise RequestError(f"no such service: {base}" + (" (scale a service, not an instance)"
                                                                if "." in base else ""))
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise RequestError(f"{base}: the count must be an integer of at least 1, not {count!r}")
    started = handlers._act(lambda: replicas.scale(project, counts))
    return {"started": started, "counts": {base: len(project.instances(base)) for base in counts}}


def handle_signal(call, request):
    """Send a signal to the main process (or group) of each named running instance; states do not change."""
    project = handlers._project(call, request)
    try:
        signum = parse_signal(request.get("signal"))
    except (TypeError, ValueError) as error:
        raise RequestError(f"invalid signal: {error}") from None
    services = project.select(handlers._names(request))
    group = bool(request.get("group"))
    sent = [service.name for service in services if service.send_signal(signum, group)]
    return {"signalled": sent, "signal": signal_name(signum)}


def rolling_restart(call, request, project, names):
    """Restart *names* one instance at a time; stream their state changes; fail naming the one that stuck."""
    timeout = handlers._timeout(request)
    targets = names or list(project.services)
    subscriber = Subscriber()
    project.attach(subscriber, logs=False)
    try:
        # In a greenlet of the config: a client that goes away does not leave a half-stopped instance.
        rolling = project.spawn(start_handlers._quietly, lambda: handlers._act(
            lambda: replicas.roll(project, targets, timeout)))
        shown = set(targets) if request.get("attach") else ()
        return {"services": start_handlers._forward_until_done(call, subscriber, rolling, shown)}
    except Dropped as error:
        raise RequestError(str(error)) from None
    finally:
        project.detach(subscriber)


HANDLERS = {"scale": handle_scale, "signal": handle_signal}
