"""Hand the daemon's runtime to a fresh image of itself: ``keplerctl daemon reexec`` (SPEC §20).

The old image writes ``<state>/handover.json`` — the fds of the listening socket and
of the pid-file lock, its settings, and every config's services with their pids,
output pipes, states and counters — clears close-on-exec on exactly those fds, and
execs the ``keplerd`` found now with ``--resume <file>``. exec keeps the pid, so the
services stay children of the new image, which adopts them (``Project.take_over``).

A new image that cannot take the runtime over (another format, a corrupt file)
closes every fd it inherited and boots as after a crash (SPEC §14): ``state.json``,
written just before the exec, then says what ran.
"""

import json
import os
import sys

FORMAT = 1
FILE_NAME = "handover.json"


class CannotResume(Exception):
    """The hand-over file cannot be used; the message says why."""


def path_in(state_dir):
    return os.path.join(state_dir, FILE_NAME)


def write(path, record, fds):
    """Write *record* for the next image and let exactly *fds* (besides stdio) survive the exec."""
    data = json.dumps({"format": FORMAT, **record}).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    for kept in fds:
        os.set_inheritable(kept, True)


def read(path):
    """Return the record at *path* for this process, or raise ``CannotResume``; the file is removed."""
    try:
        with open(path, "rb") as file:
            data = file.read()
        os.unlink(path)
    except OSError as error:
        raise CannotResume(f"cannot read {path}: {error.strerror}") from None
    try:
        record = json.loads(data)
    except ValueError as error:
        raise CannotResume(f"{path} is not valid JSON ({error})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        found = record.get("format") if isinstance(record, dict) else None
        raise CannotResume(f"{path} has hand-over format {found!r}; this keplerd reads format {FORMAT}")
    if record.get("pid") != os.getpid():
        raise CannotResume(f"{path} was written by pid {record.get('pid')}, not by this process")
    return record


def close_inherited():
    """Close every fd but stdio: what an unusable hand-over left open must not leak into the boot."""
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))


def exec_command(resume_path, log_path):
    """Return the argv that runs the ``keplerd`` installed now, resuming from *resume_path*.

    The command line the daemon was started with, less ``--daemonize`` (the new image
    is already in the background: it logs to *log_path* instead) and any earlier ``--resume``.
    """
    args, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
        elif arg == "--resume":
            skip = True
        elif arg != "--daemonize" and not arg.startswith("--resume="):
            args.append(arg)
    if log_path and "--log-file" not in args and not any(arg.startswith("--log-file=") for arg in args):
        args += ["--log-file", log_path]
    args += ["--resume", resume_path]
    script = sys.argv[0]
    if os.path.basename(script) == "__main__.py" or not os.access(script, os.X_OK):
        return [sys.executable, "-m", "keplerd", *args]   # started as python -m keplerd
    return [script, *args]   # the installed launcher: its interpreter and library as they are now
