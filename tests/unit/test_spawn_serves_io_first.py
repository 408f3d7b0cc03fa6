"""A spawn lets the loop serve ready pipes first (SPEC §11): lines are stamped before a fork holds the loop."""

import os

import gevent
from gevent.socket import wait_read

from keplerd.osproc import process


def test_ready_pipes_are_read_before_a_spawn_goes_on():
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    order = []

    def pump():
        wait_read(read_fd)
        order.append(("read", os.read(read_fd, 100)))

    reader = gevent.spawn(pump)
    try:
        gevent.sleep(0)  # the pump now waits on its pipe
        os.write(write_fd, b"a line\n")
        process.serve_ready_io()
        order.append(("spawn", None))
        assert order == [("read", b"a line\n"), ("spawn", None)]
    finally:
        reader.kill()
        os.close(read_fd)
        os.close(write_fd)


def test_a_loop_that_never_idles_does_not_hold_a_spawn_back():
    def busy():
        while True:
            gevent.sleep(0)

    spinner = gevent.spawn(busy)
    try:
        with gevent.Timeout(5):
            process.serve_ready_io(longest=0.01)  # returns once its bound passes
    finally:
        spinner.kill()
