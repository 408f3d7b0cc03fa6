"""What every export shares: its options, its result, and the small conversions both targets need."""

import dataclasses
import math
import posixpath
import re

from keplerd.model import defaults

FORMATS = ("systemd", "nomad")
DEFAULT_SYSTEMD_VERSION = 252
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


class ExportError(Exception):
    """The export cannot be done (bad options); the message is shown to the user."""


@dataclasses.dataclass
class Options:
    """How to export: the name prefix, the systemd version to write for, the Nomad driver."""

    prefix: str
    systemd_version: int = DEFAULT_SYSTEMD_VERSION
    driver: str = "exec"
    # resolve(program, search_path) -> absolute path or None: how a program without "/" is found.
    resolve: object = None


@dataclasses.dataclass
class Result:
    """Files (name -> text), warnings (key path, message) and the key paths that were mapped."""

    files: dict = dataclasses.field(default_factory=dict)
    warnings: list = dataclasses.field(default_factory=list)
    mapped: set = dataclasses.field(default_factory=set)

    def warn(self, path, message):
        """Record that the key at *path* (a list or a dotted string) has no equivalent."""
        self.warnings.append((_dotted(path), message))

    def map(self, *paths):
        """Record that the keys at *paths* were mapped to the target."""
        self.mapped.update(_dotted(path) for path in paths)

    def sorted_warnings(self):
        """Return the warnings in a stable order: by key path, then message, without duplicates."""
        return sorted(set(self.warnings))

    def warning_lines(self):
        return [f"{path}: {message}" for path, message in self.sorted_warnings()]


def _dotted(path):
    return path if isinstance(path, str) else ".".join(str(part) for part in path)


KEPLER_PATH = defaults.DEFAULT_PATH  # SPEC §2, without PATH


def resolved_argv(argv, env, working_dir, options):
    """Return *argv* with its program as Kepler would run it (SPEC §2).

    A relative path (``./server``) is relative to the working dir; a name without
    ``/`` is found by ``options.resolve`` in the env's PATH, else Kepler's default
    path, and left as it is when there is no resolver or it is not found.
    """
    program = argv[0]
    if "/" in program:
        return [posixpath.normpath(posixpath.join(working_dir, program)), *argv[1:]]
    found = options.resolve(program, env.get("PATH", KEPLER_PATH)) if options.resolve else None
    return [found, *argv[1:]] if found else list(argv)


def one_line(text):
    """Return *text* on one line (a display name in a unit comment or description)."""
    return " ".join(str(text).splitlines())


def safe_prefix(name):
    """Return *name* with every run of characters not allowed in unit and job names made one ``-``."""
    cleaned = _SAFE_NAME.sub("-", name).strip("-.")
    return cleaned or "kepler"


def replicas(service):
    """Return how many instances the service runs (``replicas``, SPEC §17; 1 when absent)."""
    value = service.get("replicas")
    return value if isinstance(value, int) and value >= 1 else 1


def mebibytes(size):
    """Return *size* bytes in whole MiB, rounded up (a limit is never made smaller)."""
    return max(1, math.ceil(size / (1 << 20)))


def nanoseconds(seconds):
    """Return *seconds* as whole nanoseconds (Nomad's JSON durations)."""
    return int(round(seconds * 1_000_000_000))


def edges_to(snapshot, name):
    """Return ``{dependent: edge}`` for every service whose ``depends_on`` names *name*."""
    return {other: service["depends_on"][name] for other, service in sorted(snapshot["services"].items())
            if name in service.get("depends_on", {})}


QUICK_RUN = 10.0  # a run shorter than this is a quick failure (SPEC §10)
DEFERRED = ("service_unhealthy", "service_failed", "service_stopped")
