"""Kepler: keplerd in the foreground on a scratch state dir, driven by keplerctl.

Settings: Kepler's defaults (every line timestamped, logs unbounded, `sys_env:
clear`), except `restart: {policy: always, backoff: 0}` for the crash-restart
scenario, because the peers restart a crashing service without back-off there.
"""

import hashlib
import json
import os

from peers.base import Manager, write_file


class Kepler(Manager):
    name = "kepler"
    stamps_lines = True
    fairness = ("installed from this working tree as a user would (not editable); defaults: every log line "
                "timestamped, logs unbounded; S4 `restart: {policy: always, backoff: 0}`")

    @property
    def state_dir(self):
        return self.path("state")

    @property
    def config_file(self):
        return self.path("kepler.yaml")

    def env(self):
        return {**super().env(), "KEPLER_DAEMON_PATH": self.state_dir}

    def ctl(self, *args):
        return [os.path.join(self.tools.kepler_bin, "keplerctl"), *args]

    def configure(self, services):
        self.services = tuple(services)
        config = {"services": {service.name: _service(service) for service in services}}
        # JSON is YAML: no YAML library needed on the benchmark's side.
        write_file(self.config_file, json.dumps(config, indent=2))

    def start_daemon(self):
        self.spawn_daemon([os.path.join(self.tools.kepler_bin, "keplerd")])
        self.wait_ready(self.ctl("daemon", "status"))

    def start_command(self):
        return self.ctl("-f", self.config_file, "start", "-d")

    def status_command(self):
        return self.ctl("-f", self.config_file, "ps")

    def running(self):
        rows = json.loads(self.run(self.ctl("-f", self.config_file, "ps", "--json")).stdout)
        return {row["name"] for row in rows if row["status"] == "running"}

    def stop_command(self):
        return self.ctl("-f", self.config_file, "stop")

    def shutdown_command(self):
        return self.ctl("daemon", "stop")

    def version_command(self):
        return self.ctl("--version")

    def follow_command(self, service):
        return self.ctl("-f", self.config_file, "logs", "--follow", "--tail", "0", service)

    def manager_pids(self):
        return [self.daemon.pid] if self.daemon is not None else []  # [] before the daemon started

    def log_path(self, service_name):
        # SPEC §1: the config's id is 16 hex chars of sha256 of its real path.
        config_id = hashlib.sha256(os.path.realpath(self.config_file).encode()).hexdigest()[:16]
        return os.path.join(self.state_dir, "configs", config_id, "logs", f"{service_name}.stdout.log")

    @classmethod
    def version(cls, tools):
        version = tools.output([os.path.join(tools.kepler_bin, "keplerctl"), "--version"])
        return f"{version} (commit {tools.kepler_commit})"


def _service(service):
    spec = {"command": list(service.argv)}
    if service.restart:
        spec["restart"] = {"policy": "always", "backoff": 0}
    return spec
