"""Glob patterns of ``restart.watch`` (SPEC §10): ``*``, ``**``, ``?``, ``[abc]``, ``[!abc]``.

Pure path logic, no I/O. A pattern is matched component by component against an
absolute path: ``*``, ``?`` and brackets never cross a ``/``; a component that is
exactly ``**`` matches any number of directories (zero included), and a trailing
``**`` matches everything below its directory. Dot files are not special.

>>> web = Glob("/srv/web/src/**/*.py")
>>> web.matches("/srv/web/src/app.py"), web.matches("/srv/web/src/a/b/views.py")
(True, True)
>>> web.matches("/srv/web/src/app.pyc"), web.may_contain("/srv/web/src/deep/er")
(False, True)
>>> web.root
'/srv/web/src'
"""

import fnmatch
import os
import re

ANY_DEPTH = "**"
_WILDCARDS = re.compile(r"[*?\[]")


def _component(text):
    """Return a matcher of one path component, or ``ANY_DEPTH``."""
    if text == ANY_DEPTH:
        return ANY_DEPTH
    if not _WILDCARDS.search(text):
        return text.__eq__
    # fnmatch handles brackets (ranges, ``!`` negation, an unclosed ``[`` as a literal);
    # a component holds no ``/``, so its ``*`` cannot cross directories.
    return re.compile(fnmatch.translate(text)).match


def _split(path):
    return [part for part in path.split("/") if part]


class Glob:
    """One absolute pattern."""

    def __init__(self, pattern):
        if not pattern.startswith("/"):
            raise ValueError(f"not an absolute pattern: {pattern}")
        parts = _split(os.path.normpath(pattern))
        # Consecutive ``**`` mean the same as one, and would only slow matching down.
        parts = [part for index, part in enumerate(parts)
                 if not (part == ANY_DEPTH and index and parts[index - 1] == ANY_DEPTH)]
        literal = 0
        while literal < len(parts) - 1 and not _WILDCARDS.search(parts[literal]):
            literal += 1
        self.pattern = "/" + "/".join(parts)
        self.root = "/" + "/".join(parts[:literal])
        self._parts = [_component(part) for part in parts]

    def __repr__(self):
        return f"Glob({self.pattern!r})"

    def matches(self, path):
        """Tell whether the absolute *path* matches the whole pattern."""
        return _matches(self._parts, _split(path))

    def may_contain(self, directory):
        """Tell whether a path below *directory* could match (so it is worth watching)."""
        return _may_contain(self._parts, _split(directory))


def _matches(parts, names):
    if not parts:
        return not names
    head, rest = parts[0], parts[1:]
    if head is ANY_DEPTH:
        # A trailing ``**`` stands for at least one name: ``src/**`` is what is in src.
        first = 1 if not rest else 0
        return any(_matches(rest, names[skip:]) for skip in range(first, len(names) + 1))
    return bool(names) and bool(head(names[0])) and _matches(rest, names[1:])


def _may_contain(parts, names):
    if not names:
        return bool(parts)
    if not parts:
        return False
    head = parts[0]
    if head is ANY_DEPTH:
        return True
    return bool(head(names[0])) and _may_contain(parts[1:], names[1:])


class GlobSet:
    """The patterns of one service, anchored at its working dir.

    Relative patterns are joined to *base_dir*; the literal start of every pattern
    is resolved through symlinks, so patterns compare with the real paths inotify
    reports for the directories we watch.
    """

    def __init__(self, patterns, base_dir):
        self.globs = [_resolved(os.path.join(base_dir, pattern)) for pattern in patterns]

    @property
    def roots(self):
        """Return the directories the patterns start from, without duplicates."""
        return list(dict.fromkeys(glob.root for glob in self.globs))

    def matches(self, path):
        return any(glob.matches(path) for glob in self.globs)

    def may_contain(self, directory):
        return any(glob.may_contain(directory) for glob in self.globs)


def _resolved(pattern):
    glob = Glob(pattern)
    real_root = os.path.realpath(glob.root)
    if real_root == glob.root:
        return glob
    return Glob(real_root + glob.pattern[len(glob.root):])
