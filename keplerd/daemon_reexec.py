"""The daemon's side of ``daemon reexec`` (SPEC §20), as a part of ``Daemon``.

The old image waits for a quiet moment (no hook, probe, spawn or stop under way),
writes what each config hands over (``handover.py`` holds the file and the fds)
and execs the ``keplerd`` installed now; the new image adopts it at boot
(``_adopt``). ``daemon.py`` keeps the mailbox that asks for it
(``request_reexec``) and the boot that calls ``_adopt``: this is the part only a
reexec runs.
"""

import logging
import os
import time

import gevent

from keplerd import __version__, bakery, handover
from keplerd.supervise.events import FEED

log = logging.getLogger("keplerd")

# How long ``daemon reexec`` waits for a moment when no hook, probe, spawn or stop is under way.
REEXEC_QUIET_TIMEOUT = 30.0


class Reexec:
    """The ``daemon reexec`` half of ``Daemon`` (it holds the state these methods use)."""

    def _adopt(self, handed):
        """Carry on with the runtime an earlier image handed over; configs it did not know boot as usual."""
        carried = 0
        for project in self.registry.load_all():
            record = handed["configs"].get(project.id)
            if record is None:
                self._restore(project)
                continue
            project.take_over(record)
            carried += sum(service.supervised for service in project.services.values())
        log.info("resumed from the previous image (generation %d): %d supervised services carried over, "
                 "none restarted", self.generation, carried)

    def _reexec_or_say_why(self):
        try:
            return self.reexec()
        except Exception as error:  # a bug here must not end the daemon: it carries on as it was
            log.exception("re-exec failed")
            bakery.start_zygote()
            self._server.start_accepting()
            self._notifier.ready(self._status())
            return f"internal error: {error}"

    def reexec(self):
        """Hand the runtime to the ``keplerd`` installed now, in this process (SPEC §20).

        Returns the reason when the moment never came (the daemon then carries on as it was).
        """
        if self._shutting_down:
            return "the daemon is shutting down"
        log.info("re-executing: waiting until no hook, probe, spawn or stop is under way")
        self._notifier.reloading()
        self._server.stop_accepting()   # new clients wait in the socket's backlog
        # Reaping the zygote yields: before the quiet moment, never between the records and the exec
        # (a supervisor running there would reap an exit, a pump read lines, the records would lie).
        bakery.stop_zygote()
        if not self._wait_quiet(REEXEC_QUIET_TIMEOUT):
            bakery.start_zygote()
            self._server.start_accepting()
            self._notifier.ready(self._status())
            busy = [project.name for project in self.registry.projects.values() if not project.at_rest()]
            reason = (f"still busy after {REEXEC_QUIET_TIMEOUT:g}s "
                      f"({', '.join(busy) or 'hooks or probes running'}); nothing changed")
            log.warning("re-exec: %s", reason)
            return reason
        # From here to the exec nothing yields: no greenlet can change what is handed over.
        path = handover.path_in(self.state_dir)
        command = handover.exec_command(path, self._log_path)
        kept = []   # the services' output pipes and notify sockets
        configs = {}
        for project in self.registry.projects.values():
            configs[project.id] = project.hand_over()
            for service in configs[project.id]["services"].values():
                kept += [pump["fd"] for pump in service.get("pumps", ())]
                kept += [service["notify"]["fd"]] if "notify" in service else []
        record = {"pid": self.pid, "version": __version__, "started_at": self.started_at,
                  "generation": self.generation, "settings": self.settings.as_dict(),
                  "log_path": self._log_path, "listener_fd": self._listener.fileno(), "lock_fd": self._lock_fd,
                  "configs": configs, "events": FEED.hand_over()}
        handover.write(path, record, [self._listener.fileno(), self._lock_fd, *kept])
        log.info("re-executing %s (%d services handed over)", " ".join(command),
                 sum(len(config["services"]) for config in configs.values()))
        for handler in logging.getLogger().handlers:
            handler.flush()
        os.execve(command[0], command, {**os.environ, **self._systemd_env})

    def _wait_quiet(self, timeout):
        """Wait until every service is at rest and no hook or probe runs; False after *timeout*."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.registry.system.passing_children == 0 and all(
                    project.at_rest() for project in self.registry.projects.values()):
                return True
            gevent.sleep(0.01)
        return False
