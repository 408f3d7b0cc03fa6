"""keplerctl scale and signal (SPEC §17)."""

from keplerd.cli.client import CommandError


def scale(context):
    """Set the instance count of services: ``keplerctl scale web=5 worker=2``."""
    counts = {}
    for name, count in context.args.counts:
        if name in counts:
            raise CommandError(f"{name} is named twice")
        counts[name] = count
    with context.client() as client:
        response = client.call(context.config_request("scale", counts=counts))
    if context.args.verbose:
        for name, count in response["counts"].items():
            print(f"{name}: {count} instance{'s' if count != 1 else ''}")
    return 0


def signal(context):
    """Send a signal to the main process (or group) of each named running service."""
    args = context.args
    with context.client() as client:
        response = client.call(context.config_request("signal", signal=args.signal, services=args.services,
                                                      group=args.group))
    if args.verbose:
        for name in response["signalled"]:
            print(f"{response['signal']} -> {name}")
    return 0
