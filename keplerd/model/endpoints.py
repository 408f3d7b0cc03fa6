"""Where an http or tcp health probe connects (SPEC §18), without any DNS lookup.

Pure: the caller reads ``/etc/hosts`` and passes its text. A host is an IP
literal, ``localhost``, or a name listed in the hosts file; anything else would
need a resolver, which in the daemon means a thread pool (or a blocked loop).

>>> parse_tcp("127.0.0.1:5432")
Endpoint(host='127.0.0.1', port=5432, path=None)
>>> parse_http("http://[::1]:8080/health?full=1")
Endpoint(host='::1', port=8080, path='/health?full=1')
>>> resolve("db.internal", hosts_table("10.0.0.7  db.internal db  # ours"))
'10.0.0.7'
"""

import ipaddress
from typing import NamedTuple
from urllib.parse import urlsplit

HOSTS_FILE = "/etc/hosts"
LOCALHOST = "localhost"


class EndpointError(ValueError):
    """An http URL or tcp address the daemon cannot probe; the message says why."""


class Endpoint(NamedTuple):
    host: str
    port: int
    path: str | None   # the request target of an http probe; None for tcp


def parse_http(url):
    """Return the ``Endpoint`` of an ``http://host[:port][/path]`` URL, or raise ``EndpointError``."""
    if not isinstance(url, str) or not url:
        raise EndpointError("must be an http:// URL")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise EndpointError(f"invalid URL {url!r}: {error}") from None
    if parts.scheme == "https":
        raise EndpointError("https is not supported: the daemon probes plain http (use a `test` for TLS)")
    if parts.scheme != "http" or not parts.hostname:
        raise EndpointError(f"invalid URL {url!r}: expected http://host[:port][/path]")
    if parts.username is not None or parts.password is not None:
        raise EndpointError(f"invalid URL {url!r}: credentials are not supported")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Endpoint(parts.hostname, port if port is not None else 80, target)


def parse_tcp(address):
    """Return the ``Endpoint`` of ``HOST:PORT`` (``[v6]:PORT`` for IPv6), or raise ``EndpointError``."""
    if not isinstance(address, str):
        raise EndpointError("must be HOST:PORT")
    host, colon, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise EndpointError(f"invalid address {address!r}: expected HOST:PORT with a port from 1 to 65535")
    return Endpoint(host, int(port), None)


def hosts_table(text):
    """Return ``{name: address}`` from the text of a hosts file (the first entry of a name wins)."""
    table = {}
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2 or ip_literal(fields[0]) is None:
            continue
        for name in fields[1:]:
            table.setdefault(name.lower(), fields[0])
    return table


def ip_literal(host):
    """Return *host* as a normalised IP address string, or None when it is a name."""
    try:
        return str(ipaddress.ip_address(host.split("%", 1)[0]))
    except ValueError:
        return None


def resolve(host, table):
    """Return the IP address of *host*: a literal, a hosts-file name, or localhost; None otherwise."""
    literal = ip_literal(host)
    if literal is not None:
        return literal
    name = host.lower().rstrip(".")
    if name in table:
        return table[name]
    if name == LOCALHOST:
        return "127.0.0.1"
    return None


def unresolvable(host, table):
    """Return why *host* cannot be probed without DNS, or None when it can."""
    if resolve(host, table) is not None:
        return None
    return (f"host '{host}' is not an IP address, localhost or a name in {HOSTS_FILE} "
            f"(the daemon does no DNS lookups)")
