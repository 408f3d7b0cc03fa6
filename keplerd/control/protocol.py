"""The wire protocol of SPEC §15: length-prefixed JSON frames over a Unix socket.

Each frame is a 4-byte big-endian length and a UTF-8 JSON object. Clients send
``{"id": n, "request": {"type": ..., ...}}``; the daemon answers
``{"id": n, "response": {"ok": true, ...}}`` (or ``{"ok": false, "error": ...}``)
after any number of ``{"id": n, "event": {...}}``. Used by both sides, so it
works on any socket object with ``recv_into`` and ``sendall`` (gevent's or not).
"""

import json
import struct

MAX_FRAME = 16 * 1024 * 1024
_HEADER = struct.Struct(">I")


class ProtocolError(Exception):
    """The framing is broken: the connection cannot continue."""


class BadFrame(Exception):
    """One frame was well framed but is not a JSON object: answer it, keep going."""


def encode(message):
    """Return *message* as one frame of bytes."""
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
    if len(body) > MAX_FRAME:
        raise ProtocolError(f"frame of {len(body)} bytes exceeds the {MAX_FRAME} byte limit")
    return _HEADER.pack(len(body)) + body


def read_frame(sock):
    """Return the next message from *sock*, or ``None`` at a clean end of stream.

    Raises ``ProtocolError`` for an oversized or truncated frame, ``BadFrame`` for
    one that is not a JSON object.
    """
    header = _recv_exactly(sock, _HEADER.size, eof_ok=True)
    if header is None:
        return None
    (length,) = _HEADER.unpack(header)
    if length > MAX_FRAME:
        raise ProtocolError(f"frame of {length} bytes exceeds the {MAX_FRAME} byte limit")
    body = _recv_exactly(sock, length)
    try:
        message = json.loads(body)
    except (UnicodeDecodeError, ValueError) as error:
        raise BadFrame(f"invalid JSON frame: {error}") from None
    if not isinstance(message, dict):
        raise BadFrame("a frame must hold a JSON object")
    return message


def _recv_exactly(sock, size, eof_ok=False):
    buffer = bytearray(size)
    view = memoryview(buffer)
    received = 0
    while received < size:
        count = sock.recv_into(view[received:])
        if count == 0:
            if eof_ok and received == 0:
                return None
            raise ProtocolError("connection closed in the middle of a frame")
        received += count
    return bytes(buffer)
