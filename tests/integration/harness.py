"""A real keplerd in a temporary state dir, driven by the real keplerctl.

Tests synchronise on state by polling with a deadline (``wait_for``), never on
fixed sleeps. Everything a test starts is killed by recorded pid when it ends.
"""

import functools
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

BIN = os.path.dirname(sys.executable)
KEPLERCTL = os.path.join(BIN, "keplerctl")
DEFAULT_TIMEOUT = 15.0
# Where keplerd puts its cgroups outside systemd (SPEC §19).
CGROUP_ROOTS = ("/sys/fs/cgroup/unified/kepler", "/sys/fs/cgroup/kepler")


def alive(process):
    """Tell whether *process* (a psutil.Process taken earlier) still runs: same pid, same start, no zombie.

    One call that never raises: a process may be reaped between two psutil calls.
    """
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def pid_alive(pid):
    """Tell whether a process runs at *pid* (not a zombie), without raising."""
    try:
        return alive(psutil.Process(pid))
    except psutil.NoSuchProcess:
        return False


def wait_for(predicate, timeout=DEFAULT_TIMEOUT, interval=0.02, message="condition"):
    """Poll *predicate* until it returns something truthy; return that, or fail after *timeout*."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


@functools.cache
def _cli_fails_as(user):
    """Return why keplerctl of this checkout cannot run as *user* (None when it can)."""
    command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", KEPLERCTL, "--version"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    return None if done.returncode == 0 else (done.stderr.strip() or f"exit code {done.returncode}")


def skip_unless_cli_runs_as(user):
    """Skip a test that runs the CLI as a throwaway user when the checkout is out of that user's reach.

    A checkout (or venv) under a 0700 directory cannot be run by anyone else: the
    test then says so instead of failing with "Permission denied".
    """
    failure = _cli_fails_as(user)
    if failure is not None:
        pytest.skip(f"keplerctl of this checkout cannot run as user {user} ({failure}): "
                    "put the checkout where other users can read it to run this test")


class Kepler:
    """One daemon under test, its state dir and a work dir for configs."""

    def __init__(self, root, daemon_args=()):
        self.root = root
        self.state_dir = os.path.join(root, "state")
        self.workdir = os.path.join(root, "work")
        os.makedirs(self.workdir, exist_ok=True)
        self.daemon_args = list(daemon_args)
        self.daemon = None
        self.daemon_log = os.path.join(root, "keplerd.log")
        self._known_pids = {}

    # -- daemon ------------------------------------------------------------------------

    def env(self, **extra):
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/root",
               "KEPLER_DAEMON_PATH": self.state_dir, "NO_COLOR": "1"}
        env.update(extra)
        return env

    def isolation_args(self):
        """Keep the daemon off the real /etc/kepler: its own keplerd.conf and autostart dir."""
        conf = os.path.join(self.root, "keplerd.conf")
        if not os.path.exists(conf):
            with open(conf, "w") as file:
                file.write(f"autostart_dir: {os.path.join(self.root, 'conf.d')}\n")
        return ["--config", conf]

    def start_daemon(self, *extra_args, env=None):
        with open(self.daemon_log, "ab") as log:
            self.daemon = subprocess.Popen(
                [sys.executable, "-m", "keplerd", *self.isolation_args(), *self.daemon_args, *extra_args],
                env=self.env(**(env or {})), stdout=log, stderr=log, start_new_session=True)
        self._remember(self.daemon.pid)
        # A connect is cheap, a keplerctl is a process: polling with keplerctl alone would take the CPU
        # the starting daemon needs. Once the socket answers, keplerctl must say it is up.
        wait_for(lambda: self.daemon.poll() is not None or self._socket_accepts(), message="keplerd's socket")
        wait_for(lambda: self.daemon.poll() is not None or self.ctl("daemon", "status", check=False).returncode == 0,
                 message="keplerd to answer")
        assert self.daemon.poll() is None, f"keplerd exited early:\n{self.read_daemon_log()}"
        return self.daemon

    def _socket_accepts(self):
        with socket.socket(socket.AF_UNIX) as client:
            try:
                client.connect(os.path.join(self.state_dir, "kepler.sock"))
            except OSError:
                return False
        return True

    def stop_daemon(self, timeout=30):
        if self.daemon is None or self.daemon.poll() is not None:
            return
        self._collect_descendants()
        self.daemon.send_signal(signal.SIGTERM)
        try:
            self.daemon.wait(timeout)
        except subprocess.TimeoutExpired:
            self.daemon.kill()
            self.daemon.wait()

    def kill_daemon(self):
        """SIGKILL the daemon (a crash), leaving its services running."""
        self._collect_descendants()
        self.daemon.kill()
        self.daemon.wait()

    def read_daemon_log(self):
        with open(self.daemon_log, errors="replace") as file:
            return file.read()

    def _collect_descendants(self):
        try:
            for child in psutil.Process(self.daemon.pid).children(recursive=True):
                self._remember(child.pid)
        except psutil.Error:
            pass

    def _remember(self, pid):
        try:
            self._known_pids[pid] = psutil.Process(pid).create_time()
        except psutil.Error:
            pass

    def cleanup(self):
        """Stop the daemon and kill anything it or its services left behind."""
        try:
            self.stop_daemon(timeout=20)
        finally:
            if self.daemon is not None and self.daemon.poll() is None:
                self.daemon.kill()
            for pid, created in self._known_pids.items():
                kill_if_same(pid, created)
            self._remove_cgroups()

    def _remove_cgroups(self):
        """Kill and remove the cgroups of this daemon's configs (an escaped process included)."""
        configs = os.path.join(self.state_dir, "configs")
        if not os.path.isdir(configs):
            return
        for config_id in os.listdir(configs):
            for root in CGROUP_ROOTS:
                remove_cgroup_tree(os.path.join(root, config_id))

    # -- keplerctl ---------------------------------------------------------------------

    def ctl(self, *args, cwd=None, env=None, check=True, timeout=60, user=None):
        """Run the real keplerctl; return the CompletedProcess (text)."""
        command = [KEPLERCTL, *args]
        if user is not None:
            skip_unless_cli_runs_as(user)
            command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", *command]
        result = subprocess.run(command, cwd=cwd or self.workdir, env=env or self.env(), capture_output=True,
                                text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"keplerctl {' '.join(args)} failed ({result.returncode}):\n"
                                 f"stdout: {result.stdout}\nstderr: {result.stderr}\n"
                                 f"daemon log tail:\n{self.read_daemon_log()[-3000:]}")
        return result

    def write(self, name, text, directory=None):
        path = os.path.join(directory or self.workdir, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as file:
            file.write(textwrap.dedent(text))
        return path

    def config(self, text, name="kepler.yaml"):
        return self.write(name, text)

    def ps(self, *args, **kwargs):
        """Return ``ps --json`` as a dict by service name."""
        rows = json.loads(self.ctl("ps", "--json", *args, **kwargs).stdout)
        for row in rows:
            if row.get("pid"):
                self._remember(row["pid"])
        return {row["name"]: row for row in rows}

    def status(self, name, *args, **kwargs):
        row = self.ps(*args, **kwargs).get(name)
        return row["status"] if row else None

    def wait_status(self, name, wanted, *args, timeout=DEFAULT_TIMEOUT, **kwargs):
        wanted = {wanted} if isinstance(wanted, str) else set(wanted)

        def row_in_wanted_status():
            row = self.ps(*args, **kwargs).get(name)  # one answer, judged and returned as it was
            return row if row and row.get("status") in wanted else None

        return wait_for(row_in_wanted_status, timeout=timeout, message=f"{name} to be {wanted}")

    def inspect(self, *args, **kwargs):
        return json.loads(self.ctl("inspect", *args, **kwargs).stdout)

    def inspect_path(self, config="kepler.yaml", offline=True):
        """Return the state dir of a config of the work dir (computed, no daemon needed)."""
        from keplerd.paths import config_id

        return os.path.join(self.state_dir, "configs", config_id(os.path.join(self.workdir, config)))

    def logs(self, *args, **kwargs):
        return self.ctl("logs", *args, **kwargs).stdout.splitlines()


def kill_if_same(pid, created):
    """SIGKILL *pid* (and its group) if it is still the process that started at *created*."""
    try:
        process = psutil.Process(pid)
        if abs(process.create_time() - created) > 0.01:
            return
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        process.kill()
    except psutil.Error:
        pass


def pids_with_marker(marker, kepler=None):
    """Return the pids of live processes whose argv[0] starts with *marker* (``exec -a``).

    With *kepler*, only those its daemon started (by the state dir in their environment): another
    suite on the machine may run the same test, with the same marker, at the same time.
    """
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        try:
            if process.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if not (process.info["cmdline"] or [""])[0].startswith(marker):
                continue
            if kepler is None or process.environ().get("KEPLER_STATE_DIR") == kepler.state_dir:
                found.append(process.pid)
        except psutil.Error:
            continue
    return found


def remove_cgroup_tree(path):
    """Kill every process of the cgroup *path* and remove it, children first."""
    if not os.path.isdir(path):
        return
    for name in os.listdir(path):
        if os.path.isdir(os.path.join(path, name)):
            remove_cgroup_tree(os.path.join(path, name))
    try:
        with open(os.path.join(path, "cgroup.kill"), "w") as kill:
            kill.write("1")
        wait_for(lambda: "populated 0" in open(os.path.join(path, "cgroup.events")).read(),
                 message=f"cgroup {path} to empty")
        os.rmdir(path)
    except FileNotFoundError:
        pass
