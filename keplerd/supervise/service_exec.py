"""The commands ``keplerctl exec`` runs as one service instance (SPEC §17), which end with it.

An exec'd command gets the instance's environment, user, working dir and limits,
carries the instance's stray mark and joins its cgroup (the running process's,
else one made for it while the command runs). So whatever ends the instance's run
or stops it ends the command and what it started too, as ``docker compose exec``'s
command dies with its container: a stop signals it with the service, the end of
the run kills what is left (its cgroup, or here by process group and mark).
"""

import os

from keplerd.supervise.oneoff import OneOff


class OneOffs:
    """The exec'd commands of one ``Service`` instance."""

    def __init__(self, service):
        self._service = service
        self._running = set()
        self.used = False  # a command ran since the last sweep: its strays may be left (``Service.stop``)

    def run(self, argv, on_output, tty=None):
        """Start *argv* as the instance runs; return the ``OneOff``. Raise ``process.SpawnError``."""
        service = self._service
        system, project = service.system, service.project
        spec = service.instance_spec()
        running = service.child is not None
        # A run's processes carry the mark it started with (renames keep it): join them under it.
        mark = service.mark if running else system.service_mark(project.id, service.name)
        cgroup = system.one_off_cgroup(service.child, project.id, service.name, spec.get("limits"))
        env = system.marked_env(spec["env"], project.state_dir, mark)
        try:
            command = OneOff({**spec, "env": env}, argv, on_output, tty, cgroup=cgroup)
        except BaseException:
            self._release(cgroup)
            raise
        command.cgroup = cgroup
        self._running.add(command)
        self.used = True
        return command

    def ended(self, command):
        """Forget *command*, which ended (its strays stay marked until the instance's next stop)."""
        self._running.discard(command)
        self._release(command.cgroup)

    def send_signal(self, signum):
        """Signal every running command's process group (the service is being stopped)."""
        for command in tuple(self._running):
            command.send_signal(signum)

    def kill(self):
        """Kill every running command with its process group and descendants (the run ended)."""
        for command in tuple(self._running):
            command.kill()
        self.used = False  # the caller sweeps their strays next

    def _release(self, cgroup):
        """Remove the cgroup made for commands of a stopped instance, once it is idle."""
        if cgroup is None or self._running:
            return
        service = self._service
        # A run of the instance may be about to join its cgroup (made, still empty): leave that one.
        if not (service.supervised and os.path.basename(cgroup) == service.name):
            service.system.remove_idle_cgroup(cgroup)  # a populated one stays (the run's, or strays')
