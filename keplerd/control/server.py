"""The control socket: bind it safely, check who connects, serve their sessions.

Every connection is one ``Session``: a hello exchange, then requests that each run
in their own greenlet, answered through a bounded send queue so that a client that
stops reading is dropped instead of blocking anything else.
"""

import errno
import functools
import grp
import logging
import os
import pwd
import socket
import struct

import gevent
from gevent.pool import Group, Pool
from gevent.queue import Full, Queue
from gevent.server import StreamServer

from keplerd import PROTOCOL_VERSION, __version__
from keplerd.control.protocol import BadFrame, ProtocolError, encode, read_frame

log = logging.getLogger("keplerd.control")

MAX_SESSIONS = 1024
SEND_QUEUE_FRAMES = 256
SEND_TIMEOUT = 30.0
LINGER_SECONDS = 1.0
_PEERCRED = struct.Struct("3i")
# The rlimits a config may set (SPEC §12), by ``limits.<name>``, as /proc/<pid>/limits names them.
_LIMIT_ROWS = {"memory": "Max address space", "cpu_time": "Max cpu time", "max_fds": "Max open files"}


class AlreadyRunning(Exception):
    """Another daemon answers on the socket."""


def bind_socket(path, group_name):
    """Return a listening Unix socket at *path*, ``0660 root:<group>`` (or ``0600``).

    A live daemon on *path* raises ``AlreadyRunning``; a stale socket file is
    replaced. The socket is bound under a temporary name, given its mode and owner,
    then renamed into place, so no client ever sees it with the wrong permissions.
    """
    if os.path.exists(path):
        if socket_answers(path):
            raise AlreadyRunning(f"another keplerd is already listening on {path}")
        log.warning("removing stale socket %s", path)
        os.unlink(path)
    gid = group_id(group_name)
    temporary = f"{path}.{os.getpid()}.tmp"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        if os.path.exists(temporary):
            os.unlink(temporary)
        listener.bind(temporary)
        if gid is None:
            log.warning("group %r does not exist: socket %s is root-only (0600)", group_name, path)
            os.chmod(temporary, 0o600)
        else:
            os.chown(temporary, 0, gid)
            os.chmod(temporary, 0o660)
        listener.listen(128)
        os.rename(temporary, path)
    except BaseException:
        listener.close()
        raise
    return listener


def socket_answers(path):
    """Tell whether something accepts connections on the Unix socket *path*."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
        return True
    except OSError as error:
        if error.errno in (errno.ECONNREFUSED, errno.ENOENT, errno.ENOTSOCK):
            return False
        raise
    finally:
        probe.close()


def group_id(name):
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


class Peer:
    """Who is on the other end of a connection, from ``SO_PEERCRED`` and ``/proc``."""

    def __init__(self, pid, uid, gid):
        self.pid, self.uid, self.gid = pid, uid, gid

    @classmethod
    def of(cls, sock):
        """Return the peer of a connected Unix socket, as it was when it connected."""
        return cls(*_PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)))

    @functools.cached_property
    def user(self):
        """The peer's user name (looked up once per connection: every request's Caller asks)."""
        try:
            return pwd.getpwuid(self.uid).pw_name
        except KeyError:
            return str(self.uid)

    def groups(self):
        """Return the primary and supplementary gids of the peer process.

        The supplementary groups come from ``/proc/<pid>/status`` and count only
        while that pid still runs with the effective uid that connected: a pid
        reused by another user's process must not lend its groups to this one.
        """
        gids = {self.gid}
        status = _proc_ids(self.pid)
        if status.get("Uid", [None, None])[1] == self.uid:
            gids.update(status.get("Groups", ()))
        return gids

    def hard_limits(self):
        """Return the peer's hard rlimits by ``limits`` name (None: unlimited).

        Read from ``/proc/<pid>/limits`` (``prlimit`` would need CAP_SYS_RESOURCE,
        which a container may withhold from root), and only while the pid still
        runs with the uid that connected: otherwise (the client left, its pid went
        to someone else) every limit reads 0, so that nothing is granted on a
        stranger's limits.
        """
        unknown = dict.fromkeys(_LIMIT_ROWS, 0)
        try:
            with open(f"/proc/{self.pid}/limits") as file:
                rows = file.read().splitlines()
        except OSError:
            return unknown
        if _proc_ids(self.pid).get("Uid", [None, None])[1] != self.uid:
            return unknown
        limits = {}
        for name, title in _LIMIT_ROWS.items():
            row = next((line[len(title):].split() for line in rows if line.startswith(title)), None)
            hard = row[1] if row and len(row) > 1 else "0"
            limits[name] = None if hard == "unlimited" else int(hard)
        return limits

    def allowed(self, group_gid):
        return self.uid == 0 or (group_gid is not None and group_gid in self.groups())


def _proc_ids(pid):
    """Return the ``Uid``, ``Gid`` and ``Groups`` lines of ``/proc/<pid>/status`` as lists of ints."""
    ids = {}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in ("Uid", "Gid", "Groups"):
                    ids[key] = [int(number) for number in value.split()]
    except OSError:
        pass  # the client is already gone: its primary group is all we know
    return ids


class ControlServer:
    """Serves CLI sessions on the bound socket; *dispatch* answers each request."""

    def __init__(self, listener, group_name, dispatch):
        self._group_name = group_name
        self._group_gid = group_id(group_name)  # looked up once (and on SIGHUP), not per connection
        self._dispatch = dispatch
        self._server = StreamServer(listener, self._handle, spawn=Pool(MAX_SESSIONS))

    def start(self):
        self._server.start()

    def reread_group(self):
        """Look the socket group up again (a reload: its gid or existence may have changed)."""
        self._group_gid = group_id(self._group_name)

    def stop_accepting(self):
        """Leave new connections in the socket's backlog (the listener stays open)."""
        self._server.stop_accepting()

    def start_accepting(self):
        self._server.start_accepting()

    def stop(self, timeout=1.0):
        self._server.stop(timeout=timeout)

    def _handle(self, sock, _address):
        peer = Peer.of(sock)
        if not peer.allowed(self._group_gid):
            message = f"permission denied: user {peer.user} is not in group {self._group_name}"
            log.warning("refused connection from pid %s: %s", peer.pid, message)
            _send_quietly(sock, {"id": None, "response": {"ok": False, "error": message}})
            _linger(sock)
            sock.close()
            return
        Session(sock, peer, self._dispatch).serve()


def _send_quietly(sock, message):
    try:
        sock.sendall(encode(message))
    except OSError:
        pass  # the refused client may have left already; nothing to tell it


def _linger(sock):
    """Let the client read our last words before we hang up on it.

    Closing a Unix socket with unread input makes the peer's next read fail with
    ECONNRESET, losing the error frame: so stop writing, then discard what the
    client still sends, for a bounded time.
    """
    try:
        sock.shutdown(socket.SHUT_WR)
        with gevent.Timeout(LINGER_SECONDS, False):
            while sock.recv(65536):
                pass
    except OSError:
        pass  # the client left first: nothing to protect


class Session:
    """One client connection: hello, then multiplexed requests."""

    def __init__(self, sock, peer, dispatch):
        self.sock = sock
        self.peer = peer
        self._dispatch = dispatch
        self._outbox = Queue(SEND_QUEUE_FRAMES)
        self._requests = Group()
        self.closed = False

    def serve(self):
        writer = self._requests.spawn(self._write_loop)
        writer.link_exception(self._writer_failed)
        try:
            if self._hello():
                self._read_loop()
        finally:
            self._requests.kill()
            self.close()
            self.sock.close()

    def _writer_failed(self, writer):
        """A bug in the writer: the session cannot answer any more, so it ends (and says why)."""
        log.error("session %s: writer failed", self.peer, exc_info=writer.exc_info)
        self.close()
        self.sock.close()

    def _hello(self):
        try:
            message = read_frame(self.sock)
        except (ProtocolError, BadFrame, OSError) as error:
            self._send_now({"id": None, "response": {"ok": False, "error": str(error)}})
            self._linger()
            return False
        if message is None:
            return False
        request = message.get("request") if isinstance(message.get("request"), dict) else {}
        if request.get("type") != "hello":
            self._send_now({"id": message.get("id"),
                            "response": {"ok": False, "error": "expected a hello request first"}})
            return False
        if request.get("version") != PROTOCOL_VERSION:
            self._send_now({"id": message.get("id"), "response": {
                "ok": False, "error": f"protocol version mismatch: client speaks {request.get('version')}, "
                                      f"daemon speaks {PROTOCOL_VERSION}"}})
            return False
        self.send({"id": message.get("id"), "response": {
            "ok": True, "version": PROTOCOL_VERSION, "daemon_version": __version__}})
        return True

    def _read_loop(self):
        while not self.closed:
            try:
                message = read_frame(self.sock)
            except BadFrame as error:
                self.send({"id": None, "response": {"ok": False, "error": str(error)}})
                continue
            except ProtocolError as error:
                self._send_now({"id": None, "response": {"ok": False, "error": str(error)}})
                self._linger()
                return
            except OSError:
                return
            if message is None:
                return
            self._requests.spawn(self._answer, message)

    def _answer(self, message):
        request_id = message.get("id")
        request = message.get("request")
        if not isinstance(request, dict) or not isinstance(request.get("type"), str):
            self.send({"id": request_id, "response": {"ok": False, "error": "a request needs a type"}})
            return
        response = self._dispatch(self, request_id, request)
        self.send({"id": request_id, "response": response})

    def emit(self, request_id, event):
        self.send({"id": request_id, "event": event})

    def send(self, message):
        """Queue *message* for the client; drop the client if it does not read."""
        if self.closed:
            return
        try:
            frame = encode(message)
        except (TypeError, ValueError, ProtocolError) as error:
            log.exception("cannot encode an answer to request %s", message.get("id"))
            frame = encode({"id": message.get("id"), "response": {"ok": False, "error": f"internal error: {error}"}})
        try:
            self._outbox.put(frame, timeout=SEND_TIMEOUT)
        except Full:
            log.warning("dropping client pid %s: it stopped reading", self.peer.pid)
            self.close()

    def _send_now(self, message):
        _send_quietly(self.sock, message)

    def _linger(self):
        _linger(self.sock)

    def _write_loop(self):
        while True:
            frame = self._outbox.get()
            try:
                self.sock.sendall(frame)
            except OSError:
                self.close()
                return

    def close(self):
        """End the session: the read loop sees the end of stream."""
        if self.closed:
            return
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already disconnected
