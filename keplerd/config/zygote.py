"""A warm bake worker: import the bake stack once, then fork one process per bake.

A cold worker spends most of a small bake importing PyYAML, marshmallow and lupa
(about 70 ms). The zygote imports them once and forks a fresh process for every
bake, so each bake still runs alone (a Lua abort, a memory bomb or a client that
goes away ends only that bake) but starts in a millisecond.

The daemon (``keplerd.bakery.Zygote``) talks to it over a ``SOCK_SEQPACKET``
socket given as the zygote's stdin; one message each way per event:

* ``bake <token>`` with three fds (the bake's stdin, stdout, stderr): fork a worker
  that runs ``keplerd.config.worker.main`` on those fds; answered ``pid <token> <pid>``;
* ``kill <pid>``: SIGKILL that worker if it has not been reaped yet;
* ``exit <pid> <returncode>``: sent by the zygote when a worker has been reaped.

The zygote ends when the daemon closes its end. Nothing here is gevent.
"""

import ctypes
import os
import select
import signal
import socket
import sys
import traceback

from keplerd.config import worker

CONTROL_FD = 0
MAX_MESSAGE = 256
PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def main():
    control = socket.socket(fileno=CONTROL_FD)
    wakeup_read, wakeup_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wakeup_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # only to wake select through the wakeup fd
    workers = set()
    while True:
        readable, _, _ = select.select([control, wakeup_read], [], [])
        if wakeup_read in readable:
            _drain(wakeup_read)
        _report_exits(control, workers)
        if control in readable and not _serve(control, workers):
            return


def _serve(control, workers):
    """Handle one message from the daemon; return False once the daemon has gone."""
    try:
        message, fds, _, _ = socket.recv_fds(control, MAX_MESSAGE, 3)
    except ConnectionResetError:
        return False
    if not message:
        return False
    command, _, argument = message.decode().partition(" ")
    if command == "bake" and len(fds) == 3:
        pid = _fork_worker(control, fds)
        workers.add(pid)
        control.send(f"pid {argument} {pid}".encode())
    elif command == "kill" and int(argument) in workers:
        os.kill(int(argument), signal.SIGKILL)
    for fd in fds:
        os.close(fd)
    return True


def _fork_worker(control, fds):
    """Fork a process that bakes with *fds* as its stdin, stdout and stderr; return its pid."""
    pid = os.fork()
    if pid:
        return pid
    try:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # a worker never outlives its zygote
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        control.close()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        worker.main()
        sys.stdout.flush()
        code = 0
    except BaseException:  # noqa: BLE001 - a worker must never return into the zygote's loop
        traceback.print_exc()
        code = 1
    sys.stderr.flush()
    os._exit(code)  # not exit(): nothing of the zygote's (atexit, buffers) may run twice


def _report_exits(control, workers):
    """Reap every ended worker and tell the daemon its return code (negative: signal)."""
    while workers:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            workers.clear()
            return
        if pid == 0:
            return
        workers.discard(pid)
        try:
            control.send(f"exit {pid} {os.waitstatus_to_exitcode(status)}".encode())
        except OSError:
            return  # the daemon has gone: the loop ends on its next read


def _drain(fd):
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass  # nothing more to read: the wakeup pipe is empty


if __name__ == "__main__":
    main()
