"""http and tcp health probes, made by the daemon itself on gevent sockets (SPEC §18).

No fork and no thread per probe: the connection is a cooperative socket, and the
host is resolved from ``/etc/hosts`` read here (gevent's default resolver is a
thread pool, and a thread in the daemon would make every fork unsafe).

100 services probed every second are 100 connections a second, so the path is
lean (``bench/probes.py`` measures it against exec probes): a plain non-blocking
socket waited on with gevent's compiled ``wait_read``/``wait_write``, rather than
gevent's socket class, whose constructor, connect, send, recv and close each add
a layer of Python (a fifth of a probe's cost in the daemon); one timer for the
whole probe; a URL and an IP literal parsed once, not once per probe.
A probe still checks what SPEC §18 says: a fresh connection each time, a GET, a
2xx/3xx status line within ``timeout``.
"""

import _socket  # the C socket, made cooperative below (see above)
import errno
import functools
import os

import gevent
from gevent.socket import wait_read, wait_write

from keplerd.model import endpoints

STATUS_LINE_LIMIT = 4096
USER_AGENT = "keplerd-healthcheck"


class HostsFile:
    """``/etc/hosts``, read again only when it changed (one ``stat`` per probe)."""

    def __init__(self, path=endpoints.HOSTS_FILE):
        self.path = path
        self._seen = None
        self._table = {}

    def table(self):
        try:
            info = os.stat(self.path)
        except OSError:
            return {}
        seen = (info.st_mtime_ns, info.st_size, info.st_ino)
        if seen != self._seen:
            try:
                with open(self.path, encoding="utf-8", errors="replace") as file:
                    self._table = endpoints.hosts_table(file.read())
            except OSError:
                self._table = {}
            self._seen = seen
        return self._table


HOSTS = HostsFile()


class ProbeFailed(Exception):
    """The probe did not pass; the message says what happened."""


@functools.lru_cache(maxsize=1024)
def _http_target(url):
    """Return the endpoint and request bytes of *url* (parsed once per URL, not once per probe)."""
    endpoint = endpoints.parse_http(url)
    host_header = endpoint.host if ":" not in endpoint.host else f"[{endpoint.host}]"
    request = (f"GET {endpoint.path} HTTP/1.0\r\nHost: {host_header}:{endpoint.port}\r\n"
               f"User-Agent: {USER_AGENT}\r\nAccept: */*\r\nConnection: close\r\n\r\n").encode()
    return endpoint, request


_tcp_target = functools.lru_cache(maxsize=1024)(endpoints.parse_tcp)
_ip_literal = functools.lru_cache(maxsize=1024)(endpoints.ip_literal)


def check_tcp(address, timeout):
    """Return a message when a connection to *address* opens within *timeout*; raise ``ProbeFailed``."""
    endpoint = _tcp_target(address)
    with _Deadline(timeout, f"no connection to {address} within {timeout:g}s"), _Connection(endpoint):
        return f"connected to {address}"


def check_http(url, timeout):
    """GET *url*; return the status line of a 2xx/3xx answer within *timeout*, else raise ``ProbeFailed``."""
    endpoint, request = _http_target(url)
    with _Deadline(timeout, f"{url}: no answer within {timeout:g}s"), _Connection(endpoint) as connection:
        try:
            connection.send(request)
            line = _status_line(connection)
        except OSError as error:
            raise ProbeFailed(f"{url}: {error.strerror or error}") from None
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ProbeFailed(f"{url}: not an HTTP answer: {line[:200]!r}")
    if not 200 <= int(parts[1]) < 400:
        raise ProbeFailed(f"{url}: {line}")
    return line


class _Deadline:
    """One timer for the whole probe (the socket itself has none: one timer per operation costs more)."""

    def __init__(self, seconds, message):
        self.seconds = seconds
        self.message = message
        self.timer = None

    def __enter__(self):
        self.timer = gevent.Timeout.start_new(self.seconds)
        return self

    def __exit__(self, kind, error, traceback):
        self.timer.close()
        if error is self.timer:
            raise ProbeFailed(self.message) from None
        return False


def _status_line(connection):
    """Return the first line of the answer (up to STATUS_LINE_LIMIT bytes), however it is split into packets."""
    data = b""
    while b"\n" not in data and len(data) < STATUS_LINE_LIMIT:
        chunk = connection.recv(STATUS_LINE_LIMIT)
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0].rstrip(b"\r").decode("latin-1")


class _Connection:
    """A TCP connection to *endpoint*, opened cooperatively (``ProbeFailed`` otherwise), closed on exit."""

    def __init__(self, endpoint):
        self.endpoint = endpoint
        self.sock = None

    def __enter__(self):
        host, port = self.endpoint.host, self.endpoint.port
        address = _ip_literal(host) or endpoints.resolve(host, HOSTS.table())
        if address is None:
            raise ProbeFailed(endpoints.unresolvable(host, {}))
        family = _socket.AF_INET6 if ":" in address else _socket.AF_INET
        self.sock = _socket.socket(family, _socket.SOCK_STREAM | _socket.SOCK_NONBLOCK | _socket.SOCK_CLOEXEC)
        try:
            error = self._connect((address, port))
        except BaseException:
            self.sock.close()  # also when the probe is cut short: no fd outlives it
            raise
        if error:
            self.sock.close()
            raise ProbeFailed(f"cannot connect to {host}:{port}: {os.strerror(error)}")
        return self

    def __exit__(self, *exc):
        self.sock.close()

    def _connect(self, address):
        """Return 0 once connected, else the errno of the failure."""
        error = self.sock.connect_ex(address)
        if error == errno.EINPROGRESS:
            wait_write(self.sock.fileno())
            error = self.sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_ERROR)
        return error

    def send(self, data):
        """Send all of *data*, waiting while the socket's buffer is full."""
        view = memoryview(data)
        while view:
            try:
                view = view[self.sock.send(view):]
            except BlockingIOError:
                wait_write(self.sock.fileno())

    def recv(self, size):
        """Wait for data and return up to *size* bytes of it (``b""`` at the end of the answer)."""
        while True:
            wait_read(self.sock.fileno())
            try:
                return self.sock.recv(size)
            except BlockingIOError:
                pass  # woken without data (another event on a reused fd): wait again
