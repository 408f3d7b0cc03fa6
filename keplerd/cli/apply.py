"""keplerctl apply: re-bake the config and restart only what changed (SPEC §16)."""

import json
import sys

from keplerd.cli.lifecycle import EXIT_INTERRUPTED, AttachedView, _mode, _print_ready_line
from keplerd.model.changes import plan_line


def apply(context):
    """Print the plan, carry it out; show progress and return once it is up (-d: at once).

    Ctrl+C only stops waiting: the apply goes on in the daemon (as ``restart``).
    """
    args = context.args
    mode = _mode(args)
    if args.dry_run:
        mode = {"attach": False, "wait": False, "timeout": None}
    request = context.baking_request("apply", services=args.services, dry_run=args.dry_run, **mode)
    view = AttachedView(verbose=args.verbose) if mode["attach"] and not args.json else None
    shown = []

    def on_event(event):
        if event.get("kind") == "plan":
            if not args.json:
                print_plan(event, sys.stdout)
            shown.append(True)
        elif view is not None:
            view.event(event)
        elif not (args.quiet or args.json):
            _print_ready_line(event)  # --wait: one line per service once it is up

    with context.client() as client:
        try:
            response = client.call(request, on_event)
        except KeyboardInterrupt:
            print("keplerctl: detached; the apply goes on in the daemon", file=sys.stderr)
            return EXIT_INTERRUPTED
    if args.json:
        print(json.dumps({key: response.get(key) for key in ("plan", "global", "dry_run", "services")}, indent=2))
    elif not shown:
        print_plan(response, sys.stdout)
    return 0


def print_plan(plan, stream):
    """Print one line per service (``web  changed: command -> restart``), then global changes."""
    encoding = getattr(stream, "encoding", None) or "utf-8"
    for entry in plan["plan"]:
        # ``scale 1 → 3``: a terminal whose encoding lacks the arrow gets "?" rather than a traceback.
        stream.write(plan_line(entry).encode(encoding, "replace").decode(encoding) + "\n")
    if plan.get("global"):
        stream.write(f"global  changed: {', '.join(plan['global'])} -> stored\n")
    stream.flush()
