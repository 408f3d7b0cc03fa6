"""Where the metrics are served: ``host:port``, ``[v6]:port`` or a Unix socket path.

Pure (no sockets opened): shared by keplerd.conf's validation and the daemon.
"""

import ipaddress
import os

LOOPBACK_NAMES = ("localhost",)


class BadAddress(ValueError):
    """The address cannot be used; the message says why."""


def parse(text, allow_remote=False):
    """Return ``("unix", path)`` or ``("tcp", (host, port))`` for *text*; raise BadAddress."""
    text = (text or "").strip()
    if text.startswith("/"):
        return "unix", os.path.normpath(text)
    host, separator, port = text.rpartition(":")
    if not separator or not port.isdigit() or not 0 < int(port) < 65536:
        raise BadAddress(f"invalid metrics address {text!r}: expected HOST:PORT or an absolute socket path")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        raise BadAddress(f"invalid metrics address {text!r}: the host is missing (use 127.0.0.1:{port})")
    if not allow_remote and not _loopback(host):
        raise BadAddress(f"metrics address {text!r} is not loopback: set metrics_allow_remote: true "
                         f"to serve metrics to other hosts")
    return "tcp", (host, int(port))


def _loopback(host):
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other than localhost could resolve anywhere
