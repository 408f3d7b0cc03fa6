"""The file watch of one service (SPEC §10 ``restart.watch``): armed from start to stop.

Armed when the service starts, before its first spawn, so no change is missed;
it stays armed while the service is down by its own doing (back-off, exited,
killed, failed, gave up), and only a stop disarms it. A burst of changes restarts
the service, or starts it again, through ``Project.request_restart``, never from
the watcher's own greenlet: the restart stops the service, which disarms the watcher.
"""

import logging

from keplerd.logs.format import kepler_note

log = logging.getLogger("keplerd.service")


class ServiceWatch:
    """Watches *service*'s ``restart.watch`` patterns from its start to its stop."""

    def __init__(self, service):
        self.service = service
        self._watcher = None
        self._restart = None

    @property
    def watched(self):
        """How many directories are watched now (None: no watch armed)."""
        return self._watcher.watched if self._watcher is not None else None

    @property
    def armed(self):
        return self._watcher is not None

    def arm(self):
        service = self.service
        patterns = service.spec["restart"]["watch"]
        if not patterns:
            return
        # Loaded by the first service that watches: inotify (ctypes) costs the others nothing.
        from keplerd.model.globs import GlobSet
        from keplerd.supervise.watch import Watcher, daemon_files

        service.set_watch_error(None)
        self._watcher = Watcher(GlobSet(patterns, service.spec["working_dir"]), self._changed, self._failed,
                                spawn=service.spawn_helper("file watch"),
                                exclude=daemon_files(service.project.state_dir),
                                open_inotify=service.system.open_inotify)
        self._watcher.arm()

    def disarm(self):
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.disarm()

    def _changed(self, path):
        """A burst of changes ended: restart the service (unless a restart is on its way)."""
        if self._restart is not None and not self._restart.dead:
            return  # the new process will see this change too
        from keplerd.supervise.watch import describe_path  # loaded: arm made the watcher

        service = self.service
        change = describe_path(path, service.spec["working_dir"])
        service.log.write("stderr", kepler_note(f"{service.name} restarting: watch: {change} changed"))
        log.info("%s: restarting %s: watch: %s changed", service.project.name, service.name, change)
        self._restart = service.project.request_restart([service.name], "watch")

    def _failed(self, message):
        """Report a watch that cannot (fully) work; the service keeps running."""
        service = self.service
        log.error("%s/%s: %s", service.project.name, service.name, message)
        service.log.write("stderr", kepler_note(f"{service.name}: {message}"))
        service.set_watch_error(message)
