"""One-off commands run the way a service runs (``keplerctl exec``, SPEC §17).

The command gets the instance's baked environment, user, group, working dir and
limits, in a session of its own: with a pseudo-terminal (its controlling terminal,
so Ctrl+C typed by the user reaches its foreground job) or with three pipes. It
may join the instance's cgroup, as a guest: killing the command never kills the
cgroup (``service_exec.py`` says who ends what). Its owner passes the output on
and feeds input; whatever happens to the owner, the command's process group does
not outlive it.
"""

import fcntl
import os
import struct
import termios

from gevent.pool import Group
from gevent.socket import wait_read, wait_write

from keplerd.osproc import process
from keplerd.osproc.groups import signal_group

READ_SIZE = 64 * 1024
DRAIN_SECONDS = 1.0


class OneOff:
    """A running one-off command; *on_output(stream, bytes)* gets what it writes.

    *cgroup* is the cgroup directory it starts in (None: the daemon's).
    """

    def __init__(self, spec, argv, on_output, tty=None, cgroup=None):
        self._group = Group()        # the output pumps, owned by this command
        self._on_output = on_output
        self._cgroup = cgroup
        self._fds = []
        if tty is not None:
            self._start_with_terminal(spec, argv, tty)
        else:
            self._start_with_pipes(spec, argv)

    def _start_with_terminal(self, spec, argv, size):
        master, slave = os.openpty()
        self._fds.append(master)
        self.resize(*size, fd=master)
        try:
            self.child = _spawn(spec, argv, self._cgroup, stdin=slave, stdout=slave, stderr=slave, tty=True)
        finally:
            os.close(slave)
        self._input = self._terminal = master
        self._group.spawn(self._pump, master, "stdout")

    def _start_with_pipes(self, spec, argv):
        ends = [os.pipe2(os.O_CLOEXEC) for _ in range(3)]
        (in_read, in_write), (out_read, out_write), (err_read, err_write) = ends
        self._fds += [in_write, out_read, err_read]
        try:
            self.child = _spawn(spec, argv, self._cgroup, stdin=in_read, stdout=out_write, stderr=err_write)
        finally:
            for fd in (in_read, out_write, err_write):
                os.close(fd)
        self._input, self._terminal = in_write, None
        self._group.spawn(self._pump, out_read, "stdout")
        self._group.spawn(self._pump, err_read, "stderr")

    def _pump(self, fd, stream):
        os.set_blocking(fd, False)
        while True:
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:
                wait_read(fd)
                continue
            except OSError:  # EIO: a terminal whose every other end is closed
                return
            if not data:
                return
            self._on_output(stream, data)

    def write(self, data):
        """Feed *data* to the command's input (a command that closed it loses it)."""
        fd = self._input
        if fd is None:
            return
        os.set_blocking(fd, False)
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(fd, view):]
            except BlockingIOError:
                wait_write(fd)
            except OSError:
                return

    def close_input(self):
        """End of input: the pipe closes (a terminal gets its EOF character from the user instead)."""
        if self._terminal is None and self._input is not None:
            fd, self._input = self._input, None
            self._fds.remove(fd)
            os.close(fd)

    def resize(self, rows, columns, fd=None):
        """Set the terminal's window size (the command gets SIGWINCH)."""
        fd = self._terminal if fd is None else fd
        if fd is not None:
            fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))

    def send_signal(self, signum):
        signal_group(self.child.pgid, signum)

    def wait(self):
        """Return the exit code (128 + signal when killed), once the output is passed on."""
        returncode = self.child.wait()
        self._group.join(timeout=DRAIN_SECONDS)
        return returncode if returncode >= 0 else 128 - returncode

    def kill(self):
        """SIGKILL the command's process group and descendants if it still runs (its owner then ends)."""
        if self.child.returncode is None:
            self.child.kill()

    def close(self):
        """Kill the command's group if it still runs; stop the pumps; close the fds."""
        self.kill()
        self._group.kill()
        for fd in self._fds:
            process.close_now(fd)
        self._fds = []


def _spawn(spec, argv, cgroup, **fds):
    return process.spawn(argv, spec["env"], spec["working_dir"], user=spec.get("user"), group=spec.get("group"),
                         limits=spec.get("limits"), cgroup=cgroup, cgroup_guest=True, **fds)

