"""How ``keplerctl`` shows things: status words, the ps table, log lines, colours."""

import os
import sys
import time
import zlib
from datetime import datetime, UTC

from keplerd.units import format_age, signal_name

_COLOURS = ("36", "33", "32", "35", "34", "91", "96", "93", "92", "95", "94")


def status_text(row, now=None):
    """Return the STATUS column of ``ps`` for one service (SPEC §13)."""
    now = time.time() if now is None else now
    status = row["status"]
    age = format_age(now - (row.get("since") or now))
    if status in ("running", "healthy", "unhealthy"):
        up = f"Up {format_age(now - (row.get('started_at') or row.get('since') or now))}"
        return up if status == "running" else f"{up} ({status})"
    if status == "exited":
        return f"Exited ({row.get('exit_code')}) {age} ago"
    if status == "killed":
        return f"Killed ({signal_name(row.get('signal'))}) {age} ago"
    if status == "failed":
        return f"Failed {age} ago"
    return status.capitalize()


def ps_json_row(row):
    """Return one service as ``ps --json`` shows it."""
    signum = row.get("signal")
    return {
        "config": row.get("config_path"), "name": row["name"], "status": row["status"], "pid": row.get("pid"),
        "exit_code": row.get("exit_code"), "signal": signal_name(signum) if signum else None,
        "since": row.get("since"), "restarts": row.get("restarts", 0), "health": row.get("health"),
    }


def table(headers, rows):
    """Return *rows* (lists of text) as left-aligned columns under *headers*."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    lines = ["   ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip()
             for line in [headers, *rows]]
    return "\n".join(lines)


def use_colour(stream=sys.stdout):
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("KEPLER_COLOR") == "1":
        return True
    return stream.isatty()


def colour_for(name):
    """Return the ANSI colour of a service, the same for its hook logs."""
    owner = name.split(".", 1)[0]
    return _COLOURS[zlib.crc32(owner.encode()) % len(_COLOURS)]


class LogPrinter:
    """Prints log lines as ``name | text``, names padded and coloured per service."""

    def __init__(self, stream=sys.stdout, timestamps=False, colour=None, width=0):
        self.stream = stream
        self.timestamps = timestamps
        self.colour = use_colour(stream) if colour is None else colour
        self.width = width

    def line(self, stamp_ms, name, text):
        self.width = max(self.width, len(name))
        label = name.ljust(self.width)
        if self.colour:
            label = f"\x1b[{colour_for(name)}m{label} |\x1b[0m"
        else:
            label = f"{label} |"
        prefix = f"{iso_time(stamp_ms)} " if self.timestamps else ""
        self.stream.write(f"{prefix}{label} {text}\n")

    def chunk(self, name, data):
        """Print a chunk of stored-format lines (``<ms> <text>``) as they arrive live."""
        for raw in data.splitlines():
            stamp, _, text = raw.partition(" ")
            self.line(int(stamp) if stamp.isdigit() else 0, name, text)


def iso_time(stamp_ms):
    """Return ISO-8601 UTC time with milliseconds: ``2026-11-26T23:51:08.123Z``."""
    moment = datetime.fromtimestamp(stamp_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp_ms % 1000:03d}Z"
