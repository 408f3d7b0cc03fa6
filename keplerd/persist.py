"""Atomic JSON files: write a temp file, fsync it, rename it over the old one."""

import json
import os


def write_json(path, data):
    """Replace *path* with *data* as JSON so that readers see the old or the new file, never half.

    Compact: ``state.json`` is written after every loop turn that changed a
    service, and the C encoder is five times faster than the indenting one
    (1 ms instead of 4.8 ms per write at 300 services).
    """
    tmp = f"{path}.tmp"
    with _create(tmp) as file:
        file.write(json.dumps(data, separators=(",", ":")).encode())
        file.flush()
        os.fsync(file.fileno())
    os.rename(tmp, path)


def read_json(path, default=None):
    """Return the JSON in *path*, or *default* when the file does not exist."""
    try:
        with open(path, "rb") as file:
            return json.load(file)
    except FileNotFoundError:
        return default


def write_bytes(path, data):
    """Write *data* to a new file at *path* (mode 0660 under the daemon's umask)."""
    with _create(path) as file:
        file.write(data)


def _create(path):
    """Create a new file at *path*, never writing through anything planted there.

    Whatever is at *path* is removed first (a symlink or a hard link loses only
    its name), then the file is created exclusively, so that the daemon never
    writes into, or truncates, a file it did not just create.
    """
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass  # the usual case: nothing there
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o660)
    return os.fdopen(fd, "wb")
