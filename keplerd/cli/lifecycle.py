"""keplerctl start, stop, restart and recreate."""

import signal
import sys
import time

from keplerd.cli.client import CommandError
from keplerd.cli.logs import Resumable, print_batch
from keplerd.cli.output import LogPrinter
from keplerd.cli.reconnect import resuming
from keplerd.units import signal_name

EXIT_INTERRUPTED = 130
# Carried over a reexec, an attached start reads lines in batches: how long one may wait for new ones.
FOLLOW_POLL_SECONDS = 0.5


def start(context):
    """Start services: attached (progress and logs until all end), or detached with -d."""
    args = context.args
    request = context.baking_request("start", services=args.services, no_deps=args.no_deps,
                                     **_mode(args))
    return _run(context, request)


def restart(context):
    """Restart services; show progress and return once they are up (-d: at once; --wait: one line each).

    Ctrl+C only stops waiting: the restart goes on in the daemon (as ``docker compose restart``).
    """
    args = context.args
    if args.rolling:
        return _rolling_restart(context)
    mode = _mode(args)
    request = context.config_request("restart", services=args.services, **mode)
    with context.client() as client:
        if not mode["attach"]:
            client.call(request, None if args.quiet else _print_ready_line)
            return 0
        view = AttachedView(verbose=args.verbose)
        try:
            client.call(request, view.event)
        except KeyboardInterrupt:
            print("keplerctl: detached; the restart goes on in the daemon", file=sys.stderr)
            return EXIT_INTERRUPTED
    return 0


def _rolling_restart(context):
    """Restart instances one at a time, each up (healthy) before the next; exit 1 naming one that is not."""
    args = context.args
    request = context.config_request("restart", services=args.services, rolling=True, attach=not args.detach,
                                     timeout=args.timeout)
    view = AttachedView(verbose=args.verbose)
    with context.client() as client:
        try:
            client.call(request, view.event)
        except KeyboardInterrupt:
            print("keplerctl: detached; the rolling restart goes on in the daemon", file=sys.stderr)
            return EXIT_INTERRUPTED
    return 0


def _mode(args):
    if args.timeout is not None and not args.wait:
        raise CommandError("--timeout only applies with --wait")
    if args.quiet and not args.wait:
        raise CommandError("-q/--quiet only applies with --wait")
    detached = args.detach or args.wait
    return {"attach": not detached, "wait": args.wait, "timeout": args.timeout}


def _run(context, request):
    if request["attach"]:
        return _attached(context, request)
    with context.client() as client:
        client.call(request, None if context.args.quiet else _print_ready_line)
    return 0


def _print_ready_line(event):
    """Print one service's line of ``--wait``: ``web  healthy``, ``report  deferred: waits on ...``."""
    if event.get("kind") == "ready":
        print(event["line"], flush=True)


def _attached(context, request):
    """Show progress and logs until every service ends; Ctrl+C stops them gracefully."""
    # SIGTERM (e.g. from a terminal multiplexer or `timeout`) means the same as Ctrl+C here.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    run = AttachedRun(context, request, AttachedView(verbose=context.args.verbose))
    try:
        return resuming(context, run.follow)
    except KeyboardInterrupt:
        pass
    print("Gracefully stopping... (press Ctrl+C again to force)", file=sys.stderr, flush=True)
    return run.stop()


class AttachedRun:
    """An attached start: the start request, and after a ``daemon reexec`` cut its connection, a follow-on
    (the services' states through ``attach``, their lines through a ``logs`` cursor from the last one shown)."""

    def __init__(self, context, request, view):
        self.context = context
        self.request = request
        self.view = view
        self.client = None
        self.pending = None        # the start request while it runs on this connection
        self.began = int(time.time() * 1000)

    def follow(self, client):
        """Follow until every service has ended, on this connection; return the exit code."""
        self.client = client
        self.pending = None
        if not self.view.attached:
            # First, or cut before the daemon said what it follows: (again) start, which starts nothing twice.
            self.pending = client.send(self.request, self.view.event)
            client.wait(self.pending)
        else:
            self._follow_again(client)
        return 0

    def _follow_again(self, client):
        names = self.view.followed or self.request.get("services") or []
        attached = client.send(self.context.config_request("attach", services=names), self.view.event)
        logs = self.view.logs
        since = self.began if logs.last is None else logs.resume()
        response = client.call(self.context.config_request("logs", services=[], follow=True, since=since))
        cursor = response["cursor"]
        logs.know([*response.get("services", ()), *response.get("names", ())])
        ended = False
        while True:
            print_batch(logs, response)
            if response.get("done") or (ended and not (response.get("lines") or response.get("chunks"))):
                break
            # Once the services have ended, read on (without waiting) until a batch asked for since is empty.
            ended = client.answered(attached)
            response = client.call({"type": "logs_read", "cursor": cursor,
                                    "wait": 0 if ended else FOLLOW_POLL_SECONDS})
        if not response.get("done"):
            client.call({"type": "logs_close", "cursor": cursor})
        client.result(attached)

    def stop(self):
        """Stop the services this start follows (after Ctrl+C); return the exit code."""
        client = self.client
        # Named services: stop those this start follows (it says which), not dependencies that already ran.
        services = self.view.followed if self.request.get("services") else []
        stopped = False
        try:
            if client is None or not client.connected:   # Ctrl+C while connecting (again)
                client, self.pending = self.context.client().connect(), None
            client.call(self.context.config_request("stop", services=services))
            stopped = True
            if self.pending is not None:
                client.wait(self.pending)
        except KeyboardInterrupt:
            if not stopped:
                print("keplerctl: not waiting any longer; services keep stopping in the daemon", file=sys.stderr)
        except CommandError:
            pass  # the start request ends with the stop; its error (if any) says nothing new
        finally:
            if client is not None:
                client.close()
        return EXIT_INTERRUPTED


class AttachedView:
    """Prints each service's phase changes and its log lines as they arrive."""

    def __init__(self, verbose=False, stream=sys.stdout):
        self.stream = stream
        self.logs = Resumable(LogPrinter(stream))   # remembers the last line shown, for a reexec
        self.followed = []
        self.attached = False      # the daemon said which services it follows
        self._shown = {}

    def event(self, event):
        if event.get("kind") == "attached":
            self.followed, self.attached = event["services"], True
        elif event.get("kind") == "log":
            self.logs.chunk(event["name"], event["data"], event.get("stream", "stdout"))
        elif event.get("kind") == "state":
            self._state(event)
        elif event.get("kind") == "ready":
            self.stream.write(event["line"] + "\n")
        self.stream.flush()

    def _state(self, event):
        phase = phase_text(event)
        if self._shown.get(event["service"]) == phase:
            return
        self._shown[event["service"]] = phase
        self.stream.write(f"[+] {event['service']}: {phase}\n")


def phase_text(event):
    """Return how attached mode names a service's state: ``started (pid 42)``, ``failed: why``."""
    status = event["status"]
    if status == "running":
        return f"started (pid {event.get('pid')})"
    if status == "starting" and event.get("waiting_on"):
        return f"waiting for {', '.join(event['waiting_on'])}"
    if status == "starting" and event.get("reason"):
        return f"starting ({event['reason']})"
    if status == "exited":
        return f"exited with code {event.get('exit_code')}"
    if status == "killed":
        return f"killed by {signal_name(event.get('signal'))}"
    if status == "failed":
        return f"failed: {event.get('reason')}"
    return status


def stop(context):
    """Stop services (all by default), dependents first."""
    args = context.args
    with context.client() as client:
        response = client.call(context.config_request("stop", services=args.services, signal=args.signal,
                                                      clean=args.clean))
    if args.clean and context.args.verbose:
        print(f"removed {response.get('cleaned')}")
    return 0


def recreate(context):
    """Re-bake the config from its file and the current environment."""
    with context.client() as client:
        client.call(context.baking_request("recreate"))
    return 0
