"""Atomic JSON files: write a temp file, fsync it, rename it over the old one."""

import json
import os


def write_json(path, data):
    """Replace *path* with *data* as JSON so that readers see the old or the new file, never half."""
    tmp = f"{path}.tmp"
    with _create(tmp) as file:
        file.write(json.dumps(data, indent=1).encode())
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
    """Open *path* for writing, never through a symlink planted there."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o660)
    return os.fdopen(fd, "wb")
