"""What every tool under test offers the scenarios: one interface, four adapters.

A ``Manager`` is one tool as a whole product (its own daemon and its own CLI) living
in a scratch dir for one scenario run. Scenarios only ever call the methods below,
so each adapter is the single place that knows how its tool is configured and
driven, and which settings were chosen to make the comparison fair.
"""

import os
import subprocess
from dataclasses import dataclass

from procs import alive, wait_until

CLI_TIMEOUT = 120.0
DAEMON_READY_TIMEOUT = 30.0
DAEMON_EXIT_TIMEOUT = 60.0


@dataclass(frozen=True)
class Service:
    """One service as the scenarios describe it, before a tool's config syntax."""

    name: str
    argv: tuple
    restart: bool = False   # restart after every exit, at once (no back-off where the tool allows)


class CommandFailed(Exception):
    """A tool's CLI failed; the message carries what it printed."""


class Manager:
    """Base of the adapters: the scratch dir, the environment and running the CLI.

    Subclasses set ``name``, ``stamps_lines`` (whether the tool prefixes each log
    line with a timestamp) and ``fairness`` (the settings chosen, for the report),
    and implement the abstract methods.
    """

    name = None
    stamps_lines = False
    fairness = ""

    def __init__(self, workdir, tools):
        self.workdir = workdir
        self.tools = tools
        self.services = ()
        self.daemon = None          # the Popen of a daemon we run in the foreground
        self.daemon_log = os.path.join(workdir, "daemon.log")

    # -- to implement ------------------------------------------------------------------

    def configure(self, services):
        """Write the tool's config for *services* (before the daemon starts)."""
        raise NotImplementedError

    def start_daemon(self):
        """Start a fresh daemon for the config; return once its CLI gets answers."""
        raise NotImplementedError

    def start_command(self):
        """Return the argv that starts every configured service."""
        raise NotImplementedError

    def status_command(self):
        """Return the argv of the tool's human status command (S5)."""
        raise NotImplementedError

    def running(self):
        """Return the names of the services the tool's own status calls running."""
        raise NotImplementedError

    def stop_command(self):
        """Return the argv that stops every service (and returns when the tool says so)."""
        raise NotImplementedError

    def shutdown_command(self):
        """Return the argv that stops the daemon (its services with it)."""
        raise NotImplementedError

    def version_command(self):
        """Return the argv that prints the CLI's version without the daemon (S5), or None."""
        return None

    def follow_command(self, service):
        """Return the argv that follows *service*'s output live (S9), or None."""
        return None

    def manager_pids(self):
        """Return the pids of the tool's daemon process(es): what we charge CPU and memory to."""
        raise NotImplementedError

    def log_path(self, service_name):
        """Return the file where the tool stores the stdout of *service_name*."""
        raise NotImplementedError

    @classmethod
    def version(cls, tools):
        raise NotImplementedError

    # -- shared ------------------------------------------------------------------------

    def env(self):
        """The environment of every CLI call and daemon: minimal and the same for all tools."""
        return {"PATH": self.tools.path, "HOME": self.workdir, "LC_ALL": "C", "NO_COLOR": "1", "TERM": "dumb"}

    def path(self, *parts):
        return os.path.join(self.workdir, *parts)

    def run(self, argv, check=True, timeout=CLI_TIMEOUT):
        """Run one CLI command in the scratch dir; return the CompletedProcess (text)."""
        result = subprocess.run(argv, cwd=self.workdir, env=self.env(), capture_output=True, text=True,
                                timeout=timeout, stdin=subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise CommandFailed(f"{self.name}: {' '.join(argv)} exited {result.returncode}: "
                                f"{(result.stdout + result.stderr).strip()[-2000:]}")
        return result

    def spawn_daemon(self, argv):
        """Run a daemon in the foreground as our child, its output in ``daemon.log``."""
        with open(self.daemon_log, "ab") as log:
            self.daemon = subprocess.Popen(argv, cwd=self.workdir, env=self.env(), stdin=subprocess.DEVNULL,
                                           stdout=log, stderr=log, start_new_session=True)

    def wait_ready(self, argv):
        """Poll the CLI command *argv* until it succeeds; fail if the daemon dies or stays silent."""
        def answers():
            if self.daemon is not None and self.daemon.poll() is not None:
                raise CommandFailed(f"{self.name}: daemon exited {self.daemon.returncode}: {self.daemon_tail()}")
            return self.run(argv, check=False).returncode == 0

        if not wait_until(answers, DAEMON_READY_TIMEOUT, interval=0.05):
            raise CommandFailed(f"{self.name}: daemon did not answer within {DAEMON_READY_TIMEOUT:.0f}s")

    def shutdown(self):
        """Stop the daemon with its own command and wait until it is gone."""
        pids = self.manager_pids_or_none()
        try:
            self.run(self.shutdown_command(), timeout=DAEMON_EXIT_TIMEOUT)
        finally:
            if self.daemon is not None:
                try:
                    self.daemon.wait(DAEMON_EXIT_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.daemon.kill()
                    self.daemon.wait()
                    raise CommandFailed(f"{self.name}: daemon still running {DAEMON_EXIT_TIMEOUT:.0f}s "
                                        "after its shutdown command") from None
        if pids and not wait_until(lambda: not any(alive(pid) for pid in pids), DAEMON_EXIT_TIMEOUT):
            raise CommandFailed(f"{self.name}: daemon still running after its shutdown command")

    def manager_pids_or_none(self):
        try:
            return self.manager_pids()
        except (OSError, ValueError):
            return None

    def daemon_tail(self, size=2000):
        try:
            with open(self.daemon_log, errors="replace") as file:
                return file.read()[-size:]
        except OSError:
            return "(no daemon log)"


def write_file(path, text):
    with open(path, "w") as file:
        file.write(text)
    return path
