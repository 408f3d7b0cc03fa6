"""The boundary check of every request: each field's type and range, before any handler runs.

One table names the type of every field a request may carry (the same name means
the same thing in every request type); ``check`` applies it, and also refuses what
no field may hold anywhere: NUL bytes in strings, nesting deeper than
``MAX_DEPTH``. NaN and Infinity never get this far (``protocol.decode`` refuses them).
So a handler can trust its fields, and an internal error is a bug, never an answer
a client can provoke.
"""

import math

MAX_DEPTH = 16
MAX_TEXT = 64 * 1024          # a path, a name, a cursor id
MAX_ITEMS = 100_000           # services named, environment entries
MAX_SECONDS = 10 ** 7         # timeouts and waits (about four months)
MAX_COUNT = 10 ** 12          # head and tail line counts


class BadRequest(Exception):
    """A field of the request has the wrong type or range; the message names it."""


def _text(key, value):
    if not isinstance(value, str):
        raise BadRequest(f"field {key!r} must be a string")
    if len(value) > MAX_TEXT:
        raise BadRequest(f"field {key!r} is longer than {MAX_TEXT} characters")


def _names(key, value):
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise BadRequest(f"field {key!r} must be a list of names")
    if len(value) > MAX_ITEMS:
        raise BadRequest(f"field {key!r} names more than {MAX_ITEMS} services")
    for name in value:
        _text(key, name)


def _environment(key, value):
    if not isinstance(value, dict) or not all(isinstance(item, str) for item in value.values()):
        raise BadRequest(f"field {key!r} must be an object of strings")
    if len(value) > MAX_ITEMS:
        raise BadRequest(f"field {key!r} holds more than {MAX_ITEMS} variables")
    if any(not name or "=" in name for name in value):
        raise BadRequest(f"field {key!r}: a variable name may not be empty or hold '='")


def _seconds(key, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_SECONDS:
        raise BadRequest(f"field {key!r} must be a number of seconds from 0 to {MAX_SECONDS}")


def _flag_or_seconds(key, value):
    """``wait``: a flag of start and restart, a number of seconds of ``logs_read``."""
    if not isinstance(value, bool):
        _seconds(key, value)


def _count(key, value):
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise BadRequest(f"field {key!r} must be an integer from 0 to {MAX_COUNT}")


def _flag(key, value):
    if not isinstance(value, bool):
        raise BadRequest(f"field {key!r} must be true or false")


def _signal(key, value):
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise BadRequest(f"field {key!r} must be a signal name or number")
    if isinstance(value, str):
        _text(key, value)


def _version(key, value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"field {key!r} must be an integer")


# Every field a request may carry; None (or absent) always means "not given".
FIELDS = {
    "type": _text, "config": _text, "cwd": _text, "home": _text, "display_name": _text, "cursor": _text,
    "file": _text, "format": _text, "output": _text, "feed": _text,
    "services": _names,
    "env": _environment,
    "wait": _flag_or_seconds, "timeout": _seconds,
    "head": _count, "tail": _count, "after": _count,
    "signal": _signal,
    "version": _version,
    "attach": _flag, "no_deps": _flag, "clean": _flag, "all": _flag, "follow": _flag, "no_hook": _flag,
    "force": _flag, "dry_run": _flag,
}


def check(request):
    """Raise ``BadRequest`` naming the first field of *request* that is not what it must be."""
    _no_hostile_values(request)
    for key in sorted(request):
        rule = FIELDS.get(key)
        if rule is not None and request[key] is not None:
            rule(key, request[key])


def _no_hostile_values(request):
    """Refuse NUL bytes in any string (key or value) and nesting deeper than ``MAX_DEPTH``, anywhere."""
    pending = [(request, 1, "request")]
    while pending:
        value, depth, where = pending.pop()
        if depth > MAX_DEPTH:
            raise BadRequest(f"{where}: nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            for key, item in value.items():
                if "\0" in key:
                    raise BadRequest(f"{where}: a key holds a NUL byte")
                pending.append((item, depth + 1, f"field {key!r}" if depth == 1 else where))
        elif isinstance(value, list):
            pending.extend((item, depth + 1, where) for item in value)
        elif isinstance(value, str) and "\0" in value:
            raise BadRequest(f"{where} holds a NUL byte")
        elif isinstance(value, float) and not math.isfinite(value):
            raise BadRequest(f"{where} must be a finite number")
