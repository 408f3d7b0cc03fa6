"""Health probes in-process: a probe leaves nothing behind, and a dead monitor fails its service (SPEC §8, §18)."""

import os
import time

import gevent
import pytest
from gevent import socket
from gevent.pool import Group

from keplerd.model import states
from keplerd.supervise import health
from keplerd.supervise.service import Service
from keplerd.supervise.system import System
from tests.unit.fake_project import SPEC, FakeProject

SERVICE = {"env": {"PATH": "/usr/bin:/bin"}, "working_dir": "/"}


def group_is_gone(pgid, timeout=10.0):
    """Poll until no process is left in group *pgid*; return whether it emptied within *timeout*."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        gevent.sleep(0.02)
    return False


def open_fds():
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def helpers():
    group = Group()
    yield group
    group.kill()


def test_a_passing_probe_leaves_nothing_running(helpers, tmp_path):
    pidfile = tmp_path / "pgid"
    health.probe_command(["true"], SERVICE, 10, helpers.spawn)  # the hub's own fds (child watcher) exist now
    fds = open_fds()
    result = health.probe_command(["sh", "-c", f"echo $$ > {pidfile}; sleep 20 & echo done"], SERVICE, 10,
                                  helpers.spawn)
    assert result.passed and result.output == "done\n"
    assert group_is_gone(int(pidfile.read_text())), "the probe's background sleep outlived it"
    assert open_fds() == fds, "the probe's pipe stayed open"


def test_a_probe_that_times_out_is_killed_with_its_group(helpers, tmp_path):
    pidfile = tmp_path / "pgid"
    result = health.probe_command(["sh", "-c", f"echo $$ > {pidfile}; echo started; sleep 30 & wait"], SERVICE,
                                  0.3, helpers.spawn)
    assert not result.passed and result.exit_code is None
    assert result.output.startswith("started\n") and result.output.endswith("(probe timed out after 0.3s)")
    assert group_is_gone(int(pidfile.read_text()))


def test_a_probe_that_cannot_start_fails_with_the_reason(helpers):
    result = health.probe_command(["no-such-probe-program"], SERVICE, 5, helpers.spawn)
    assert not result.passed and result.output == "cannot run probe: program not found: no-such-probe-program"


def test_a_dead_health_monitor_fails_its_service_and_kills_the_process(monkeypatch):
    def broken(monitor):
        raise RuntimeError("probe bug")

    monkeypatch.setattr(health.HealthMonitor, "run", broken)
    spec = {**SPEC, "command": ["sleep", "30"], "env": {"PATH": "/usr/bin:/bin"},
            "healthcheck": {"test": ["true"], "http": None, "tcp": None, "interval": 1.0, "timeout": 1.0,
                            "retries": 1, "start_period": 0.0}}
    project = PidRecordingProject()
    service = Service("web", spec, project)
    service.start()
    try:
        with gevent.Timeout(10):
            while service.status != states.FAILED:
                gevent.sleep(0.01)
        assert service.reason == "internal error: health monitor crashed: RuntimeError('probe bug')"
        assert project.pids and group_is_gone(project.pids[0]), "the service's process outlived its failure"
    finally:
        project.greenlets.kill()


class PidRecordingProject(FakeProject):
    """Records the pids its service ran; its log writer drains the output pipes."""

    def __init__(self):
        super().__init__()
        self.system = System()  # the real OS: a real process, really killed
        self.state_dir, self.id = "/nonexistent-kepler-state", "c1"  # only its processes' mark names them
        self.pids = []
        self.logs.output.start_pump = self._pump

    def _pump(self, stream, fd):
        return self.greenlets.spawn(health._Output(fd).close_at_end)

    def service_changed(self, service):
        if service.pid and service.pid not in self.pids:
            self.pids.append(service.pid)


def serve_once(listener, answer):
    connection, _ = listener.accept()
    with connection:
        connection.recv(4096)
        connection.sendall(answer)


@pytest.mark.parametrize("answer, passed, output", [
    (b"HTTP/1.1 204 No Content\r\n\r\n", True, "HTTP/1.1 204 No Content"),
    (b"HTTP/1.0 302 Found\r\nLocation: /x\r\n\r\n", True, "HTTP/1.0 302 Found"),
    (b"HTTP/1.1 503 Service Unavailable\r\n\r\n", False, "http://127.0.0.1:{port}/health: HTTP/1.1 503 Service "
                                                         "Unavailable"),
    (b"SSH-2.0-OpenSSH\r\n", False, "http://127.0.0.1:{port}/health: not an HTTP answer: 'SSH-2.0-OpenSSH'"),
])
def test_http_probe_judges_the_status_line(helpers, answer, passed, output):
    listener = socket.socket()  # gevent's, so that accept lets the probe run
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    server = helpers.spawn(serve_once, listener, answer)
    check = {"http": f"http://127.0.0.1:{port}/health", "timeout": 5.0}
    result = health.probe(check, SERVICE, helpers.spawn)
    server.join()
    listener.close()
    assert (result.passed, result.exit_code, result.output) == (passed, None, output.format(port=port))


def test_http_probe_without_an_answer_fails_at_its_timeout(helpers):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    accepted = []
    server = helpers.spawn(lambda: accepted.append(listener.accept()))  # accepts, never answers
    result = health.probe({"http": f"http://127.0.0.1:{port}/", "timeout": 0.2}, SERVICE, helpers.spawn)
    server.kill()
    listener.close()
    for connection, _ in accepted:
        connection.close()
    assert (result.passed, result.output) == (False, f"http://127.0.0.1:{port}/: no answer within 0.2s")


def test_tcp_probe_of_a_closed_port_fails(helpers):
    with socket.socket() as probe_port:
        probe_port.bind(("127.0.0.1", 0))
        port = probe_port.getsockname()[1]
    result = health.probe({"tcp": f"localhost:{port}", "timeout": 5.0}, SERVICE, helpers.spawn)
    assert (result.passed, result.output) == (False, f"cannot connect to localhost:{port}: Connection refused")
