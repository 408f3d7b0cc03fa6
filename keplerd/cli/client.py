"""The CLI's side of the control socket: connect, say hello, send requests, read answers.

Plain blocking sockets (no gevent): ``keplerctl`` must start fast.
"""

import errno
import grp
import itertools
import os
import pwd
import socket

from keplerd import PROTOCOL_VERSION, paths
from keplerd.control.protocol import BadFrame, ProtocolError, encode, read_frame


CONNECT_TIMEOUT = 10.0  # seconds to connect and get the hello answer


class DaemonUnreachable(Exception):
    """No daemon listens on the socket (exit code 2)."""


class CommandError(Exception):
    """The command failed; the message is the one line shown to the user (exit code 1)."""


class ConnectionLost(CommandError):
    """The daemon hung up without an answer (it stopped, or it re-executed itself)."""


def permission_denied(socket_path):
    """Say who was refused and which group lets one in, in the daemon's own words."""
    try:
        user = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        user = str(os.getuid())
    group = _socket_group(socket_path)
    if group is None:
        return f"permission denied: user {user} may not use {socket_path} (only root may)"
    return f"permission denied: user {user} is not in group {group} (cannot connect to {socket_path})"


def _socket_group(socket_path):
    """Return the group owning the socket (or, when it cannot be seen, its dir); None for root."""
    for path in (socket_path, os.path.dirname(socket_path)):
        try:
            gid = os.stat(path).st_gid
        except OSError:
            continue
        if gid == 0:
            return None
        try:
            return grp.getgrgid(gid).gr_name
        except KeyError:
            return str(gid)
    return "kepler"


class Client:
    """A connection to the daemon; requests are multiplexed by id."""

    def __init__(self, socket_path=None):
        self.socket_path = socket_path or paths.socket_path(paths.state_dir())
        self._sock = None
        self._ids = itertools.count(1)
        self._responses = {}
        self._listeners = {}

    def connect(self):
        """Connect and say hello, each within ``CONNECT_TIMEOUT``; later answers may take as long as they need."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(CONNECT_TIMEOUT)
        try:
            sock.connect(self.socket_path)
        except TimeoutError:
            sock.close()
            raise CommandError(self._no_answer()) from None
        except FileNotFoundError:
            sock.close()
            raise DaemonUnreachable(f"keplerd is not running (no socket at {self.socket_path})") from None
        except ConnectionRefusedError:
            sock.close()
            raise DaemonUnreachable(f"keplerd is not running (nothing listens on {self.socket_path})") from None
        except PermissionError:
            sock.close()
            raise CommandError(permission_denied(self.socket_path)) from None
        except OSError as error:
            sock.close()
            if error.errno == errno.ENOTSOCK:
                raise DaemonUnreachable(f"keplerd is not running ({self.socket_path} is not a socket)") from None
            raise
        self._sock = sock
        try:
            self.call({"type": "hello", "version": PROTOCOL_VERSION})
        except TimeoutError:
            self.close()
            raise CommandError(self._no_answer()) from None
        sock.settimeout(None)
        return self

    def _no_answer(self):
        return (f"keplerd did not answer within {CONNECT_TIMEOUT:g}s on {self.socket_path} "
                f"(overloaded, or out of sessions: see the daemon log)")

    @property
    def connected(self):
        return self._sock is not None

    def close(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self):
        return self.connect()

    def __exit__(self, *exc):
        self.close()

    def call(self, request, on_event=None):
        """Send *request*, pass its events to *on_event*, return its response fields.

        Raises ``CommandError`` with the daemon's message when it answers with an error.
        """
        return self.wait(self.send(request, on_event))

    def send(self, request, on_event=None):
        """Send *request* and return its id without waiting; its events go to *on_event*."""
        request_id = next(self._ids)
        if on_event is not None:
            self._listeners[request_id] = on_event
        try:
            self._sock.sendall(encode({"id": request_id, "request": request}))
        except (BrokenPipeError, ConnectionResetError):
            words = self._parting_words()
            if words is None:
                raise ConnectionLost("keplerd closed the connection") from None
            raise CommandError(words) from None
        return request_id

    def _parting_words(self):
        """Return why the daemon hung up on us: its last error frame, if it left one."""
        try:
            while (message := read_frame(self._sock)) is not None:
                response = message.get("response") or {}
                if not response.get("ok", True):
                    return response.get("error")
        except (OSError, ProtocolError, BadFrame):
            pass  # nothing more to read: it left no words
        return None

    def wait(self, request_id):
        """Read frames until the response to *request_id* arrives; return it (or raise).

        Events of every request in flight reach their listeners meanwhile.
        """
        while request_id not in self._responses:
            message = self._read()
            if "event" in message:
                listener = self._listeners.get(message.get("id"))
                if listener is not None:
                    listener(message["event"])
                continue
            response = message.get("response") or {}
            if message.get("id") is None and not response.get("ok", True):
                raise CommandError(response.get("error", "the daemon refused the request"))
            self._responses[message.get("id")] = response
        response = self._responses.pop(request_id)
        self._listeners.pop(request_id, None)
        if not response.get("ok"):
            raise CommandError(response.get("error", "the request failed"))
        return response

    def fileno(self):
        return self._sock.fileno()

    def read_one(self):
        """Read one frame: pass an event to its listener, keep a response; return the id answered (or None)."""
        message = self._read()
        if "event" in message:
            listener = self._listeners.get(message.get("id"))
            if listener is not None:
                listener(message["event"])
            return None
        self._responses[message.get("id")] = message.get("response") or {}
        return message.get("id")

    def result(self, request_id):
        """Return the response to *request_id* that ``read_one`` kept, raising ``CommandError`` on failure."""
        response = self._responses.pop(request_id)
        self._listeners.pop(request_id, None)
        if not response.get("ok"):
            raise CommandError(response.get("error", "the request failed"))
        return response

    def answered(self, request_id):
        """Tell whether the response to *request_id* has come (``result`` returns it)."""
        return request_id in self._responses

    def forget(self, request_id):
        """Drop a kept response nobody waits for (answers to fire-and-forget requests)."""
        self._responses.pop(request_id, None)

    def _read(self):
        try:
            message = read_frame(self._sock)
        except (ProtocolError, BadFrame) as error:
            raise CommandError(f"bad answer from keplerd: {error}") from None
        except ConnectionResetError:
            message = None
        if message is None:
            raise ConnectionLost("keplerd closed the connection")
        return message


def is_running(socket_path=None):
    """Tell whether a daemon answers on the socket."""
    try:
        with Client(socket_path):
            return True
    except DaemonUnreachable:
        return False
    except (CommandError, OSError):
        return True  # something answers, even if it does not let us in
