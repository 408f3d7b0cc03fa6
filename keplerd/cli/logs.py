"""keplerctl logs: stored lines merged in time order, then, with --follow, new lines as they come.

The daemon holds the cursor; this side asks for batch after batch until the
cursor is done (or, following, until Ctrl+C) and prints each batch with one write.
"""

import collections
import json
import sys

from keplerd.cli.client import CommandError
from keplerd.cli.output import LogPrinter, parse_chunk
from keplerd.cli.reconnect import resuming

# How long one follow request may wait in the daemon for new lines before answering empty.
FOLLOW_WAIT_SECONDS = 10.0


def show(context):
    """Show stored log lines merged in time order as ``name | text``; -f keeps following."""
    args = context.args
    if args.head is not None and (args.tail is not None or args.follow):
        raise CommandError("--head cannot be combined with --tail or --follow")
    for name in args.services:
        if name.endswith((".yaml", ".yml")):
            raise CommandError(f"{name} is not a service; in logs, -f is --follow: use keplerctl -f {name} logs, "
                               f"or keplerctl logs --file {name}")
    output = JsonLines(sys.stdout) if args.json else LogPrinter(sys.stdout, timestamps=args.timestamps)
    request = context.config_request("logs", services=args.services, head=args.head, tail=args.tail,
                                     no_hook=args.no_hook, follow=args.follow, since=args.since,
                                     until=args.until, grep=args.grep)
    if not args.follow:
        with context.client() as client:
            return _read(client, request, output)
    output = Resumable(output)

    def follow(client):
        # Back after a cut connection (daemon reexec): on from the last line shown, none twice.
        resumed = request if output.last is None else {**request, "since": output.resume(), "tail": None}
        return _read(client, resumed, output)

    try:
        return resuming(context, follow)
    except KeyboardInterrupt:
        return 0  # Ctrl+C is how a follow ends


def _read(client, request, output):
    """Print the batches of one cursor until it is done; return the exit code."""
    response = client.call(request)
    output.know([*response.get("services", ()), *response.get("names", ())])
    cursor = response["cursor"]
    while True:
        print_batch(output, response)
        if response.get("done"):
            if response.get("reason"):
                print(f"keplerctl: {response['reason']}", file=sys.stderr)
            return 0
        response = client.call({"type": "logs_read", "cursor": cursor, "wait": FOLLOW_WAIT_SECONDS})


class Resumable:
    """Passes lines on to *output*, remembering the last ones, so that a follow that reconnects
    (asking from the last stamp shown) prints no line twice.

    Lines of one millisecond may be many: those already shown at the last stamp are counted
    by ``(name, stream, text)`` and skipped once each when they come again.
    """

    def __init__(self, output):
        self.output = output
        self.stream = output.stream
        self.last = None                        # the newest stamp shown
        self._at_last = collections.Counter()   # lines shown at that stamp
        self._skip = None                       # after a reconnect: lines at `last` still to skip

    def know(self, names):
        self.output.know(names)

    def resume(self):
        """Return the stamp to ask from again; the lines shown at it will be skipped."""
        self._skip = collections.Counter(self._at_last)
        return self.last

    def lines(self, batch):
        self.output.lines([line for line in batch if self._fresh(*line)])

    def chunk(self, name, data, stream="stdout"):
        self.output.lines([(stamp, name, stream, text) for stamp, text in parse_chunk(data)
                           if self._fresh(stamp, name, stream, text)])

    def _fresh(self, stamp, name, stream, text):
        key = (name, stream, text)
        if self._skip is not None:
            if stamp < self.last or (stamp == self.last and self._skip[key] > 0):
                self._skip[key] -= stamp == self.last
                return False
            if stamp > self.last:
                self._skip = None
        if self.last is None or stamp > self.last:
            self.last, self._at_last = stamp, collections.Counter()
        if stamp == self.last:
            self._at_last[key] += 1
        return True


def print_batch(output, response):
    """Print one batch of a cursor (stored lines or live chunks) with one flush."""
    if response.get("lines"):
        output.lines(response["lines"])
    for name, stream, data in response.get("chunks", ()):
        output.chunk(name, data, stream)
    output.stream.flush()


class JsonLines:
    """Prints each log line as a JSON object: ``{"time", "name", "stream", "text"}``."""

    def __init__(self, stream):
        self.stream = stream

    def know(self, names):
        """Nothing to prepare: JSON needs no column widths or colours."""

    def lines(self, batch):
        self.stream.write("".join(_json(stamp, name, stream, text) for stamp, name, stream, text in batch))

    def chunk(self, name, data, stream="stdout"):
        self.stream.write("".join(_json(stamp, name, stream, text) for stamp, text in parse_chunk(data)))


def _json(stamp, name, stream, text):
    return json.dumps({"time": stamp, "name": name, "stream": stream, "text": text}) + "\n"
