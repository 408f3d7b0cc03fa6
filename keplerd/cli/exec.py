"""keplerctl exec: run a one-off command the way a service runs, its I/O forwarded (SPEC §17).

Plain blocking I/O and ``select``: the CLI relays its stdin to the daemon and the
command's output back. On a terminal, the terminal goes raw (the command's own
pseudo-terminal does the line editing and turns Ctrl+C into SIGINT) and window
size changes follow; elsewhere, Ctrl+C is sent to the command as SIGINT.
"""

import base64
import os
import select
import signal

from keplerd.cli.client import CommandError

READ_SIZE = 64 * 1024


def exec_command(context):
    args = context.args
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        raise CommandError("exec needs a command: keplerctl exec SERVICE -- CMD [ARGS...]")
    tty = os.isatty(0) and os.isatty(1)
    request = context.baking_request("exec", service=args.service, command=argv, tty=tty)
    if tty:
        request["rows"], request["columns"] = _window()
    with context.client() as client:
        return Relay(client, tty).run(request)


def _window():
    size = os.get_terminal_size(1)
    return size.lines, size.columns


class Relay:
    """Moves bytes between this terminal (or pipes) and the command until it ends."""

    def __init__(self, client, tty):
        self.client = client
        self.tty = tty
        self.token = None
        self.stdin_open = True
        self.interrupted = False

    def run(self, request):
        wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        previous_wakeup = signal.set_wakeup_fd(wake_write)
        signal.signal(signal.SIGWINCH, lambda *_: None)  # only wakes the loop: the size is read there
        # Not on a terminal, Ctrl+C is for the command (raw mode sends it as a byte instead).
        signal.signal(signal.SIGINT, self._interrupt)
        saved = _raw(0) if self.tty else None
        try:
            request_id = self.client.send(request, self.event)
            return self._loop(request_id, wake_read)
        finally:
            if saved is not None:
                import termios

                termios.tcsetattr(0, termios.TCSADRAIN, saved)
            signal.set_wakeup_fd(previous_wakeup)
            os.close(wake_read)
            os.close(wake_write)

    def _loop(self, request_id, wake_read):
        while True:
            readable = self._wait(wake_read)
            if self.client.fileno() in readable:
                answered = self.client.read_one()
                if answered == request_id:
                    return self.client.result(request_id)["exit_code"]
                if answered is not None:
                    self.client.forget(answered)
            if wake_read in readable:
                self._woken(wake_read)
            if 0 in readable:
                self._relay_input()

    def _interrupt(self, *_):
        self.interrupted = True

    def _wait(self, wake_read):
        watched = [self.client.fileno(), wake_read] + ([0] if self.stdin_open and self.token else [])
        return select.select(watched, [], [])[0]

    def _woken(self, wake_read):
        try:
            while os.read(wake_read, 512):
                pass
        except BlockingIOError:
            pass
        if self.interrupted:
            self.interrupted = False
            self._send("exec_signal", signal="SIGINT")
        if self.tty and self.token:
            rows, columns = _window()
            self._send("exec_resize", rows=rows, columns=columns)

    def _relay_input(self):
        data = os.read(0, READ_SIZE)
        if not data:
            self.stdin_open = False
            self._send("exec_input", data="", eof=True)
            return
        self._send("exec_input", data=base64.b64encode(data).decode())

    def _send(self, kind, **fields):
        if self.token is not None:
            self.client.send({"type": kind, "exec": self.token, **fields})

    def event(self, event):
        if event.get("kind") == "exec_started":
            self.token = event["exec"]
        elif event.get("kind") == "output":
            fd = 2 if event["stream"] == "stderr" else 1
            data = base64.b64decode(event["data"])
            while data:
                data = data[os.write(fd, data):]


def _raw(fd):
    """Put terminal *fd* in raw mode; return its previous attributes."""
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    tty.setraw(fd, termios.TCSANOW)
    return saved
