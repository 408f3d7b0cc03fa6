"""Parse the small value languages of configs and the CLI: durations, sizes, signals.

Pure functions, shared by the config schema and ``keplerctl``; each raises
``ValueError`` with a message fit to be shown after a key path.

>>> parse_duration("100ms"), parse_duration("5m"), parse_duration(3)
(0.1, 300.0, 3.0)
>>> parse_size("64K"), parse_size("1GB")
(65536, 1073741824)
>>> parse_signal("term"), parse_signal("SIGKILL"), parse_signal("9")
(15, 9, 9)
"""

import re
import signal

_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}

_SIZE = re.compile(r"^\s*(\d+)\s*(k|kb|m|mb|g|gb)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "g": 1 << 30, "gb": 1 << 30, None: 1}


def parse_duration(value):
    """Return the duration *value* (``"10s"``, ``"100ms"``, ``5``) in seconds."""
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"invalid duration {value!r}: must not be negative")
        return float(value)
    match = _DURATION.match(value) if isinstance(value, str) else None
    if not match:
        raise ValueError(f"invalid duration {value!r}")
    number, unit = match.groups()
    return float(int(number) * _DURATION_UNITS[unit])


def parse_size(value):
    """Return the size *value* (``"64K"``, ``"1GB"``, ``1024``) in bytes."""
    if isinstance(value, bool):
        raise ValueError(f"invalid size {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"invalid size {value!r}: must not be negative")
        return value
    match = _SIZE.match(value) if isinstance(value, str) else None
    if not match:
        raise ValueError(f"invalid size {value!r}")
    number, unit = match.groups()
    return int(number) * _SIZE_UNITS[unit.lower() if unit else None]


def parse_signal(value):
    """Return the signal number for ``SIGTERM``, ``TERM``, ``term`` or ``15``."""
    if isinstance(value, bool):
        raise ValueError(f"invalid signal {value!r}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value)
    elif isinstance(value, str):
        name = value.strip().upper()
        if not name.startswith("SIG"):
            name = "SIG" + name
        member = getattr(signal.Signals, name, None)
        if member is None or name.startswith("SIG_"):
            raise ValueError(f"invalid signal {value!r}")
        return int(member)
    else:
        raise ValueError(f"invalid signal {value!r}")
    try:
        signal.Signals(number)
    except ValueError:
        raise ValueError(f"invalid signal {value!r}") from None
    return number


def signal_name(number):
    """Return ``SIGTERM`` for 15; the bare number as text when it has no name."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def format_age(seconds):
    """Return *seconds* in its largest whole unit: ``45s``, ``5m``, ``3h``, ``2d``."""
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
