"""circus: `circusd` in the foreground on a scratch ini, driven by circusctl.

The arbiter runs inside the circusd process (no stats daemon: `statsd = False`), so
circusd is the whole manager. Settings chosen for fairness, per watcher:
- circusctl cannot start watchers of the config in bulk unless they autostart
  with the daemon (`circusctl start` skips `autostart = False` watchers). So the
  daemon boots on a config without watchers, the watchers are then written into
  it, and the timed start command is `circusctl reloadconfig`, which adds and
  starts them: circus parses its config inside the timer, as Kepler bakes.
- `stop_children = True`: the stop signal reaches the service's children too.
- `stdout_stream.class = FileStream` with a filename and no `max_bytes`: every line
  kept, no rotation. No `time_format`: circus adds no timestamps.
- crash-restart: `respawn = True` (the default) and `max_retry = -1`. circus reaps
  and respawns on its `check_delay` tick (default 5 s), left as shipped: lowering
  it is a polling loop that costs idle CPU.
- stop passes `--waiting`, so circusctl returns when the processes have ended
  (without it circusctl returns before anything happened).
"""

import os
import shlex

from peers.base import Manager, write_file

DAEMON = """\
[circus]
endpoint = ipc://{dir}/ctl.sock
pubsub_endpoint = ipc://{dir}/pub.sock
statsd = False
# (no stats_endpoint: defining one turns the stats daemon on)
pidfile = {dir}/circusd.pid
"""

WATCHER = """
[watcher:{name}]
cmd = {command}
numprocesses = 1
respawn = {respawn}
max_retry = -1
stop_children = True
stdout_stream.class = FileStream
stdout_stream.filename = {logs}/{name}.stdout.log
stderr_stream.class = FileStream
stderr_stream.filename = {logs}/{name}.stderr.log
"""


class Circus(Manager):
    name = "circus"
    fairness = ("watchers added and started by `circusctl reloadconfig` (circusctl cannot start "
                "non-autostart watchers in bulk); `stop_children`; `stop --waiting`; FileStream without "
                "rotation, no timestamps; S4 `respawn`, `max_retry = -1`, default `check_delay` (5 s)")

    @property
    def config_file(self):
        return self.path("circus.ini")

    def env(self):
        return {**super().env(), "CIRCUSCTL_ENDPOINT": f"ipc://{self.workdir}/ctl.sock"}

    def ctl(self, *args):
        return [os.path.join(self.tools.peers_bin, "circusctl"), *args]

    def configure(self, services):
        self.services = tuple(services)
        logs = self.path("logs")
        os.makedirs(logs, exist_ok=True)
        self._watchers = "".join(WATCHER.format(name=service.name, command=shlex.join(service.argv), logs=logs,
                                                respawn=service.restart) for service in services)
        write_file(self.config_file, DAEMON.format(dir=self.workdir))

    def start_daemon(self):
        self.spawn_daemon([os.path.join(self.tools.peers_bin, "circusd"), self.config_file])
        self.wait_ready(self.ctl("status"))
        # Now that the daemon runs without watchers, the config gets them for `reloadconfig`.
        write_file(self.config_file, DAEMON.format(dir=self.workdir) + self._watchers)

    def start_command(self):
        return self.ctl("reloadconfig")

    def status_command(self):
        return self.ctl("status")

    def running(self):
        lines = self.run(self.ctl("status")).stdout.splitlines()
        return {line.split(":")[0] for line in lines if line.endswith(": active")}

    def stop_command(self):
        return self.ctl("stop", "--waiting")

    def shutdown_command(self):
        return self.ctl("quit")

    def manager_pids(self):
        return [self.daemon.pid] if self.daemon is not None else []  # [] before the daemon started

    def log_path(self, service_name):
        return self.path("logs", f"{service_name}.stdout.log")

    @classmethod
    def version(cls, tools):
        return "circus " + tools.output([os.path.join(tools.peers_bin, "circusd"), "--version"])
