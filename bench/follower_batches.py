"""Benchmark the daemon's side of one wake of many log followers, in-process: no sockets, no clients.

    .venv/bin/python bench/follower_batches.py [--followers 50] [--tree PATH]

A service writes 100 lines 5 times (50 ms of S9's 10k lines/s); then every
follower takes its batch and its answer frame is encoded, as ``logs_read`` does.
Reported: CPU time per wake, and what that is of a core at 20 wakes a second.
It is the part of S9 that grows with the followers, measured without S9's 50
clients (which, on a loaded machine, are what falls behind). ``--tree`` measures
another checkout's ``keplerd`` (say, an export of main) for an A/B comparison.
"""

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

WRITES, LINES = 5, 100


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--followers", type=int, default=50)
    parser.add_argument("--wakes", type=int, default=200)
    parser.add_argument("--tree", default=os.path.dirname(HERE), help="the checkout whose keplerd to measure")
    args = parser.parse_args()
    sys.path.insert(0, os.path.abspath(args.tree))
    from keplerd.control import protocol
    from keplerd.logs.follow import LiveFeed

    listeners = set()
    feeds = [LiveFeed() for _ in range(args.followers)]
    for feed in feeds:
        feed.attach(listeners)
    began = time.process_time()
    for wake in range(args.wakes):
        for write in range(WRITES):
            first = (wake * WRITES + write) * LINES
            data = b"".join(b"1764924000%03d %09d followed-line-of-forty-bytes\n" % (wake % 1000, first + k)
                            for k in range(LINES))
            for listener in tuple(listeners):
                listener("chatty", "stdout", data)
        for index, feed in enumerate(feeds):
            _answer(protocol, feed, index)
    per_wake = (time.process_time() - began) / args.wakes
    print(f"{protocol.__file__}: {per_wake * 1e3:.2f} ms CPU per wake of {args.followers} followers, "
          f"{per_wake * 20 * 100:.1f} % of a core at 20 wakes/s (10k lines/s)")


def _answer(protocol, feed, request_id):
    if hasattr(feed, "take_encoded"):  # since issue #25's shared batches
        chunks = feed.take_encoded(1 << 20)
        return protocol.encode_parts({"id": request_id, "response": {"ok": True, "chunks": chunks, "done": False}})
    chunks = feed.take(1 << 20)
    return protocol.encode({"id": request_id, "response": {"ok": True, "chunks": chunks, "done": False}})


if __name__ == "__main__":
    main()
