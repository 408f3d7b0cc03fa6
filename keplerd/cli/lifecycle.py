"""keplerctl start, stop, restart and recreate."""

import signal
import sys

from keplerd.cli.client import CommandError
from keplerd.cli.output import LogPrinter
from keplerd.units import signal_name

EXIT_INTERRUPTED = 130


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
    with context.client() as client:
        if not request["attach"]:
            client.call(request, None if context.args.quiet else _print_ready_line)
            return 0
        return _attached(context, client, request)


def _print_ready_line(event):
    """Print one service's line of ``--wait``: ``web  healthy``, ``report  deferred: waits on ...``."""
    if event.get("kind") == "ready":
        print(event["line"], flush=True)


def _attached(context, client, request):
    """Show progress and logs until every service ends; Ctrl+C stops them gracefully."""
    # SIGTERM (e.g. from a terminal multiplexer or `timeout`) means the same as Ctrl+C here.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    view = AttachedView(verbose=context.args.verbose)
    request_id = client.send(request, view.event)
    try:
        client.wait(request_id)
        return 0
    except KeyboardInterrupt:
        pass
    print("Gracefully stopping... (press Ctrl+C again to force)", file=sys.stderr, flush=True)
    # Named services: stop those this start follows (it says which), not dependencies that already ran.
    services = view.followed if request.get("services") else []
    stopped = False
    try:
        client.call(context.config_request("stop", services=services))
        stopped = True
        client.wait(request_id)
    except KeyboardInterrupt:
        if not stopped:
            print("keplerctl: not waiting any longer; services keep stopping in the daemon", file=sys.stderr)
    except CommandError:
        pass  # the start request ends with the stop; its error (if any) says nothing new
    return EXIT_INTERRUPTED


class AttachedView:
    """Prints each service's phase changes and its log lines as they arrive."""

    def __init__(self, verbose=False, stream=sys.stdout):
        self.stream = stream
        self.logs = LogPrinter(stream)
        self.followed = []
        self._shown = {}

    def event(self, event):
        if event.get("kind") == "attached":
            self.followed = event["services"]
        elif event.get("kind") == "log":
            self.logs.chunk(event["name"], event["data"])
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
