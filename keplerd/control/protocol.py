"""The wire protocol of SPEC §15: length-prefixed JSON frames over a Unix socket.

Each frame is a 4-byte big-endian length and a UTF-8 JSON object. Clients send
``{"id": n, "request": {"type": ..., ...}}``; the daemon answers
``{"id": n, "response": {"ok": true, ...}}`` (or ``{"ok": false, "error": ...}``)
after any number of ``{"id": n, "event": {...}}``. Used by both sides, so it
works on any socket object with ``recv`` and ``sendall`` (gevent's or not).
"""

import json
import struct

MAX_FRAME = 16 * 1024 * 1024
RECV_CHUNK = 64 * 1024
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


def read_frame(sock, max_size=MAX_FRAME):
    """Return the next message from *sock*, or ``None`` at a clean end of stream.

    Raises ``ProtocolError`` for a frame over *max_size* bytes or truncated,
    ``BadFrame`` for one that is not a JSON object (or nests too deeply, or holds
    NaN or Infinity, which are not JSON).
    """
    header = _recv_exactly(sock, _HEADER.size, eof_ok=True)
    if header is None:
        return None
    (length,) = _HEADER.unpack(header)
    if length > max_size:
        raise ProtocolError(f"frame of {length} bytes exceeds the {max_size} byte limit")
    return decode(_recv_exactly(sock, length))


def decode(body):
    """Return the JSON object of one frame's *body*; raise ``BadFrame``."""
    try:
        message = json.loads(body, parse_constant=_reject_constant)
    except RecursionError:
        raise BadFrame("invalid JSON frame: nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as error:
        raise BadFrame(f"invalid JSON frame: {error}") from None
    if not isinstance(message, dict):
        raise BadFrame("a frame must hold a JSON object")
    return message


def _reject_constant(name):
    raise ValueError(f"{name} is not a JSON number")


def _recv_exactly(sock, size, eof_ok=False):
    """Return *size* bytes, read in chunks as they arrive.

    Never allocates more than what was received (plus one chunk): a length prefix
    announcing 16 MiB costs nothing until the bytes come.
    """
    buffer = bytearray()
    while len(buffer) < size:
        chunk = sock.recv(min(size - len(buffer), RECV_CHUNK))
        if not chunk:
            if eof_ok and not buffer:
                return None
            raise ProtocolError("connection closed in the middle of a frame")
        buffer += chunk
    return bytes(buffer)
