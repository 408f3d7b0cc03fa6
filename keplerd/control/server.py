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
import time
from collections import Counter
from dataclasses import dataclass

import gevent
from gevent.event import Event
from gevent.pool import Group, Pool
from gevent.queue import Queue
from gevent.server import StreamServer
from gevent.socket import wait_read

from keplerd import PROTOCOL_VERSION, __version__
from keplerd.control.protocol import BadFrame, ProtocolError, encode, read_frame

log = logging.getLogger("keplerd.control")

MAX_SESSIONS = 1024            # root's sessions, and (separately) all other users' together
MAX_REQUEST_FRAME = 4 << 20    # a request (config path, env, names) is far smaller
MAX_IN_FLIGHT = 32             # requests of one session answered at once; more wait to be read
SEND_QUEUE_BYTES = 16 << 20    # answers queued for one client; beyond, it must read or be dropped
FRAME_TIMEOUT = 30.0           # a frame, once begun, must arrive whole within this
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


@dataclass(frozen=True)
class SessionLimits:
    """How long a client may stay silent, and how many sessions one user may hold (keplerd.conf)."""

    hello_timeout: float = 5.0
    idle_timeout: float = 600.0
    per_user: int = 64


class ControlServer:
    """Serves CLI sessions on the bound socket; *dispatch* answers each request.

    Root has its own budget of sessions, so that other users, whatever they do,
    never lock it out; each other user may hold ``limits.per_user`` of theirs.
    """

    def __init__(self, listener, group_name, dispatch, limits=None):
        self._group_name = group_name
        self._group_gid = group_id(group_name)  # looked up once (and on SIGHUP), not per connection
        self._dispatch = dispatch
        self.limits = limits or SessionLimits()
        self._sessions = Counter()  # by uid
        self._before_hello = {}     # sessions that have not said hello yet, oldest first: uid
        self._server = StreamServer(listener, self._handle, spawn=Pool(2 * MAX_SESSIONS + 64))

    def start(self):
        self._server.start()

    def reread_group(self):
        """Look the socket group up again (a reload: its gid or existence may have changed)."""
        self._group_gid = group_id(self._group_name)

    def stop(self, timeout=1.0):
        self._server.stop(timeout=timeout)

    def _handle(self, sock, _address):
        peer = Peer.of(sock)
        if not peer.allowed(self._group_gid):
            message = f"permission denied: user {peer.user} is not in group {self._group_name}"
            log.warning("refused connection from pid %s: %s", peer.pid, message)
            _refuse(sock, message)
            return
        refusal = self._over_limit(peer)
        if refusal and not self._evict_a_silent_session(peer.uid):
            log.warning("refused connection from pid %s: %s", peer.pid, refusal)
            _refuse(sock, refusal)
            return
        session = Session(sock, peer, self._dispatch, self.limits)
        self._sessions[peer.uid] += 1
        self._before_hello[session] = peer.uid
        try:
            session.serve(on_hello=lambda: self._before_hello.pop(session, None))
        finally:
            self._before_hello.pop(session, None)
            if session.counted:
                self._uncount(peer.uid)

    def _uncount(self, uid):
        self._sessions[uid] -= 1
        if not self._sessions[uid]:
            del self._sessions[uid]

    def _evict_a_silent_session(self, uid):
        """Make room for a new session of *uid* by closing its oldest one still without a hello."""
        oldest = next((session for session, owner in self._before_hello.items() if owner == uid), None)
        if oldest is None:
            return False
        del self._before_hello[oldest]
        log.info("closing a session of pid %s that said no hello: a new one needs its place", oldest.peer.pid)
        oldest.counted = False  # this connection takes its place now, not when its greenlet ends
        self._uncount(uid)
        oldest.close()
        return True

    def _over_limit(self, peer):
        """Return why *peer* may not open one more session, or None."""
        if peer.uid == 0:
            held = self._sessions[0]
            return f"too many sessions: root holds {held}" if held >= MAX_SESSIONS else None
        if self._sessions[peer.uid] >= self.limits.per_user:
            return (f"too many sessions: user {peer.user} holds {self._sessions[peer.uid]} "
                    f"(client_sessions_per_user: {self.limits.per_user})")
        others = sum(count for uid, count in self._sessions.items() if uid != 0)
        return f"too many sessions: {others} are open" if others >= MAX_SESSIONS else None


def _refuse(sock, message):
    _send_quietly(sock, {"id": None, "response": {"ok": False, "error": message}})
    _linger(sock)
    sock.close()


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
    """One client connection: hello, then multiplexed requests.

    What a client can make the daemon hold is bounded: a frame is read as its bytes
    arrive (``MAX_REQUEST_FRAME`` at most), ``MAX_IN_FLIGHT`` requests run at once,
    ``SEND_QUEUE_BYTES`` of answers wait for it; a client that says no hello, or
    nothing at all with no request in flight, is dropped after the limits' timeouts.
    """

    def __init__(self, sock, peer, dispatch, limits=None):
        self.sock = sock
        self.peer = peer
        self._dispatch = dispatch
        self._limits = limits or SessionLimits()
        self._outbox = Queue()
        self._queued_bytes = 0
        self._room = Event()
        self._requests = Pool(MAX_IN_FLIGHT)
        self._writer = Group()  # the session's own greenlet, apart from the requests it counts
        self.closed = False
        self.counted = True  # in its server's count of sessions (see ControlServer)

    def serve(self, on_hello=None):
        writer = self._writer.spawn(self._write_loop)
        writer.link_exception(self._writer_failed)
        try:
            if self._hello():
                if on_hello is not None:
                    on_hello()
                self._read_loop()
        finally:
            self._requests.kill()
            self._writer.kill()
            self.close()
            self.sock.close()

    def _writer_failed(self, writer):
        """A bug in the writer: the session cannot answer any more, so it ends (and says why)."""
        log.error("session %s: writer failed", self.peer, exc_info=writer.exc_info)
        self.close()
        self.sock.close()

    def _hello(self):
        try:
            message = self._read(self._limits.hello_timeout, "no hello")
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
                "ok": False, "error": f"protocol version mismatch: client speaks {request.get('version')!r}, "
                                      f"daemon speaks {PROTOCOL_VERSION}"}})
            return False
        self.send({"id": message.get("id"), "response": {
            "ok": True, "version": PROTOCOL_VERSION, "daemon_version": __version__}})
        return True

    def _read_loop(self):
        while not self.closed:
            try:
                message = self._read(self._limits.idle_timeout, "idle")
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
            self._requests.spawn(self._answer, message)  # waits while MAX_IN_FLIGHT run

    def _read(self, silence, what):
        """Return the next frame; raise ProtocolError after *silence* seconds without one.

        While a request is in flight (a follower waiting for lines), silence is fine.
        """
        while True:
            try:
                wait_read(self.sock.fileno(), timeout=silence, timeout_exc=_Silent)
                break
            except _Silent:
                if what == "idle" and len(self._requests):
                    continue
                log.info("dropping client pid %s: %s for %gs", self.peer.pid, what, silence)
                raise ProtocolError(f"{what} for {silence:g}s: closing the connection") from None
        with gevent.Timeout(FRAME_TIMEOUT, ProtocolError(f"a frame took over {FRAME_TIMEOUT:g}s to arrive")):
            return read_frame(self.sock, MAX_REQUEST_FRAME)

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
        except (TypeError, ValueError, ProtocolError, RecursionError) as error:
            log.exception("cannot encode an answer to request %s", message.get("id"))
            frame = encode({"id": message.get("id"), "response": {"ok": False, "error": f"internal error: {error}"}})
        if not self._wait_for_room(len(frame)):
            log.warning("dropping client pid %s: it stopped reading", self.peer.pid)
            self.close()
            return
        self._queued_bytes += len(frame)
        self._outbox.put(frame)

    def _wait_for_room(self, size):
        """Wait until *size* more bytes fit in the send queue (one frame always fits an empty one)."""
        deadline = time.monotonic() + SEND_TIMEOUT
        while self._queued_bytes and self._queued_bytes + size > SEND_QUEUE_BYTES:
            self._room.clear()
            if self.closed or not self._room.wait(max(0.0, deadline - time.monotonic())):
                return False
        return not self.closed

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
            finally:
                self._queued_bytes -= len(frame)
                self._room.set()

    def close(self):
        """End the session: the read loop sees the end of stream."""
        if self.closed:
            return
        self.closed = True
        self._room.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already disconnected


class _Silent(Exception):
    """The client sent nothing for a while."""
