"""Point 3 of #24: what hostile clients made the daemon hold goes back to the OS once they leave.

RSS is read from ``/proc/<pid>/status`` and polled (no sleep) until it is back within
``SLACK`` of where it was before the attack. The slack is a few times the noise of
an idle daemon's RSS (lazily imported modules, the allocator's free lists), far
under what the attacks make the daemon hold (50 to 100 MiB here), and under what
stayed before the memory was given back (27 MiB after the pipelining client).
"""

import os
import struct

import pytest

from tests.integration.harness import wait_for
from tests.robustness import wire

SLACK_KIB = 10 * 1024
CLIENTS = 100
LOG_MEGABYTES = 40


def _rss(kepler):
    return wire.rss_kib(kepler.daemon.pid)


def _comes_back(kepler, before):
    wait_for(lambda: _rss(kepler) - before <= SLACK_KIB,
             message=f"RSS to come back within {SLACK_KIB // 1024} MiB of {before // 1024} MiB "
                     f"(it is {_rss(kepler) // 1024} MiB)")


@pytest.mark.parametrize("announced", [16 << 20, 4 << 20], ids=["over-the-cap", "at-the-cap"])
def test_memory_comes_back_after_clients_announcing_big_frames_leave(kepler, announced):
    """100 clients announce a big frame and send 1 MiB of it, then leave."""
    wire.hello(wire.connect(kepler)).close()
    before = _rss(kepler)
    socks = []
    try:
        for _ in range(CLIENTS):
            sock = wire.hello(wire.connect(kepler))
            socks.append(sock)
            try:
                sock.sendall(struct.pack(">I", announced) + b"[" + b" " * ((1 << 20) - 1))
            except (BrokenPipeError, ConnectionResetError):
                assert announced > 4 << 20, "only a frame over the cap is refused"
        wire.hello(wire.connect(kepler)).close()  # every earlier chunk has been read (or refused) by now
        during = _rss(kepler)
        assert during - before < 2 * CLIENTS * 1024, f"RSS grew by {(during - before) // 1024} MiB"
    finally:
        for sock in socks:
            sock.close()
    _comes_back(kepler, before)


def test_memory_comes_back_after_a_client_pipelining_log_reads_leaves(kepler):
    """One client asks 400 times for a big log without reading an answer, then leaves."""
    kepler.config(f"""
        services:
          big:
            command: ["bash", "-c", "yes line-of-a-big-log-0123456789 | head -c {LOG_MEGABYTES}M; sleep 1000"]
    """)
    kepler.ctl("start", "-d")
    log = os.path.join(kepler.inspect_path(), "logs", "big.stdout.log")
    wait_for(lambda: os.path.exists(log) and os.path.getsize(log) >= LOG_MEGABYTES << 20, timeout=120,
             message="the big log")
    kepler.ctl("logs", "--tail", "1")  # the log reading code is imported before the first reading of RSS
    before = _rss(kepler)
    sock = wire.hello(wire.connect(kepler))
    try:
        cursor = wire.ask(sock, 1, {"type": "logs", "config": os.path.join(kepler.workdir, "kepler.yaml")})
        frames = b"".join(wire.frame({"id": 10 + index, "request": {
            "type": "logs_read", "cursor": cursor["response"]["cursor"], "wait": 0}}) for index in range(400))
        sock.setblocking(False)
        sent = 0
        while sent < len(frames):
            try:
                sent += sock.send(frames[sent:])
            except BlockingIOError:
                break  # the daemon stopped reading: its queue of answers is full
        # Held: a full send queue and the requests in flight, unread.
        wait_for(lambda: _rss(kepler) - before > 2 * SLACK_KIB, timeout=60, message="the daemon to hold answers")
    finally:
        sock.close()
    _comes_back(kepler, before)
