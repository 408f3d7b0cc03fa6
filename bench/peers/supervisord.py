"""supervisord: `supervisord -n` on a scratch config, driven by supervisorctl.

Settings chosen for fairness, per program:
- `autostart=false`: the services start with `supervisorctl start all`, the
  counterpart of `keplerctl start` (the daemon's own start is not measured).
- `startsecs=0`: a process counts as started once spawned, as in Kepler; the default
  (1 s) would hold every status at STARTING for a second.
- `stopasgroup=true`, `killasgroup=true`: signal the whole process group, as Kepler.
- `stdout_logfile=<file>`, `*_logfile_maxbytes=0`, `*_logfile_backups=0`: every
  line kept, no rotation (Kepler's default is unbounded). No timestamps.
- crash-restart: `autorestart=true`, `startretries=1000000`. supervisord still waits
  for its main loop's next turn (up to 1 s) before it respawns: its own back-off.
- `minfds=4096`: enough descriptors for 300 programs on any machine.
"""

import os
import shlex

from peers.base import Manager, write_file

DAEMON = """\
[unix_http_server]
file={dir}/supervisor.sock

[supervisord]
logfile={dir}/supervisord.log
pidfile={dir}/supervisord.pid
childlogdir={dir}/logs
minfds=4096
nodaemon=true

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{dir}/supervisor.sock
"""

PROGRAM = """
[program:{name}]
command={command}
autostart=false
autorestart={autorestart}
startsecs=0
startretries={startretries}
stopasgroup=true
killasgroup=true
stdout_logfile={logs}/{name}.stdout.log
stdout_logfile_maxbytes=0
stdout_logfile_backups=0
stderr_logfile={logs}/{name}.stderr.log
stderr_logfile_maxbytes=0
stderr_logfile_backups=0
"""


class Supervisord(Manager):
    name = "supervisord"
    fairness = ("`supervisorctl start all` of `autostart=false` programs (config parsed at daemon start, "
                "untimed); `startsecs=0`; `stopasgroup`, `killasgroup`; logs `maxbytes=0`, no backups, no "
                "timestamps; S4 `autorestart=true`, `startretries=1000000`: it still respawns only on its "
                "main loop's next turn, up to 1 s later")

    @property
    def config_file(self):
        return self.path("supervisord.conf")

    def ctl(self, *args):
        return [os.path.join(self.tools.peers_bin, "supervisorctl"), "-c", self.config_file, *args]

    def configure(self, services):
        self.services = tuple(services)
        logs = self.path("logs")
        os.makedirs(logs, exist_ok=True)
        text = DAEMON.format(dir=_escape(self.workdir))
        for service in services:
            text += PROGRAM.format(name=service.name, command=_escape(shlex.join(service.argv)),
                                   logs=_escape(logs), autorestart=str(service.restart).lower(),
                                   startretries=1000000 if service.restart else 3)
        write_file(self.config_file, text)

    def start_daemon(self):
        self.spawn_daemon([os.path.join(self.tools.peers_bin, "supervisord"), "-n", "-c", self.config_file])
        self.wait_ready(self.ctl("pid"))

    def start_command(self):
        return self.ctl("start", "all")

    def status_command(self):
        return self.ctl("status")

    def running(self):
        # `status` exits 3 while some program is not running: that is an answer, not an error.
        lines = self.run(self.ctl("status"), check=False).stdout.splitlines()
        return {fields[0] for fields in map(str.split, lines) if len(fields) > 1 and fields[1] == "RUNNING"}

    def stop_command(self):
        return self.ctl("stop", "all")

    def shutdown_command(self):
        return self.ctl("shutdown")

    def manager_pids(self):
        return [self.daemon.pid] if self.daemon is not None else []  # [] before the daemon started

    def log_path(self, service_name):
        return self.path("logs", f"{service_name}.stdout.log")

    @classmethod
    def version(cls, tools):
        return "supervisord " + tools.output([os.path.join(tools.peers_bin, "supervisord"), "--version"])


def _escape(text):
    """supervisord expands `%(name)s` in its config: a literal `%` must be doubled."""
    return text.replace("%", "%%")
