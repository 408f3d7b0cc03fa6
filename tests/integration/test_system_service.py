"""keplerd as a system service: keplerd.conf, autostart, SIGHUP, sd_notify, --daemonize, init script.

Every daemon runs on temporary paths given by flags and the environment; the
real /etc/kepler and /var/lib/kepler are never read or written.
"""

import os
import signal
import socket
import subprocess
import time
import uuid

import psutil
import pytest

from tests.integration.harness import BIN, KEPLERCTL, Kepler, kill_if_same, wait_for

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KEPLERD = os.path.join(BIN, "keplerd")
INIT_SCRIPT = os.path.join(REPO, "etc", "init.d", "keplerd")
SLEEPER = "services:\n  {name}:\n    command: [sleep, '1000']\n"


class System:
    """The /etc/kepler of one test: keplerd.conf and an autostart dir, under the test's root."""

    def __init__(self, kepler):
        self.kepler = kepler
        self.conf = kepler.isolation_args()[1]  # the harness gives each daemon this keplerd.conf
        self.autostart = os.path.join(kepler.root, "conf.d")
        os.makedirs(self.autostart)
        self.settings(f"autostart_dir: {self.autostart}\n")

    def settings(self, text):
        with open(self.conf, "w") as file:
            file.write(text)

    def add(self, name, text):
        return self.kepler.write(name, text, directory=self.autostart)

    def ps(self, config):
        return self.kepler.ps("-f", config)


@pytest.fixture
def system(kepler_root):
    kepler = Kepler(kepler_root)
    try:
        yield System(kepler)
    finally:
        kepler.cleanup()


@pytest.fixture
def daemon_pids():
    """Pids of daemons a test put in the background; stopped gracefully, then killed, at the end."""
    pids = []
    yield pids
    for pid in pids:
        stop_pid(pid)


def stop_pid(pid, timeout=20):
    """SIGTERM a daemon we are not the parent of; SIGKILL it if it is still there after *timeout*."""
    try:
        process = psutil.Process(pid)
        created = process.create_time()
        process.send_signal(signal.SIGTERM)
    except psutil.NoSuchProcess:
        return
    try:
        wait_for(lambda: not _alive(pid), timeout=timeout, message=f"daemon {pid} to exit")
    except AssertionError:
        kill_if_same(pid, created)


def _alive(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


# -- keplerd.conf and autostart ----------------------------------------------------------


def test_an_invalid_keplerd_conf_stops_the_daemon_with_every_located_error(system):
    system.settings("log_level: loud\nlua_time_limit: 2 seconds\n")
    result = subprocess.run([KEPLERD, "--config", system.conf], env=system.kepler.env(),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert f"keplerd: {system.conf}: log_level: invalid value 'loud'" in result.stderr
    assert f"keplerd: {system.conf}: lua_time_limit: invalid duration '2 seconds'" in result.stderr
    missing = subprocess.run([KEPLERD, "--config", system.conf + ".missing"], env=system.kepler.env(),
                             capture_output=True, text=True, timeout=30)
    assert missing.returncode == 1 and "keplerd.conf.missing: no such file" in missing.stderr


def test_autostart_starts_the_valid_configs_and_logs_the_invalid_one(system):
    good = system.add("good.yaml", SLEEPER.format(name="web"))
    bad = system.add("bad.yaml", "services:\n  api:\n    command: [sleep, '1000']\n    stop_signal: SIGNOPE\n")
    system.kepler.start_daemon()
    # READY comes after autostart: the config is loaded by the time the socket answers.
    assert system.ps(good)["web"]["status"] in ("starting", "running")
    system.kepler.wait_status("web", "running", "-f", good)
    log = system.kepler.read_daemon_log()
    assert f"{bad}: services.api.stop_signal: invalid signal 'SIGNOPE'" in log
    assert f"skipping {bad}" in log
    assert system.ps(bad) == {}


def test_autostarted_configs_see_a_minimal_path_and_nothing_of_the_daemon(system):
    config = system.add("env.yaml", "services:\n  show:\n    command: [env]\n    sys_env: inherit\n")
    system.kepler.start_daemon(env={"SECRET_OF_THE_DAEMON": "leaked"})
    system.kepler.wait_status("show", "exited", "-f", config)
    logs = system.kepler.ctl("-f", config, "logs").stdout.splitlines()
    lines = [line.split(" | ", 1)[1] for line in logs]
    # The stray mark (KEPLER_SERVICE_ID, KEPLER_STATE_DIR) is the daemon's only addition.
    marks = [line for line in lines if line.startswith(("KEPLER_SERVICE_ID=", "KEPLER_STATE_DIR="))]
    assert len(marks) == 2
    assert [line for line in lines if line not in marks] == [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]


def test_a_restored_autostart_config_keeps_what_the_user_stopped(system):
    config = system.add("app.yaml", SLEEPER.format(name="web"))
    system.kepler.start_daemon()
    system.kepler.wait_status("web", "running", "-f", config)
    system.kepler.ctl("-f", config, "stop")
    system.kepler.stop_daemon()  # SIGTERM: the same graceful shutdown as `daemon stop`
    assert system.kepler.daemon.returncode == 0
    system.kepler.start_daemon()
    assert system.kepler.status("web", "-f", config) == "stopped"
    assert system.kepler.read_daemon_log().count(f"baked {config}") == 1


def test_sighup_rereads_keplerd_conf_and_starts_configs_added_since(system):
    first = system.add("first.yaml", SLEEPER.format(name="one"))
    system.kepler.start_daemon()
    system.kepler.wait_status("one", "running", "-f", first)
    second = system.add("second.yaml", SLEEPER.format(name="two"))
    system.settings(f"autostart_dir: {system.autostart}\ndefault_stop_grace_period: 3s\n")
    system.kepler.daemon.send_signal(signal.SIGHUP)
    system.kepler.wait_status("two", "running", "-f", second)
    assert system.kepler.inspect("-f", second)["services"]["two"]["config"]["stop_grace_period"] == 3.0
    assert system.kepler.inspect("-f", first)["services"]["one"]["config"]["stop_grace_period"] == 10.0
    assert system.kepler.read_daemon_log().count(f"baked {first}") == 1, "a loaded config is not baked again"
    # A broken file is reported and the previous settings stay; the daemon carries on.
    system.settings("log_level: loud\n")
    system.kepler.daemon.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload: keeping the previous settings" in system.kepler.read_daemon_log(),
             message="the reload to be refused")
    assert system.kepler.ctl("daemon", "status").returncode == 0


# -- systemd ---------------------------------------------------------------------------


class NotifySocket:
    """A datagram socket in the abstract namespace standing in for systemd's."""

    def __init__(self):
        self.name = f"@kepler-test-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(b"\0" + self.name[1:].encode())

    def drain(self):
        """Forget the messages already received."""
        self.sock.setblocking(False)
        try:
            while self.sock.recv(4096):
                pass
        except BlockingIOError:
            pass  # nothing left
        finally:
            self.sock.setblocking(True)

    def until(self, line, timeout=15):
        """Return the messages received up to the first holding *line* (each a list of lines)."""
        messages, deadline = [], time.monotonic() + timeout
        while True:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                message = self.sock.recv(4096).decode().splitlines()
            except TimeoutError:
                raise AssertionError(f"no {line} within {timeout}s; got {messages}") from None
            messages.append(message)
            if line in message:
                return messages


@pytest.fixture
def notify_socket():
    notify = NotifySocket()
    yield notify
    notify.sock.close()


def test_sd_notify_ready_reloading_watchdog_and_stopping(system, notify_socket):
    config = system.add("app.yaml", SLEEPER.format(name="web"))
    system.kepler.start_daemon(env={"NOTIFY_SOCKET": notify_socket.name, "WATCHDOG_USEC": "200000"})
    notify_socket.until("READY=1")
    # Ready means the socket answers and the autostart config is loaded.
    assert system.kepler.ctl("daemon", "status").returncode == 0
    assert "web" in system.ps(config)
    # Pings every 100 ms (half of WATCHDOG_USEC) from the event loop: 3 intervals take >= 0.3 s.
    notify_socket.drain()
    notify_socket.until("WATCHDOG=1")
    started = time.monotonic()
    for _ in range(3):
        notify_socket.until("WATCHDOG=1")
    assert time.monotonic() - started > 0.25  # paced, not a burst (no upper bound: the machine may be busy)
    system.kepler.daemon.send_signal(signal.SIGHUP)
    reload_messages = notify_socket.until("RELOADING=1")
    assert reload_messages[-1][1].startswith("MONOTONIC_USEC=")
    notify_socket.until("READY=1")
    system.kepler.daemon.send_signal(signal.SIGTERM)
    notify_socket.until("STOPPING=1")
    assert system.kepler.daemon.wait(30) == 0


def test_reexec_says_reloading_then_ready_to_systemd_and_keeps_the_pid(system, notify_socket):
    config = system.add("app.yaml", SLEEPER.format(name="web"))
    system.kepler.start_daemon(env={"NOTIFY_SOCKET": notify_socket.name})
    notify_socket.until("READY=1")
    web = system.ps(config)["web"]["pid"]
    system.kepler.ctl("daemon", "reexec")
    notify_socket.until("RELOADING=1")
    notify_socket.until("READY=1")
    assert system.kepler.daemon.poll() is None, "exec keeps the pid systemd watches"
    assert system.ps(config)["web"]["pid"] == web


def test_the_systemd_unit_uses_notify_and_lets_keplerd_stop_its_services():
    with open(os.path.join(REPO, "etc", "systemd", "keplerd.service")) as file:
        unit = dict(line.strip().split("=", 1) for line in file if "=" in line and not line.startswith("#"))
    assert unit["Type"] == "notify"
    assert unit["KillMode"] == "mixed"
    assert unit["ExecStart"] == "/usr/local/bin/keplerd"
    assert unit["ExecReload"] == "/usr/local/bin/keplerctl daemon reexec"
    assert unit["WatchdogSec"] and unit["Restart"] == "on-failure"


# -- --daemonize and the init script -----------------------------------------------------


def test_daemonize_returns_once_the_socket_answers_and_writes_the_pid_file(system, daemon_pids):
    config = system.add("app.yaml", SLEEPER.format(name="web"))
    kepler = system.kepler
    result = subprocess.run([KEPLERD, "--config", system.conf, "--daemonize"], env=kepler.env(),
                            capture_output=True, text=True, timeout=60)
    with open(os.path.join(kepler.state_dir, "kepler.pid")) as file:
        pid = int(file.read())
    daemon_pids.append(pid)
    assert result.returncode == 0, result.stderr
    # No polling: the daemon answers, with its autostart config loaded, the moment --daemonize returns.
    status = kepler.ctl("daemon", "status", "--json")
    assert f'"pid": {pid}' in status.stdout
    assert "web" in system.ps(config)
    daemon = psutil.Process(pid)
    assert "keplerd" in " ".join(daemon.cmdline())
    assert os.getsid(pid) != pid, "the daemon is not a session leader (it cannot get a terminal)"
    assert os.getsid(pid) != os.getsid(0)
    assert "ready on" in open(os.path.join(kepler.state_dir, "keplerd.log")).read()


def test_daemonize_exits_1_with_the_reason_when_the_daemon_cannot_start(system):
    system.kepler.start_daemon()
    second = subprocess.run([KEPLERD, "--config", system.conf, "--daemonize"], env=system.kepler.env(),
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 1
    assert second.stderr.startswith("keplerd: ") and "running" in second.stderr
    assert system.kepler.ctl("daemon", "status").returncode == 0


def test_keplerctl_daemon_start_detached_returns_a_ready_daemon(system, daemon_pids):
    # keplerctl runs the keplerd beside it: here one that reads the test's keplerd.conf.
    bin_dir = os.path.join(system.kepler.root, "bin")
    os.makedirs(bin_dir)
    os.symlink(KEPLERCTL, os.path.join(bin_dir, "keplerctl"))
    system.kepler.write("keplerd", f"#!/bin/sh\nexec {KEPLERD} --config {system.conf} \"$@\"\n", bin_dir)
    os.chmod(os.path.join(bin_dir, "keplerd"), 0o755)
    config = system.add("app.yaml", SLEEPER.format(name="web"))
    result = subprocess.run([os.path.join(bin_dir, "keplerctl"), "daemon", "start", "-d"],
                            env=system.kepler.env(), capture_output=True, text=True, timeout=60)
    with open(os.path.join(system.kepler.state_dir, "kepler.pid")) as file:
        daemon_pids.append(int(file.read()))
    assert result.returncode == 0, result.stderr
    assert "web" in system.ps(config)
    again = subprocess.run([os.path.join(bin_dir, "keplerctl"), "daemon", "start", "-d"],
                           env=system.kepler.env(), capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "running" in again.stderr
    system.kepler.ctl("daemon", "stop")
    assert not _alive(daemon_pids[0])


def _init(system, action):
    env = system.kepler.env(KEPLERD=KEPLERD, KEPLERD_CONF=system.conf, STOP_TIMEOUT="30",
                            LOGFILE=os.path.join(system.kepler.root, "init.log"),
                            KEPLERD_DEFAULTS=os.path.join(system.kepler.root, "no-defaults"))
    return subprocess.run(["sh", INIT_SCRIPT, action], env=env, capture_output=True, text=True, timeout=60)


def test_the_init_script_starts_reports_reloads_and_stops_the_daemon(system, daemon_pids):
    config = system.add("app.yaml", SLEEPER.format(name="web"))
    pid_file = os.path.join(system.kepler.state_dir, "kepler.pid")
    assert _init(system, "status").returncode == 3
    started = _init(system, "start")
    assert started.returncode == 0, started.stdout + started.stderr
    pid = int(open(pid_file).read())
    daemon_pids.append(pid)
    status = _init(system, "status")
    assert status.returncode == 0 and f"running (pid {pid})" in status.stdout
    assert _init(system, "start").returncode == 0, "starting a running daemon is fine"
    service = system.kepler.wait_status("web", "running", "-f", config)["pid"]
    second = system.add("second.yaml", SLEEPER.format(name="two"))
    assert _init(system, "reload").returncode == 0
    system.kepler.wait_status("two", "running", "-f", second)
    assert _init(system, "stop").returncode == 0
    assert not _alive(pid) and not _alive(service)
    assert _init(system, "status").returncode == 3
    assert _init(system, "stop").returncode == 0, "stopping a stopped daemon is fine"
    assert "ready on" in open(os.path.join(system.kepler.root, "init.log")).read()


def test_the_init_script_says_when_the_daemon_died(system, daemon_pids):
    assert _init(system, "start").returncode == 0
    pid = int(open(os.path.join(system.kepler.state_dir, "kepler.pid")).read())
    daemon_pids.append(pid)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not _alive(pid), message="the daemon to die")
    status = _init(system, "status")
    assert status.returncode == 1 and "not running, but" in status.stdout
    restarted = _init(system, "restart")
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    daemon_pids.append(int(open(os.path.join(system.kepler.state_dir, "kepler.pid")).read()))
    assert _init(system, "status").returncode == 0


def test_the_init_script_has_lsb_headers():
    with open(INIT_SCRIPT) as file:
        text = file.read()
    header = text.split("### BEGIN INIT INFO\n", 1)[1].split("### END INIT INFO", 1)[0]
    fields = {line[2:].split(":", 1)[0] for line in header.splitlines() if ":" in line}
    assert {"Provides", "Required-Start", "Required-Stop", "Default-Start", "Default-Stop",
            "Short-Description"} <= fields
    assert subprocess.run(["sh", "-n", INIT_SCRIPT]).returncode == 0
