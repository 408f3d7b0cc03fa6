"""How ``keplerctl`` shows things: status words, the ps table, log lines, colours."""

import os
import sys
import time

from keplerd.logs.format import owner_of, parse_lines
from keplerd.units import format_age, signal_name

_COLOURS = ("36", "33", "32", "35", "34", "91", "96", "93", "92", "95", "94")


def status_text(row, now=None):
    """Return the STATUS column of ``ps`` for one service (SPEC §13)."""
    now = time.time() if now is None else now
    status = row["status"]
    age = format_age(now - (row.get("since") or now))
    if status in ("running", "healthy", "unhealthy"):
        up = f"Up {format_age(now - (row.get('started_at') or row.get('since') or now))}"
        notes = ([] if status == "running" else [status]) + (["paused"] if row.get("paused") else [])
        return f"{up} ({', '.join(notes)})" if notes else up
    if status == "exited":
        return f"Exited ({row.get('exit_code')}) {age} ago{_gave_up(row)}"
    if status == "killed":
        return f"Killed ({signal_name(row.get('signal'))}) {age} ago{_gave_up(row)}"
    if status == "starting" and row.get("backoff_until"):
        wait = format_age(max(0, row["backoff_until"] - now) + 0.999)  # rounded up: never "in 0s"
        return f"Restarting in {wait} ({_retries(row.get('retries', 0))})"
    if status == "failed":
        return f"Failed {age} ago"
    return status.capitalize()


def _retries(count):
    return f"{count} retr{'y' if count == 1 else 'ies'}"


def _gave_up(row):
    return f", gave up after {_retries(row.get('retries', 0))}" if row.get("gave_up") else ""


def pid_text(row):
    """Return the PID column: the live process, or ``-`` (a dead pid is never shown)."""
    return str(row["pid"]) if row.get("pid") else "-"


def ps_json_row(row):
    """Return one service as ``ps --json`` shows it."""
    signum = row.get("signal")
    return {
        "config": row.get("config_path"), "owner": row.get("owner"), "name": row["name"],
        "service": row.get("service", row["name"]), "replica": row.get("replica"), "status": row["status"],
        "pid": row.get("pid"),
        "exit_code": row.get("exit_code"), "signal": signal_name(signum) if signum else None,
        "since": row.get("since"), "restarts": row.get("restarts", 0), "health": row.get("health"),
        "reason": row.get("reason"), "started_at": row.get("started_at"),
        "cpu_seconds": row.get("cpu_seconds", 0.0), "cpu_percent": row.get("cpu_percent", 0.0),
        "memory_bytes": row.get("memory_bytes", 0), "processes": row.get("processes", 0),
        "config_changed": bool(row.get("config_changed")),
        "status_text": row.get("status_text"),
        **({"backoff_until": row["backoff_until"], "retries": row.get("retries", 0)}
           if row.get("backoff_until") else {}),
        **({"paused": True} if row.get("paused") else {}),
    }


STATS_HEADERS = ["CPU%", "MEM", "PROCS", "RESTARTS", "UPTIME"]


def stats_cells(row, now=None):
    """Return the ``ps --stats`` cells of one service: CPU%, MEM, PROCS, RESTARTS, UPTIME."""
    now = time.time() if now is None else now
    running = row.get("processes", 0) > 0 and row.get("started_at")
    return [f"{row.get('cpu_percent', 0.0):.1f}", format_bytes(row.get("memory_bytes", 0)),
            str(row.get("processes", 0)), str(row.get("restarts", 0)),
            format_age(now - row["started_at"]) if running else "-"]


def format_bytes(count):
    """Return a size the short way: ``512B``, ``12.3M``, ``1.5G`` (powers of 1024)."""
    size = float(count or 0)
    for unit in ("B", "K", "M", "G"):
        if size < 1024 or unit == "G":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return f"{size:.1f}G"


def table(headers, rows):
    """Return *rows* (lists of text) as left-aligned columns under *headers*."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    lines = ["   ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip()
             for line in [headers, *rows]]
    return "\n".join(lines)


def use_colour(stream=sys.stdout, environ=os.environ):
    """Tell whether to colour output: ``KEPLER_COLOR=1`` forces, ``NO_COLOR`` (or ``KEPLER_COLOR=0``) disables.

    Otherwise colour only when *stream* is a terminal. The Kepler-specific
    setting wins over the generic ``NO_COLOR``, as a command-line flag would.
    """
    forced = environ.get("KEPLER_COLOR")
    if forced in ("0", "1"):
        return forced == "1"
    if environ.get("NO_COLOR"):
        return False
    return stream.isatty()


class LogPrinter:
    """Prints log lines as ``name | text``, names padded and coloured per service.

    Colours are handed out in the order services are made known (``know``), so
    the services of a config get distinct colours; a hook's log takes its
    service's colour.
    """

    def __init__(self, stream=sys.stdout, timestamps=False, colour=None, width=0):
        self.stream = stream
        self.timestamps = timestamps
        self.colour = use_colour(stream) if colour is None else colour
        self.width = width
        self._colours = {}

    def know(self, names):
        """Make *names* known up front: their colours in this order, and the name column's width."""
        for name in names:
            self._colour(name)
            self.width = max(self.width, len(name))

    def _colour(self, name):
        owner = owner_of(name)
        colour = self._colours.get(owner)
        if colour is None:
            colour = self._colours[owner] = _COLOURS[len(self._colours) % len(_COLOURS)]
        return colour

    def format(self, stamp_ms, name, text):
        """Return one printed line (with its newline)."""
        self.width = max(self.width, len(name))
        label = name.ljust(self.width)
        if self.colour:
            label = f"\x1b[{self._colour(name)}m{label} |\x1b[0m"
        else:
            label = f"{label} |"
        prefix = f"{iso_time(stamp_ms)} " if self.timestamps else ""
        return f"{prefix}{label} {text}\n"

    def line(self, stamp_ms, name, text):
        self.stream.write(self.format(stamp_ms, name, text))

    def lines(self, batch):
        """Print ``[stamp, name, stream, text]`` lines with one write."""
        self.stream.write("".join([self.format(stamp, name, text) for stamp, name, _stream, text in batch]))

    def chunk(self, name, data, stream=None):
        """Print a chunk of stored-format lines (``<ms> <text>``) as they arrive live."""
        self.stream.write("".join([self.format(stamp, name, text) for stamp, text in parse_chunk(data)]))


def parse_chunk(data):
    """Return ``[(stamp_ms, text), ...]`` of stored-format lines (``<ms> <text>``, one per line)."""
    return parse_lines(data)[0]


def iso_time(stamp_ms):
    """Return ISO-8601 UTC time with milliseconds: ``2026-11-26T23:51:08.123Z``."""
    from datetime import UTC, datetime  # only for --timestamps: keep it off the start-up path

    moment = datetime.fromtimestamp(stamp_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp_ms % 1000:03d}Z"
