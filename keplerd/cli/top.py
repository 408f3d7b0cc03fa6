"""``keplerctl top``: a full-screen live view of the services, with keys that act on them (SPEC §19).

Built on the standard library's curses: it is all a table with one selected row
needs, it works over SSH in any terminal terminfo knows, it restores the
terminal on exit and on Ctrl+C (``curses.wrapper``), and it costs no dependency.
This module is imported only by ``top``, so no other command pays for curses.
"""

import curses
import os
import signal
import subprocess
import sys
import time

from keplerd.cli.client import CommandError, ConnectionLost
from keplerd.cli.output import format_bytes, status_text
from keplerd.cli.reconnect import reconnect
from keplerd.units import format_age

REFRESH_SECONDS = 1.0
KEY_WAIT_MS = 100
KEYS_HELP = "\u2191\u2193 select  r restart  s stop  S start  l logs  q quit"
ASCII_HELP = "up/down select  r restart  s stop  S start  l logs  q quit"


def top(context):
    """Run the live view until ``q`` or Ctrl+C."""
    args = context.args
    view = TopView(context, every_config=args.all)
    view.client = context.client().connect()
    try:
        curses.wrapper(view.run)
    except KeyboardInterrupt:
        pass  # Ctrl+C is a way out too; wrapper has restored the terminal
    finally:
        view.client.close()
    return 0


class TopView:
    """The state of the screen: the rows last fetched, the selection, a status message."""

    def __init__(self, context, every_config=False):
        self.context = context
        self.every_config = every_config
        self.client = None
        self.rows = []
        self.selected = None   # (config path, service name): stays on its service when rows re-sort
        self.message = ""
        self._fetched_at = 0.0

    # -- the loop ----------------------------------------------------------------------

    def run(self, screen):
        _prepare(screen)
        while True:
            if time.monotonic() - self._fetched_at >= REFRESH_SECONDS:
                self.fetch()
            self.draw(screen)
            key = screen.getch()
            if key in (ord("q"), ord("Q")):
                return
            if key != -1:
                self.on_key(screen, key)

    def fetch(self):
        if self.every_config:
            request = {"type": "ps", "all": True, "stats": True}
        else:
            request = self.context.config_request("ps", stats=True)
        try:
            rows = self.client.call(request)["services"]
        except ConnectionLost:
            # Cut by a daemon reexec: ask the new image (a daemon that stopped ends top, as reconnect says).
            self.client.close()
            self.client = reconnect(self.context)
            rows = self.client.call(request)["services"]
        self.rows = sort_rows(rows)
        self._fetched_at = time.monotonic()
        keys = [row_key(row) for row in self.rows]
        if self.selected not in keys:
            self.selected = keys[0] if keys else None

    def on_key(self, screen, key):
        if key in (curses.KEY_UP, ord("k")):
            self.move(-1)
        elif key in (curses.KEY_DOWN, ord("j")):
            self.move(1)
        elif key in (ord("r"), ord("s"), ord("S")):
            self.act({ord("r"): "restart", ord("s"): "stop", ord("S"): "start"}[key], screen)
        elif key == ord("l"):
            self.follow_logs(screen)

    def move(self, step):
        keys = [row_key(row) for row in self.rows]
        if not keys:
            return
        index = keys.index(self.selected) if self.selected in keys else 0
        self.selected = keys[max(0, min(len(keys) - 1, index + step))]

    # -- actions -------------------------------------------------------------------------

    def act(self, action, screen):
        """Restart, stop or start the selected service; the screen says so while it happens."""
        if self.selected is None:
            return
        config, name = self.selected
        self.message = f"{action} {name}..."
        self.draw(screen)
        request = {"type": action, "config": config, "services": [name]}
        if action == "start":
            request.update(env=dict(os.environ), home=self.context.home)
        try:
            self.client.call(request)
            self.message = f"{action} {name}: done"
        except CommandError as error:
            self.message = f"{action} {name}: {error}"
        self._fetched_at = 0.0  # show the outcome at once

    def follow_logs(self, screen):
        """Leave the full screen for ``keplerctl logs -f`` of the selected service; Ctrl+C comes back."""
        if self.selected is None:
            return
        config, name = self.selected
        curses.def_prog_mode()
        curses.endwin()
        print(f"logs of {name} (Ctrl+C to go back to top)", flush=True)
        # Ctrl+C is for the follower (same terminal): here it must do nothing. A handler, not
        # SIG_IGN, which the follower would inherit through exec.
        previous = signal.signal(signal.SIGINT, _ignore_signal)
        try:
            subprocess.run([sys.executable, "-m", "keplerd.cli", "-f", config, "logs", "-f", name])
        finally:
            signal.signal(signal.SIGINT, previous)
            curses.reset_prog_mode()
            screen.clear()
        self._fetched_at = 0.0

    # -- drawing ---------------------------------------------------------------------------

    def draw(self, screen):
        height, width = screen.getmaxyx()
        lines = render(self.rows, self.selected, self.every_config, width, height, self.message,
                       _unicode_ok())
        screen.erase()
        for y, (text, highlighted) in enumerate(lines):
            # The bottom-right cell cannot be written without scrolling: one column less.
            screen.addnstr(y, 0, text, max(0, width - 1), curses.A_REVERSE if highlighted else curses.A_NORMAL)
        screen.refresh()


def _ignore_signal(signum, frame):
    pass  # see follow_logs


def _prepare(screen):
    try:
        curses.curs_set(0)
    except curses.error:
        pass  # a terminal that cannot hide its cursor shows it: harmless
    screen.timeout(KEY_WAIT_MS)
    screen.keypad(True)


def _unicode_ok():
    return "UTF-8" in (os.environ.get("LC_ALL") or os.environ.get("LC_CTYPE") or os.environ.get("LANG") or "").upper()


def row_key(row):
    return (row.get("config_path"), row["name"])


def sort_rows(rows):
    """Busiest first (CPU %), then by config and name: a stable order while nothing changes."""
    return sorted(rows, key=lambda row: (-(row.get("cpu_percent") or 0.0), row.get("config_path") or "", row["name"]))


COLUMNS = (("NAME", 16), ("STATUS", 24), ("CPU%", 6), ("MEM", 8), ("PROCS", 5), ("RESTARTS", 8), ("UPTIME", 7))


def render(rows, selected, every_config, width, height, message="", unicode_ok=True, now=None):
    """Return the screen as ``[(text, highlighted)]``, at most *height* lines of at most *width* columns."""
    now = time.time() if now is None else now
    title = f"kepler top: {len(rows)} service(s)" + (" of every config" if every_config else "")
    lines = [(_fit(f"{title}   {KEYS_HELP if unicode_ok else ASCII_HELP}", width), False)]
    lines.append((_fit(_columns([name for name, _ in COLUMNS], every_config, ["CONFIG"]), width), True))
    body = [(_fit(_columns(_cells(row, now), every_config, [_short_config(row)]), width), row_key(row) == selected)
            for row in rows]
    room = max(0, height - 3)   # title, header, message
    start = _scroll_start(body, selected, rows, room)
    lines.extend(body[start:start + room])
    lines.extend([("", False)] * (height - 1 - len(lines)))
    lines.append((_fit(message, width), False))
    return lines[:height]


def _scroll_start(body, selected, rows, room):
    keys = [row_key(row) for row in rows]
    if selected not in keys or room <= 0:
        return 0
    return max(0, keys.index(selected) - room + 1)


def _cells(row, now):
    running = row.get("processes", 0) > 0 and row.get("started_at")
    return [row["name"], status_text(row, now), f"{row.get('cpu_percent', 0.0):.1f}",
            format_bytes(row.get("memory_bytes", 0)), str(row.get("processes", 0)), str(row.get("restarts", 0)),
            format_age(now - row["started_at"]) if running else "-"]


def _columns(cells, every_config, config_cell):
    widths = [width for _, width in COLUMNS]
    if every_config:
        cells, widths = config_cell + cells, [14] + widths
    return " ".join(_fit(str(cell), width).ljust(width) for cell, width in zip(cells, widths))


def _short_config(row):
    path = row.get("config_path") or row.get("config") or ""
    return os.path.basename(os.path.dirname(path)) or path


def _fit(text, width):
    return text if len(text) <= width else text[:max(0, width - 1)] + "~"
