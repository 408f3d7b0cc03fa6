"""keplerctl logs: stored lines merged in time order, then, with --follow, new lines as they come.

The daemon holds the cursor; this side asks for batch after batch until the
cursor is done (or, following, until Ctrl+C) and prints each batch with one write.
"""

import json
import sys

from keplerd.cli.client import CommandError
from keplerd.cli.output import LogPrinter, parse_chunk

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
                                     no_hook=args.no_hook, follow=args.follow)
    with context.client() as client:
        try:
            response = client.call(request)
            output.know([*response.get("services", ()), *response.get("names", ())])
            cursor = response["cursor"]
            while True:
                _print_batch(output, response)
                if response.get("done"):
                    if response.get("reason"):
                        print(f"keplerctl: {response['reason']}", file=sys.stderr)
                    return 0
                response = client.call({"type": "logs_read", "cursor": cursor, "wait": FOLLOW_WAIT_SECONDS})
        except KeyboardInterrupt:
            if args.follow:
                return 0  # Ctrl+C is how a follow ends
            raise


def _print_batch(output, response):
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
