"""The one error type of the config pipeline, and the collector that fills it.

Every problem is one located line, ``<file>: <key.path>: <problem>`` (or
``<file>:<line>:<column>: <problem>`` for YAML syntax); a bake collects them all
and raises them together so the user fixes a config in one round.
"""


class ConfigError(Exception):
    """A config that cannot be baked; ``errors`` lists every problem, one line each."""

    def __init__(self, errors):
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


# Control characters a key or value may hold are escaped: a problem is always one line.
_ESCAPES = {code: f"\\x{code:02x}" for code in (*range(32), 127)} | {9: "\\t", 10: "\\n", 13: "\\r"}


def one_line(text):
    """Return *text* with its control characters escaped (``\\n``, ``\\x1b``...)."""
    return text.translate(_ESCAPES)


def key_path(parts):
    """Return ``services.web.command.1`` for ``["services", "web", "command", 1]``."""
    return ".".join(str(part) for part in parts)


class Problems:
    """Collect located problems of one file; ``raise_if_any`` turns them into a ConfigError.

    >>> problems = Problems("kepler.yaml")
    >>> problems.add(["services", "web", "stop_signal"], "invalid signal 'SIGFOO'")
    >>> problems.errors
    ["kepler.yaml: services.web.stop_signal: invalid signal 'SIGFOO'"]
    """

    def __init__(self, display_name):
        self.display_name = display_name
        self.errors = []

    def __bool__(self):
        return bool(self.errors)

    def add(self, path, message):
        """Record *message* about the key at *path* (a list of keys; empty for the file)."""
        where = key_path(path)
        prefix = f"{self.display_name}: {where}: " if where else f"{self.display_name}: "
        self.errors.append(one_line(prefix + message))

    def add_located(self, message):
        """Record a *message* that already says where it is (e.g. ``app.env:3: ...``)."""
        self.errors.append(one_line(message))

    def extend(self, error):
        """Record every problem of the ConfigError *error*."""
        self.errors.extend(error.errors)

    def raise_if_any(self):
        if self.errors:
            raise ConfigError(self.errors)
