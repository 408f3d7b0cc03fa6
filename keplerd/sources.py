"""The files a bake read (config, env files, Lua) and whether they changed since (SPEC §13).

The bake worker records each file's size, mtime and content hash as it reads it;
``ps`` compares without re-baking. It is cheap: a ``stat`` per file, and a hash
only for a file whose size or mtime moved (a ``touch`` alone is no change).

>>> data, record = read_recorded("/srv/app/kepler.yaml")      # doctest: +SKIP
>>> SourceCheck().changed({"/srv/app/kepler.yaml": record})   # doctest: +SKIP
False
"""

import os

# Imported now, not on the first hash: a bake worker for a non-root caller hashes after
# taking the caller's ids, when the interpreter's own files may be out of its reach.
# CPython's built-in sha256 rather than hashlib's: no OpenSSL in the daemon.
try:
    from _sha256 import sha256 as _sha256  # Python 3.11
except ImportError:
    try:
        from _sha2 import sha256 as _sha256  # Python 3.12 and later
    except ImportError:
        from hashlib import sha256 as _sha256


def read_recorded(path):
    """Return ``(bytes, record)`` of the file at *path*; raise OSError.

    The stat comes before the read: a write racing the bake then shows up as a
    changed mtime, and the hash settles it.
    """
    with open(path, "rb") as file:
        stat = os.fstat(file.fileno())
        data = file.read()
    return data, make_record(stat, data)


def make_record(stat, data):
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": _sha256(data).hexdigest()}


class SourceCheck:
    """Tell whether recorded files changed; remembers verdicts by (path, size, mtime)."""

    def __init__(self):
        self._verdicts = {}

    def changed(self, sources):
        """Return whether any file of *sources* (``{path: record}``) differs from its record."""
        return any(self._file_changed(path, record) for path, record in (sources or {}).items())

    def _file_changed(self, path, record):
        try:
            stat = os.stat(path)
        except OSError:
            return True  # gone or unreadable: the next bake would not see what this one saw
        if (stat.st_size, stat.st_mtime_ns) == (record["size"], record["mtime_ns"]):
            return False
        key = (path, stat.st_size, stat.st_mtime_ns, record["sha256"])
        if key not in self._verdicts:
            try:
                with open(path, "rb") as file:
                    digest = _sha256(file.read()).hexdigest()
            except OSError:
                return True
            if len(self._verdicts) > 1024:
                self._verdicts.clear()  # bounded: a file edited over and over must not grow it
            self._verdicts[key] = digest != record["sha256"]
        return self._verdicts[key]
