"""pm2: its God daemon in a scratch PM2_HOME, driven by the pm2 CLI.

pm2 always daemonizes: `pm2 ping` starts the God daemon, whose pid is in
`$PM2_HOME/pm2.pid`; that one node process is the manager. Settings chosen for
fairness, per app of an ecosystem file:
- `interpreter: none`: the command runs directly (as with the other tools), not
  under node.
- `autorestart: false` unless the scenario restarts; then `max_restarts: 1000000`
  (pm2 gives up after 16 quick restarts by default) and `restart_delay: 0`.
- `out_file`/`error_file` with `merge_logs: true`: one file per stream, no pm_id
  suffix. pm2 does not rotate without the pm2-logrotate module; no timestamps
  (`time: false`, the default).
- stop: `pm2 stop all` (pm2 sends SIGINT by default, which ends `sleep` just as well).
"""

import json
import os

from peers.base import Manager, write_file


class Pm2(Manager):
    name = "pm2"
    fairness = ("`pm2 start ecosystem.json` with `interpreter: none`; `merge_logs` into `out_file`, no "
                "rotation module, no timestamps; status `pm2 jlist` (polling) and `pm2 ls` (S5); S4 "
                "`max_restarts: 1000000`, `restart_delay: 0`")

    @property
    def ecosystem(self):
        return self.path("ecosystem.json")

    def env(self):
        return {**super().env(), "PM2_HOME": self.path("pm2home")}

    def ctl(self, *args):
        return [self.tools.pm2, *args]

    def configure(self, services):
        self.services = tuple(services)
        os.makedirs(self.path("logs"), exist_ok=True)
        apps = [self._app(service) for service in services]
        write_file(self.ecosystem, json.dumps({"apps": apps}, indent=2))

    def _app(self, service):
        app = {"name": service.name, "script": service.argv[0], "args": list(service.argv[1:]),
               "interpreter": "none", "autorestart": service.restart, "merge_logs": True,
               "out_file": self.path("logs", f"{service.name}.stdout.log"),
               "error_file": self.path("logs", f"{service.name}.stderr.log")}
        if service.restart:
            app.update(max_restarts=1000000, restart_delay=0)
        return app

    def start_daemon(self):
        self.run(self.ctl("ping"))
        self.wait_ready(self.ctl("ping"))

    def start_command(self):
        return self.ctl("start", self.ecosystem)

    def status_command(self):
        return self.ctl("ls")

    def running(self):
        out = self.run(self.ctl("jlist")).stdout
        # pm2 may print notices before the JSON document.
        apps = json.loads(out[out.index("["):])
        return {app["name"] for app in apps if app["pm2_env"]["status"] == "online"}

    def stop_command(self):
        return self.ctl("stop", "all")

    def shutdown_command(self):
        return self.ctl("kill")

    def manager_pids(self):
        with open(self.path("pm2home", "pm2.pid")) as file:
            return [int(file.read().strip())]

    def log_path(self, service_name):
        return self.path("logs", f"{service_name}.stdout.log")

    @classmethod
    def version(cls, tools):
        with open(os.path.join(os.path.dirname(os.path.realpath(tools.pm2)), "..", "package.json")) as file:
            version = json.load(file)["version"]
        return f"pm2 {version} (node {tools.output(['node', '--version'])})"
