"""Raw protocol frames for attacking the socket (no keplerctl in the way)."""

import json
import os
import socket
import struct


def connect(kepler, timeout=30):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(os.path.join(kepler.state_dir, "kepler.sock"))
    return sock


def frame(message):
    return body_frame(json.dumps(message).encode())


def body_frame(body):
    return struct.pack(">I", len(body)) + body


def read(sock):
    """Return the next message, or None at the end of stream (or a reset)."""
    try:
        header = _exactly(sock, 4)
        if header is None:
            return None
        body = _exactly(sock, struct.unpack(">I", header)[0])
    except ConnectionResetError:
        return None
    return None if body is None else json.loads(body)


def _exactly(sock, size):
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def hello(sock):
    sock.sendall(frame({"id": 0, "request": {"type": "hello", "version": 1}}))
    answer = read(sock)
    assert answer["response"]["ok"], answer
    return sock


def ask(sock, request_id, body):
    """Send one raw request body (bytes or a request dict) and return its answer."""
    if isinstance(body, dict):
        body = json.dumps({"id": request_id, "request": body}).encode()
    sock.sendall(body_frame(body))
    return read(sock)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")
