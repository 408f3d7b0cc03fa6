"""The streaming requests over the socket: ``logs`` (SPEC §11) and ``events`` (SPEC §19).

A ``logs`` request opens a cursor and answers with its first batch; ``logs_read``
asks for the next ones (a follower waits for new lines) until the cursor is done
and closed. ``events`` answers with events until the client goes away or falls
too far behind.
"""

import gevent

from keplerd.control import access, handlers
from keplerd.control.handlers import RequestError
from keplerd.logs.cursor_table import FollowerDropped, open_reading
from keplerd.model.errors import UnknownName
from keplerd.supervise.events import EVENT_READER_BUDGET, FEED, Dropped, Subscriber


def handle_logs(call, request):
    """Open a cursor on the config's logs and return its first batch (SPEC §11)."""
    project = handlers._project(call, request)
    names = _select_logs(project, handlers._names(request))
    head, tail = _count(request, "head"), _count(request, "tail")
    follow = bool(request.get("follow"))
    if head is not None and (tail is not None or follow):
        raise RequestError("--head cannot be combined with --tail or --follow")
    since, until = _stamp(request, "since"), _stamp(request, "until")
    if until is not None and follow:
        raise RequestError("--until cannot be combined with --follow")
    reading = open_reading(project, names, bool(request.get("no_hook")), head, tail, follow, call.session,
                           since=since, until=until, grep=_pattern(request))
    cursor_id = call.daemon.cursors.open(reading)
    return {"cursor": cursor_id, "names": reading.stored.names, "services": list(project.services),
            **_next_batch(call, cursor_id, reading, wait=0.0)}


def _select_logs(project, names):
    """Return the log names *names* select: services and their instances (``web`` → ``web.1``, ``web.2``),
    and hook logs asked for by name (``web.pre_start``, ``web.2.pre_start``, ``global.on_init``)."""
    from keplerd.logs.format import split_log_name
    from keplerd.logs.reader import log_names

    selected, stored = [], None
    for name in names:
        try:
            selected += project.names([name])
            continue
        except UnknownName:
            pass  # maybe a hook's log
        owner, hook = split_log_name(name)
        base = owner.partition(".")[0]
        specs = project.snapshot["services"]
        hooks = project.global_hooks if owner == "global" else specs[base]["hooks"] if base in specs else None
        if not hook:
            raise RequestError(f"no such service: {name}")
        if stored is None:
            stored = set(log_names(project.paths.logs))
        if hooks is None or (hook not in hooks and name not in stored):
            raise RequestError(f"no such service or hook log: {name} (a hook's log is <service>.<hook> "
                               f"or global.<hook>, for a hook the config has)")
        selected.append(name)
    return selected


def _stamp(request, key):
    value = request.get(key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise RequestError(f"field {key!r} must be a time in epoch milliseconds")
    return value


def _pattern(request):
    import re

    text = handlers._text(request, "grep")
    if text is None:
        return None
    try:
        return re.compile(text)
    except re.error as error:
        raise RequestError(f"--grep: invalid regular expression {text!r}: {error}") from None


def handle_logs_read(call, request):
    """Return the next batch of a cursor; following, wait up to ``wait`` seconds for new lines."""
    cursor_id = handlers._text(request, "cursor")
    reading = call.daemon.cursors.get(cursor_id)
    project = call.registry.by_id(reading.config_id)
    if project is None:
        call.daemon.cursors.close(cursor_id)
        return {"lines": [], "done": True, "reason": "the config was unloaded"}
    reading.follow(project)
    wait = request.get("wait", 0)
    if not isinstance(wait, (int, float)) or wait < 0:
        raise RequestError("field 'wait' must be a non-negative number of seconds")
    return _next_batch(call, cursor_id, reading, wait)


def handle_logs_close(call, request):
    call.daemon.cursors.close(handlers._text(request, "cursor"))
    return {}


def _next_batch(call, cursor_id, reading, wait):
    """Return the reading's next batch; close the cursor when it is done, dropped or abandoned."""
    cursors = call.daemon.cursors
    try:
        batch = reading.next_batch(wait)
    except FollowerDropped as error:
        cursors.close(cursor_id)
        raise RequestError(str(error)) from None
    except gevent.GreenletExit:
        cursors.close(cursor_id)  # the client went away while we waited for its lines
        raise
    if batch["done"]:
        cursors.close(cursor_id)
    else:
        cursors.touch(cursor_id)
    return batch


def handle_events(call, request):
    """Stream the daemon's events (SPEC §19) until the client goes away; a slow one is dropped.

    With ``after`` (a ``seq``) and ``feed`` (the feed's id it was counted in), the events
    after it that the daemon still keeps come first (a reader reconnecting after a reexec).

    ``--all`` shows the configs the caller may see (``access.visible``, SPEC §21).
    """
    if request.get("all"):
        def accept(event):
            project = call.daemon.registry.projects.get(event["config_id"])
            return project is not None and bool(access.visible(call.caller.uid, [project]))
    else:
        path = handlers._project(call, request).source_path

        def accept(event):
            return event["config_path"] == path
    subscriber = Subscriber(budget=EVENT_READER_BUDGET)
    # A reader back after a ``daemon reexec`` asks from the last event it showed: none twice, none missed.
    replay, missed = FEED.join(subscriber, accept, _count(request, "after"), handlers._text(request, "feed"))
    try:
        call.emit({"kind": "subscribed", "feed": FEED.id, "next_seq": FEED.next_seq, "missed": missed})
        for event in replay:
            call.emit(event)
        while True:
            call.emit(subscriber.get())
    except Dropped as error:
        raise RequestError(f"{error} (more than {EVENT_READER_BUDGET >> 20} MiB behind)") from None
    finally:
        FEED.leave(subscriber)


def _count(request, key):
    value = request.get(key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise RequestError(f"field {key!r} must be a non-negative integer")
    return value


HANDLERS = {
    "logs": handle_logs,
    "logs_read": handle_logs_read,
    "logs_close": handle_logs_close,
    "events": handle_events,
}
