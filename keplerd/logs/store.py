"""All the logs of one config: its writers, its live listeners and its retention rules.

A service's logs are its own log name plus its hook logs ``<service>.<hook>``;
the config's own are ``global.<hook>``. Retention works on such an owner as a
whole: clearing ``web`` deletes ``web.*.log`` and ``web.<hook>.*.log``.
"""

import logging
import os

from keplerd.logs.files import log_path, remove_files, segment_paths
from keplerd.logs.format import owner_of
from keplerd.logs.reader import log_names
from keplerd.logs.settings import STREAMS, LogSettings
from keplerd.logs.writer import HubTimer, LogWriter

log = logging.getLogger("keplerd.logs")

GLOBAL = "global"


class LogStore:
    """The writers of one config's logs dir, created on demand and kept by log name.

    *listeners* is the config's set of live listeners (followers, attached
    clients); *global_settings* are the baked ``kepler.logs`` (for ``global.*``).
    """

    def __init__(self, logs_dir, listeners, global_settings=None, timers=HubTimer):
        self.logs_dir = logs_dir
        self.listeners = listeners
        self._settings = {GLOBAL: LogSettings(global_settings)}
        self._writers = {}
        self._owned = {}  # owner -> {name: writer}: a service's retention touches its own writers only
        self._timers = timers

    def writer(self, name, settings=None):
        """Return the writer of log *name*, creating it on first use.

        A service's writer sets the settings of its owner (and so of its hooks'
        logs); a hook log uses its owner's settings.
        """
        owner = owner_of(name)
        if settings is not None:
            self._settings[owner] = LogSettings(settings) if isinstance(settings, dict) else settings
        writer = self._writers.get(name)
        if writer is None:
            writer = self._writers[name] = self._owned.setdefault(owner, {})[name] = LogWriter(
                self.logs_dir, name, self.listeners,
                                                     self.settings(owner), self._timers)
        return writer

    def settings(self, owner):
        return self._settings.get(owner) or self._settings[GLOBAL]

    def apply_retention(self, owner, event):
        """Flush the logs of *owner*, then delete them if its retention says so for *event*.

        *event* is ``on_start``, ``on_stop``, ``on_restart`` or ``on_exit``; None
        only flushes. Returns whether they were cleared.
        """
        self.flush(owner)
        if not self.settings(owner).clears_on(event):
            return False
        self.clear(owner)
        return True

    def clear(self, owner):
        """Delete every log file of *owner* (its hook logs included), open or not."""
        for writer in self._owned.get(owner, {}).values():
            writer.clear()
        for name in log_names(self.logs_dir):
            if owner_of(name) == owner:
                for stream in STREAMS:
                    remove_files(os.path.join(self.logs_dir, f"{name}.{stream}.log"))
        log.debug("cleared the logs of %s in %s", owner, self.logs_dir)

    def forget(self, owner, settings=None):
        """Flush and close the writers of *owner*: its definition changed (to *settings*) or went.

        Its next writers are made with the new settings; the files stay.
        """
        for name in [name for name in self._writers if owner_of(name) == owner]:
            self._writers.pop(name).close()
        if settings is not None:
            self._settings[owner] = LogSettings(settings)
        elif owner != GLOBAL:
            self._settings.pop(owner, None)

    def flush(self, owner=None):
        """Write out what is buffered (for *owner*, or for every log)."""
        writers = self._writers if owner is None else self._owned.get(owner, {})
        for writer in writers.values():
            writer.flush()

    def release(self, owner):
        """Close and drop the writers of *owner* (an instance a scale-down removed); its files stay."""
        for name, writer in self._owned.pop(owner, {}).items():
            writer.close()
            self._writers.pop(name, None)

    def rename(self, old, new):
        """Give the logs of owner *old* (its own and its hooks') the name *new*: files and writers.

        An instance renamed (``web`` ↔ ``web.1``, SPEC §17) keeps its history: its
        files, rotated segments included, are renamed, and its open writers go on
        writing into them under the new name (so rotation uses it too). Files left
        on disk under *new* by an earlier instance are replaced, never mixed in.
        """
        self.flush(old)
        self.release(new)
        for name in log_names(self.logs_dir):
            if owner_of(name) == new:
                for stream in STREAMS:
                    remove_files(log_path(self.logs_dir, name, stream))
        for name in log_names(self.logs_dir):
            if owner_of(name) == old:
                _rename_files(self.logs_dir, name, new + name[len(old):])
        renamed = self._owned.setdefault(new, {})
        for name, writer in self._owned.pop(old, {}).items():
            self._writers.pop(name, None)
            writer.rename(self.logs_dir, new + name[len(old):])
            self._writers[writer.name] = renamed[writer.name] = writer
        if old in self._settings:
            self._settings[new] = self._settings.pop(old)

    def close(self):
        """Flush and close every file (the next write opens it again)."""
        for writer in self._writers.values():
            writer.close()



def _rename_files(logs_dir, old, new):
    """Rename both streams of log *old*, each segment, to log *new*."""
    for stream in STREAMS:
        for source, target in zip(segment_paths(log_path(logs_dir, old, stream)),
                                  segment_paths(log_path(logs_dir, new, stream))):
            try:
                os.rename(source, target)
            except FileNotFoundError:
                pass  # that stream or segment was never written
