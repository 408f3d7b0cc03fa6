"""One client's session on the control socket: hello, then multiplexed requests, all bounded.

What a client can make the daemon hold or wait for is capped here: the time to say
hello and the silence allowed after (``SessionLimits``), the size of a request
frame, the requests in flight, the bytes of answers it has not read.
"""

import logging
import socket
import time

import gevent
from gevent.event import Event
from gevent.pool import Group, Pool
from gevent.queue import Queue
from gevent.socket import wait_read

from keplerd import PROTOCOL_VERSION, __version__
from keplerd.control.protocol import BadFrame, ProtocolError, encode, encode_parts, read_frame
from keplerd.model.record import Record
from keplerd.osproc import heap

log = logging.getLogger("keplerd.control")

MAX_REQUEST_FRAME = 4 << 20    # a request (config path, env, names) is far smaller
MAX_IN_FLIGHT = 8              # requests of one session answered at once; more wait to be read
SEND_QUEUE_BYTES = 16 << 20    # answers queued for one client; beyond, it must read or be dropped
FRAME_TIMEOUT = 30.0           # a frame, once begun, must arrive whole within this
SEND_TIMEOUT = 30.0
LINGER_SECONDS = 1.0


class SessionLimits(Record):
    """How long a client may stay silent, and how many sessions one user may hold (keplerd.conf)."""

    hello_timeout: float = 5.0
    idle_timeout: float = 600.0
    per_user: int = 64


def send_quietly(sock, message):
    try:
        sock.sendall(encode(message))
    except OSError:
        pass  # the refused client may have left already; nothing to tell it


def linger(sock):
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
            self._drop_unsent()

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
            self.linger()
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
                self.linger()
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
        # Encoded before it waits for room: an unread answer holds one buffer, not the many
        # small objects of its lines (which would scatter over the allocator's arenas and pin them).
        self._queue(self._encode({"id": request_id, "response": self._dispatch(self, request_id, request)}))
        heap.TRIMMER.soon()  # what the answer was built of is free now (osproc/heap.py)

    def emit(self, request_id, event):
        self.send({"id": request_id, "event": event})

    def send(self, message):
        """Queue *message* for the client; drop the client if it does not read."""
        if not self.closed:
            self._queue(self._encode(message))

    def _encode(self, message):
        """Return *message* as a frame: a list of pieces of bytes (see ``encode_parts``)."""
        try:
            return encode_parts(message)
        except (TypeError, ValueError, ProtocolError, RecursionError) as error:
            log.exception("cannot encode an answer to request %s", message.get("id"))
            return encode_parts({"id": message.get("id"),
                                 "response": {"ok": False, "error": f"internal error: {error}"}})

    def _queue(self, frame):
        if self.closed:
            return
        size = sum(map(len, frame))
        if not self._wait_for_room(size):
            log.warning("dropping client pid %s: it stopped reading", self.peer.pid)
            self.close()
            return
        self._queued_bytes += size
        self._outbox.put((frame, size))

    def _wait_for_room(self, size):
        """Wait until *size* more bytes fit in the send queue (one frame always fits an empty one)."""
        deadline = time.monotonic() + SEND_TIMEOUT
        while self._queued_bytes and self._queued_bytes + size > SEND_QUEUE_BYTES:
            self._room.clear()
            if self.closed or not self._room.wait(max(0.0, deadline - time.monotonic())):
                return False
        return not self.closed

    def _send_now(self, message):
        send_quietly(self.sock, message)

    def linger(self):
        linger(self.sock)

    def _write_loop(self):
        while True:
            frame, size = self._outbox.get()
            try:
                for part in frame:  # this greenlet alone writes: the parts arrive as one frame
                    self.sock.sendall(part)
            except OSError:
                self.close()
                return
            finally:
                self._queued_bytes -= size
                self._room.set()

    def _drop_unsent(self):
        """Free the answers the client will never read now (something may still refer to the session)."""
        while not self._outbox.empty():
            self._outbox.get_nowait()
        self._queued_bytes = 0

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
