"""The wire protocol of SPEC §15: length-prefixed JSON frames over a Unix socket.

Each frame is a 4-byte big-endian length and a UTF-8 JSON object. Clients send
``{"id": n, "request": {"type": ..., ...}}``; the daemon answers
``{"id": n, "response": {"ok": true, ...}}`` (or ``{"ok": false, "error": ...}``)
after any number of ``{"id": n, "event": {...}}``. Used by both sides, so it
works on any socket object with ``recv`` and ``sendall`` (gevent's or not).
"""

import json
import struct

from keplerd.model.encoding import encode_batched

MAX_FRAME = 16 * 1024 * 1024
RECV_CHUNK = 64 * 1024
_HEADER = struct.Struct(">I")


class ProtocolError(Exception):
    """The framing is broken: the connection cannot continue."""


class BadFrame(Exception):
    """One frame was well framed but is not a JSON object: answer it, keep going."""


class RawJSON:
    """A response field's value already encoded as JSON (bytes), put into frames as it is.

    One batch of log lines goes to every follower at its place: encoded once, framed many times.
    """

    __slots__ = ("data",)

    def __init__(self, data):
        self.data = data


def raw_array(items):
    """Return the JSON array of *items* as ``RawJSON``, encoded a few items at a time (``encode_batched``).

    A ``ps`` of 300 services then holds its rows' bytes, not 300 dicts of 30 fields at
    once (1.7 MiB of the daemon's peak while the benchmark asks during a start: issue #25).
    """
    return RawJSON(b"[" + encode_batched(items, list, _dumps) + b"]")


def encode(message):
    """Return *message* as one frame of bytes."""
    return b"".join(encode_parts(message))


def encode_parts(message):
    """Return *message* as one frame in a few pieces of bytes, to be sent one after the other.

    A response field that is ``RawJSON`` is a piece of its own, not copied: a batch of
    log lines is often a megabyte, shared by every follower at its place.
    """
    response = message.get("response")
    if isinstance(response, dict) and any(type(value) is RawJSON for value in response.values()):
        parts = _encode_with_raw(message, response)
    else:
        parts = [_dumps(message)]
    length = sum(map(len, parts))
    if length > MAX_FRAME:
        raise ProtocolError(f"frame of {length} bytes exceeds the {MAX_FRAME} byte limit")
    parts[0] = _HEADER.pack(length) + parts[0]
    return parts


def _dumps(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _encode_with_raw(message, response):
    """Return the pieces of *message*'s encoding, each ``RawJSON`` field of the response as it is."""
    plain = {key: value for key, value in response.items() if type(value) is not RawJSON}
    # The response goes last, so that the encoding ends with its closing brace and the message's.
    head = _dumps({**{key: value for key, value in message.items() if key != "response"}, "response": plain})
    parts, separator = [head[:-2]], b"," if plain else b""
    for key, value in response.items():
        if type(value) is RawJSON:
            parts[-1] += separator + _dumps(key) + b":"
            parts += [value.data, b""]
            separator = b","
    parts[-1] += b"}}"
    return parts


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
