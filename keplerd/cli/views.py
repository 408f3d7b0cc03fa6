"""keplerctl ps, logs and inspect: what is running and what it said."""

import json
import sys

from keplerd.cli.client import CommandError
from keplerd.cli.output import LogPrinter, ps_json_row, status_text, table


def ps(context):
    """List services and their status."""
    args = context.args
    request = {"type": "ps", "all": True} if args.all else context.config_request("ps")
    with context.client() as client:
        rows = client.call(request)["services"]
    if args.json:
        print(json.dumps([ps_json_row(row) for row in rows], indent=2))
        return 0
    headers = ["NAME", "STATUS", "PID"]
    lines = [[row["name"], status_text(row), row.get("pid") or ""] for row in rows]
    if args.all:
        headers.insert(0, "CONFIG")
        for line, row in zip(lines, rows):
            line.insert(0, row.get("config_path") or row.get("config"))
    print(table(headers, lines))
    return 0


def logs(context):
    """Show stored log lines merged in time order, as ``name | text``."""
    args = context.args
    if args.follow:
        raise CommandError("logs --follow is not available yet")
    if args.head is not None and args.tail is not None:
        raise CommandError("--head and --tail cannot be combined")
    printer = LogPrinter(sys.stdout, timestamps=args.timestamps)
    request = context.config_request("logs", services=args.services, head=args.head, tail=args.tail,
                                     no_hook=args.no_hook)

    def show(event):
        if event.get("kind") == "names":
            printer.width = max((len(name) for name in event["names"]), default=0)
        for stamp, name, stream, text in event.get("lines", ()):
            if args.json:
                print(json.dumps({"time": stamp, "name": name, "stream": stream, "text": text}))
            else:
                printer.line(stamp, name, text)

    with context.client() as client:
        client.call(request, show)
    return 0


def inspect(context):
    """Show the baked config and runtime state of services as JSON."""
    with context.client() as client:
        response = client.call(context.config_request("inspect", services=context.args.services))
    print(json.dumps(response["inspect"], indent=2))
    return 0


def prune(context):
    """Remove the state dirs of configs whose services all ended or whose file is gone."""
    args = context.args
    with context.client() as client:
        response = client.call({"type": "prune", "force": args.force, "dry_run": args.dry_run})
    if args.json:
        print(json.dumps(response["pruned"], indent=2))
        return 0
    verb = "would remove" if args.dry_run else "removed"
    for item in response["pruned"]:
        print(f"{verb} {item['config']} ({item['id']}): {item['why']}")
    if not response["pruned"]:
        print("nothing to prune")
    return 0
