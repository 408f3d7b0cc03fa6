"""keplerctl apply: re-bake the config and restart only what changed (SPEC §16)."""

import json
import sys

from keplerd.cli.client import CommandError
from keplerd.model.changes import plan_line


def apply(context):
    """Print the plan, then carry it out (unless --dry-run); wait as ``restart`` does."""
    args = context.args
    wait = args.wait or not args.detach
    if args.timeout is not None and not wait:
        raise CommandError("--timeout only applies with --wait")
    request = context.baking_request("apply", services=args.services, dry_run=args.dry_run, attach=False,
                                     wait=wait and not args.dry_run, timeout=args.timeout)
    shown = []

    def on_event(event):
        if event.get("kind") == "plan" and not args.json:
            print_plan(event, sys.stdout)
            shown.append(True)

    with context.client() as client:
        response = client.call(request, on_event)
    if args.json:
        print(json.dumps({key: response.get(key) for key in ("plan", "global", "dry_run", "services")}, indent=2))
    elif not shown:
        print_plan(response, sys.stdout)
    return 0


def print_plan(plan, stream):
    """Print one line per service (``web  changed: command -> restart``), then global changes."""
    for entry in plan["plan"]:
        stream.write(plan_line(entry) + "\n")
    if plan.get("global"):
        stream.write(f"global  changed: {', '.join(plan['global'])} -> stored\n")
    stream.flush()
