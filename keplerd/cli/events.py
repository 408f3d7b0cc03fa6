"""``keplerctl events``: the daemon's live event stream, one line (or JSON object) per event."""

import json
import sys

from keplerd.cli.output import iso_time
from keplerd.cli.reconnect import resuming
from keplerd.units import signal_name


def events(context):
    """Print events as they happen, until Ctrl+C (SPEC §19); a ``daemon reexec`` is carried over."""
    args = context.args
    request = {"type": "events", "all": True} if args.all else context.config_request("events")
    reader = Reader(_print_json if args.json else _print_line,
                    "every config" if args.all else context.config_path)

    def watch(client):
        client.call({**request, **reader.resume_fields()}, reader.on_event)

    try:
        resuming(context, watch)
    except KeyboardInterrupt:
        return 0  # Ctrl+C is how watching ends
    return 0


class Reader:
    """Shows each event once: after a cut connection it asks from the last ``seq`` shown."""

    def __init__(self, show, what):
        self.show = show
        self.what = what
        self.feed = None    # the id of the feed the seqs count in (it survives a reexec)
        self.seq = None     # the last event shown

    def resume_fields(self):
        return {} if self.feed is None else {"feed": self.feed, "after": self.seq}

    def on_event(self, event):
        if event.get("kind") == "subscribed":
            self._subscribed(event)
        elif event["seq"] > self.seq:
            self.seq = event["seq"]
            self.show(event)

    def _subscribed(self, event):
        fresh = self.feed is None or event["missed"] is None   # a sequence of its own: from now on
        if self.feed is None:
            print(f"keplerctl: watching the events of {self.what} (Ctrl+C to stop)", file=sys.stderr, flush=True)
        elif event["missed"] is None:
            print("keplerctl: keplerd restarted: events from before it are not shown", file=sys.stderr, flush=True)
        elif event["missed"]:
            print(f"keplerctl: {event['missed']} event(s) were missed while reconnecting", file=sys.stderr,
                  flush=True)
        if fresh:
            self.seq = event["next_seq"] - 1
        self.feed = event["feed"]


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
    return kind
