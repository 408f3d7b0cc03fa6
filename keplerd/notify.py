"""Tell systemd how the daemon is doing: sd_notify(3) with the standard library.

A notification is one datagram of ``KEY=value`` lines sent to ``$NOTIFY_SOCKET``
(a path, or ``@name`` in the abstract namespace). Without that variable every
call does nothing, so the daemon runs the same under systemd, an init script or
a terminal.

>>> notifier = Notifier.from_environment(os.environ)   # doctest: +SKIP
>>> notifier.ready("serving")                           # doctest: +SKIP
"""

import logging
import os
import socket
import time

log = logging.getLogger("keplerd.notify")


class Notifier:
    """Sends sd_notify messages to one socket address (or nowhere when it is None)."""

    def __init__(self, address=None):
        self.address = address
        self._warned = False

    @classmethod
    def from_environment(cls, environ):
        """Return a Notifier for ``$NOTIFY_SOCKET``, removing it from *environ*.

        Removing it keeps it from children (as ``sd_notify(unset_environment=1)``):
        only the main process may speak for the service.
        """
        return cls(socket_address(environ.pop("NOTIFY_SOCKET", "")))

    def send(self, *lines):
        """Send the ``KEY=value`` *lines* as one message; errors are logged once, never raised."""
        if self.address is None:
            return
        message = "\n".join(lines).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message, self.address)
        except OSError as error:
            # systemd going away must not take the daemon with it: say so once and carry on.
            if not self._warned:
                log.warning("cannot notify systemd at %r: %s", self.address, error)
                self._warned = True

    def ready(self, status):
        self.send("READY=1", f"STATUS={status}")

    def reloading(self):
        monotonic_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec}")

    def stopping(self):
        self.send("STOPPING=1", "STATUS=stopping services")

    def watchdog(self):
        self.send("WATCHDOG=1")


def socket_address(value):
    """Return the address of ``$NOTIFY_SOCKET`` *value*: a path, abstract bytes, or None."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None  # unset, or a kind of address (vsock) the daemon does not speak


def watchdog_interval(environ, pid=None):
    """Return the seconds between two ``WATCHDOG=1`` (half of ``$WATCHDOG_USEC``), or None.

    Consumes ``WATCHDOG_USEC`` and ``WATCHDOG_PID``; a ``WATCHDOG_PID`` naming
    another process means the watchdog is not ours.
    """
    usec, owner = environ.pop("WATCHDOG_USEC", ""), environ.pop("WATCHDOG_PID", "")
    if owner and owner != str(pid or os.getpid()):
        return None
    if not usec.isdigit() or int(usec) == 0:
        return None
    return int(usec) / 2 / 1_000_000
