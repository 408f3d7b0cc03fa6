"""Health probes in-process: a probe leaves nothing behind, and a dead monitor fails its service (SPEC §8, §18)."""

import os
import time

import gevent
import pytest
from gevent import socket
from gevent.pool import Group

from keplerd.model import states
from keplerd.supervise import health, netprobe
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


# -- http and tcp probes, made in-process ------------------------------------------------------------------


class ScriptedServer:
    """A listener on 127.0.0.1 (or ::1) whose one connection gets *answer*; ``close()`` ends it.

    *serve(server, answer)* replaces the default: read the request, send *answer* (if any), close.
    """

    def __init__(self, helpers, answer=None, family=socket.AF_INET, serve=None):
        self.listener = socket.socket(family)  # gevent's, so that accept lets the probe run
        self.listener.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        self.listener.listen()
        self.port = self.listener.getsockname()[1]
        self.connections = []
        self.request = b""
        self.server = helpers.spawn(serve or ScriptedServer.serve, self, answer)

    def accept(self):
        connection, _ = self.listener.accept()
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # each send its own packet
        self.connections.append(connection)
        return connection

    def serve(self, answer):
        connection = self.accept()
        while b"\r\n\r\n" not in self.request:
            chunk = connection.recv(4096)
            if not chunk:
                break
            self.request += chunk
        if answer is not None:
            connection.sendall(answer)
            connection.close()

    def close(self):
        self.server.kill()
        for connection in self.connections:
            connection.close()
        self.listener.close()


@pytest.fixture
def served(helpers):
    servers = []

    def serve(*args, **options):
        servers.append(ScriptedServer(helpers, *args, **options))
        return servers[-1]

    yield serve
    for server in servers:
        server.close()


def test_http_probe_sends_one_get_with_the_host_and_closes_the_connection(served):
    server = served(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    result = health.probe({"http": f"http://127.0.0.1:{server.port}/health?full=1", "timeout": 5.0}, SERVICE, None)
    assert (result.passed, result.output) == (True, "HTTP/1.1 200 OK")
    assert server.request == (f"GET /health?full=1 HTTP/1.0\r\nHost: 127.0.0.1:{server.port}\r\n"
                              "User-Agent: keplerd-healthcheck\r\nAccept: */*\r\nConnection: close\r\n\r\n").encode()


@pytest.mark.parametrize("answer, passed", [
    (b"HTTP/1.1 200 OK\r\n\r\n", True),
    (b"HTTP/1.1 301 Moved Permanently\r\nLocation: /\r\n\r\n", True),
    (b"HTTP/1.1 399 Odd\r\n\r\n", True),
    (b"HTTP/1.1 400 Bad Request\r\n\r\n", False),
    (b"HTTP/1.1 199 Odd\r\n\r\n", False),
    (b"HTTP/1.1 500 Internal Server Error\r\n\r\n", False),
])
def test_http_probe_passes_on_2xx_and_3xx_only(served, answer, passed):
    server = served(answer)
    result = health.probe({"http": f"http://127.0.0.1:{server.port}/", "timeout": 5.0}, SERVICE, None)
    assert result.passed == passed and result.output.endswith(answer.split(b"\r\n")[0].decode())


def test_http_probe_reads_a_status_line_split_over_several_packets(served, monkeypatch):
    """The status line comes in three packets, each sent only once the probe has read the one before."""
    read = []
    recv = netprobe._Connection.recv
    monkeypatch.setattr(netprobe._Connection, "recv", lambda self, size: read.append(recv(self, size)) or read[-1])

    def in_pieces(server, pieces):
        connection = server.accept()
        connection.recv(4096)
        for number, piece in enumerate(pieces):
            connection.sendall(piece)
            with gevent.Timeout(10):
                while len(read) <= number:  # wait until the probe took this piece
                    gevent.sleep(0.001)
        connection.close()

    pieces = [b"HTTP/1.1 2", b"04 No Con", b"tent\r\nServer: x\r\n\r\n"]
    server = served(pieces, serve=in_pieces)
    result = health.probe({"http": f"http://127.0.0.1:{server.port}/", "timeout": 10.0}, SERVICE, None)
    assert (result.passed, result.output) == (True, "HTTP/1.1 204 No Content")
    assert read[:3] == pieces


def test_http_probe_with_a_slow_status_line_fails_at_its_timeout_and_closes(served):
    server = served(None, serve=lambda server, _: server.accept().sendall(b"HTTP/1.1 200"))  # and nothing more
    fds = open_fds()
    result = health.probe({"http": f"http://127.0.0.1:{server.port}/", "timeout": 0.2}, SERVICE, None)
    assert (result.passed, result.output) == (False, f"http://127.0.0.1:{server.port}/: no answer within 0.2s")
    assert open_fds() == fds + len(server.connections), "the probe's socket stayed open"


def test_http_probe_of_a_server_that_closes_without_answering_fails(served):
    server = served(b"")
    result = health.probe({"http": f"http://127.0.0.1:{server.port}/x", "timeout": 5.0}, SERVICE, None)
    assert (result.passed, result.output) == (False, f"http://127.0.0.1:{server.port}/x: not an HTTP answer: ''")


def test_http_probe_of_an_endless_line_judges_its_first_4_kib(served):
    server = served(b"HTTP/1.1 200 " + b"x" * 10000)
    result = health.probe({"http": f"http://127.0.0.1:{server.port}/", "timeout": 5.0}, SERVICE, None)
    assert result.passed and result.output.startswith("HTTP/1.1 200 xxx") and len(result.output) < 10000


def test_http_probe_over_ipv6(served):
    try:
        server = served(b"HTTP/1.0 200 OK\r\n\r\n", family=socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    result = health.probe({"http": f"http://[::1]:{server.port}/", "timeout": 5.0}, SERVICE, None)
    assert (result.passed, result.output) == (True, "HTTP/1.0 200 OK")
    assert f"Host: [::1]:{server.port}\r\n".encode() in server.request


def test_tcp_probe_of_a_listening_port_passes(served):
    server = served(None)
    result = health.probe({"tcp": f"127.0.0.1:{server.port}", "timeout": 5.0}, SERVICE, None)
    assert (result.passed, result.exit_code, result.output) == (True, None, f"connected to 127.0.0.1:{server.port}")


def test_tcp_probe_of_a_port_that_never_accepts_fails_at_its_timeout():
    """A full accept queue drops the SYN: the connection stays in progress until the probe gives up."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):  # fill the queue (its length is the backlog plus one or two, by kernel)
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        fds = open_fds()
        result = health.probe({"tcp": f"127.0.0.1:{port}", "timeout": 0.3}, SERVICE, None)
        assert (result.passed, result.output) == (False, f"no connection to 127.0.0.1:{port} within 0.3s")
        assert open_fds() == fds, "the probe's socket stayed open"
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def test_network_probes_leave_no_fd_open_passed_failed_or_killed(served, helpers):
    health.probe({"tcp": "127.0.0.1:1", "timeout": 5.0}, SERVICE, None)  # the hub's own fds exist now
    fds = open_fds()
    for answer in (b"HTTP/1.1 200 OK\r\n\r\n", b"HTTP/1.1 500 Oops\r\n\r\n", b"nonsense\n"):
        server = served(answer)
        health.probe({"http": f"http://127.0.0.1:{server.port}/", "timeout": 5.0}, SERVICE, None)
        server.close()
    silent = served(None)  # accepts and reads, never answers
    probe = helpers.spawn(health.probe, {"http": f"http://127.0.0.1:{silent.port}/", "timeout": 60.0}, SERVICE, None)
    with gevent.Timeout(10):
        while not silent.request.endswith(b"\r\n\r\n"):
            gevent.sleep(0.01)
    probe.kill()  # the service stopped while its probe waited for the answer
    silent.close()
    assert open_fds() == fds
