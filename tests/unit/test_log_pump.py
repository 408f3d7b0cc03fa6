"""Pumps copy pipes into log files through one shared read buffer; what they keep is their own.

Real pipes and gevent's loop, no daemon: a pump is a loop watcher. Each test runs with
the C stamper (reads of up to 1 MiB into the shared buffer) and without it (64 KiB
reads into new bytes), as on a machine without a compiler.
"""

import fcntl
import os
import platform
import subprocess

import gevent
import pytest

from keplerd.logs import format as log_format
from keplerd.logs import writer as log_writer
from keplerd.logs.writer import BIG_PIPE_SIZE, LogWriter

F_GETPIPE_SZ = 1032
C_STAMPER = log_format.stamp_lines


@pytest.fixture(params=["c", "python"])
def stamper(request, monkeypatch):
    if request.param == "python":
        monkeypatch.setattr(log_format, "stamp_lines", None)
        monkeypatch.setattr(log_writer, "stamp_lines", None)
    elif C_STAMPER is None:
        pytest.skip("the C stamper is not built here")
    return request.param


def test_the_c_stamper_is_built_on_linux():
    """setup.py builds it wherever there is a compiler (as on every machine that runs `make test`)."""
    if platform.system() == "Linux":
        assert C_STAMPER is not None, "keplerd/logs/_stamp.c was not built"


class Pipes:
    """Non-blocking read ends for pumps, and write ends the test closes (or the fixture, after)."""

    def __init__(self):
        self._open = set()

    def make(self):
        read_end, write_end = os.pipe()
        os.set_blocking(read_end, False)
        self._open.add(write_end)
        return read_end, write_end

    def close(self, fd):
        self._open.discard(fd)
        os.close(fd)

    def close_all(self):
        for fd in tuple(self._open):
            self.close(fd)


@pytest.fixture
def pipes():
    pipes = Pipes()
    yield pipes
    pipes.close_all()


def stored_lines(path):
    """The texts of the stored lines of *path*, each stamp checked and taken off."""
    with open(path, "rb") as file:
        lines = file.read().split(b"\n")
    assert lines.pop() == b""
    texts = []
    for line in lines:
        stamp, _, text = line.partition(b" ")
        assert stamp.isdigit() and len(stamp) == 13, line[:40]
        texts.append(text)
    return texts


def wait_for_size(path, size):
    deadline = gevent.Timeout(10, AssertionError(f"{path} never reached {size} bytes"))
    with deadline:
        while not os.path.exists(path) or os.path.getsize(path) < size:
            gevent.sleep(0.001)


def test_pumps_sharing_the_read_buffer_keep_their_unfinished_lines_apart(tmp_path, pipes, stamper):
    writer = LogWriter(str(tmp_path), "two", set())
    (read_out, write_out), (read_err, write_err) = pipes.make(), pipes.make()
    pumps = [writer.start_pump("stdout", read_out), writer.start_pump("stderr", read_err)]
    try:
        for round_ in range(3):
            os.write(write_out, b"out %d first half, " % round_)
            os.write(write_err, b"err %d first half, " % round_)
            gevent.sleep(0.01)  # each pump reads its half line, one after the other, into the same buffer
            os.write(write_out, b"out %d second half\n" % round_)
            os.write(write_err, b"err %d second half\n" % round_)
            for stream in ("stdout", "stderr"):
                wait_for_size(tmp_path / f"two.{stream}.log", 1)
        pipes.close(write_out)
        pipes.close(write_err)
        assert gevent.joinall(pumps, timeout=10) and all(pump.dead for pump in pumps)
    finally:
        writer.close()
    for stream, name in (("stdout", b"out"), ("stderr", b"err")):
        assert stored_lines(tmp_path / f"two.{stream}.log") == [
            name + b" %d first half, " % round_ + name + b" %d second half" % round_ for round_ in range(3)]


def test_a_flood_grows_the_pipe_and_every_line_is_stored_once_in_order(tmp_path, pipes, stamper):
    lines = [b"%07d " % number + b"flood-" * 10 for number in range(100_000)]  # 7.7 MB
    data = tmp_path / "data"
    data.write_bytes(b"\n".join(lines) + b"\n")
    writer = LogWriter(str(tmp_path), "flood", set())
    read_end, write_end = pipes.make()
    the_pipe = os.dup(read_end)  # the pump closes its end at EOF
    pump = writer.start_pump("stdout", read_end)
    cat = subprocess.Popen(["cat", str(data)], stdout=write_end)
    pipes.close(write_end)
    try:
        assert pump.join(timeout=30)
        assert fcntl.fcntl(the_pipe, F_GETPIPE_SZ) == BIG_PIPE_SIZE
    finally:
        os.close(the_pipe)
        cat.kill()
        cat.wait()
        writer.close()
    assert stored_lines(tmp_path / "flood.stdout.log") == lines
    assert writer.lines["stdout"] == len(lines)
