"""Carry an attached command over a ``daemon reexec``: connect again and go on where it was.

A reexec cuts every connection, but its listening socket never closes: a client
that connects meanwhile waits in the backlog and is answered by the new image.
So a cut connection is followed by a connection that waits for that answer. A
daemon that really went away (``daemon stop``) leaves nothing listening: the
client gives up after ``GONE_SECONDS`` of that and exits 2, saying so.
"""

import time

from keplerd.cli.client import CommandError, ConnectionLost, DaemonUnreachable

# How long a daemon may take to answer again (a loaded machine, a slow new image) before we give up.
RECONNECT_SECONDS = 60.0
# How long nothing may listen on the socket before the daemon counts as gone: a reexec never
# closes it; a fallback to a normal boot (an unusable hand-over) binds it again at once.
GONE_SECONDS = 3.0
RETRY_INTERVAL = 0.05


def resuming(context, run):
    """Return ``run(client)``, calling it again on a new connection each time the daemon cuts one.

    *run* learns it is resuming from what it kept of its earlier calls (the last line or
    event shown). The first connection fails as usual; later ones as ``reconnect`` says.
    """
    client = context.client().connect()
    while True:
        try:
            result = run(client)
        except ConnectionLost:
            # Cut: a reexec, or the daemon stopping (reconnect tells which).
            client.close()
            client = reconnect(context)
            continue
        except KeyboardInterrupt:
            raise  # the connection stays open: an attached start stops its services on it
        except BaseException:
            client.close()
            raise
        client.close()
        return result


def reconnect(context):
    """Return a connected client once the daemon answers again; raise ``DaemonUnreachable`` when it is gone."""
    began = time.monotonic()
    unreachable_since = None
    while True:
        client = context.client()
        try:
            return client.connect()
        except DaemonUnreachable as error:
            now = time.monotonic()
            unreachable_since = unreachable_since or now
            if now - unreachable_since >= GONE_SECONDS:
                raise DaemonUnreachable(f"the daemon went away: {error}") from None
        except (ConnectionLost, CommandError) as error:
            unreachable_since = None   # something listens: an image on its way
            if time.monotonic() - began >= RECONNECT_SECONDS:
                raise CommandError(f"keplerd did not answer again within {RECONNECT_SECONDS:.0f}s "
                                   f"after the connection was cut ({error})") from None
        time.sleep(RETRY_INTERVAL)
