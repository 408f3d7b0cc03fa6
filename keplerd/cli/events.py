"""``keplerctl events``: the daemon's live event stream, one line (or JSON object) per event."""

import json
import sys

from keplerd.cli.output import iso_time
from keplerd.units import signal_name


def events(context):
    """Print events as they happen, until Ctrl+C (SPEC §19)."""
    args = context.args
    request = {"type": "events", "all": True} if args.all else context.config_request("events")
    show = _print_json if args.json else _print_line

    def on_event(event):
        if event.get("kind") == "subscribed":
            what = "every config" if args.all else context.config_path
            print(f"keplerctl: watching the events of {what} (Ctrl+C to stop)", file=sys.stderr, flush=True)
            return
        show(event)

    with context.client() as client:
        try:
            client.call(request, on_event)
        except KeyboardInterrupt:
            return 0  # Ctrl+C is how watching ends
    return 0


def _print_json(event):
    print(json.dumps(event), flush=True)


def _print_line(event):
    print(f"{iso_time(int(event['time'] * 1000))} {event['config']} {event['service']} {describe(event)}",
          flush=True)


def describe(event):
    """Return what happened, in words: ``running -> exited (code 1)``, ``restart (policy)``."""
    kind = event["kind"]
    if kind == "state":
        outcome = []
        if event.get("exit_code") is not None and event["to"] in ("exited", "killed"):
            outcome.append(f"code {event['exit_code']}")
        if event.get("signal") and event["to"] in ("exited", "killed"):
            outcome.append(signal_name(event["signal"]))
        if event.get("reason"):
            outcome.append(event["reason"])
        suffix = f" ({', '.join(outcome)})" if outcome else ""
        return f"{event['from']} -> {event['to']}{suffix}"
    if kind == "restart":
        return f"restart ({event.get('reason')})"
    if kind == "health":
        return f"health: {event.get('health')}"
    if kind == "hook":
        verdict = "ok" if event.get("ok") else f"failed: {event.get('reason')}"
        return f"hook {event.get('hook')}: {verdict}"
    if kind == "scale":
        renamed = "".join(f", {old} is now {new}" for old, new in (event.get("renamed") or {}).items())
        return f"scale {event.get('previous')} -> {event.get('replicas')}{renamed}"
    return kind
