"""Prometheus metrics (SPEC §19): ``GET /metrics`` of a real keplerd, checked by promtool.

promtool comes from the Debian package ``prometheus`` (``make test-tools``).
"""

import os
import re
import shutil
import socket
import subprocess
import sys

import pytest

from tests.integration.harness import wait_for

CONFIG = """
    services:
      web:
        command: ["sh", "-c", "echo one; echo two; echo three >&2; exec sleep 1000"]
      checked:
        command: ["sleep", "1000"]
        healthcheck:
          test: ["true"]
          interval: 100ms
      idle:
        command: ["sleep", "1000"]
"""


def _get(kepler, path="/metrics", method="GET"):
    """Return ``(status line, body)`` of an HTTP/1.0 request on the metrics Unix socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(30)
        client.connect(kepler.metrics_socket)
        client.sendall(f"{method} {path} HTTP/1.0\r\nHost: kepler\r\n\r\n".encode())
        data = b""
        while chunk := client.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].decode(), body.decode()


@pytest.fixture
def metered(kepler_stopped):
    kepler = kepler_stopped
    kepler.metrics_socket = os.path.join(kepler.root, "metrics.sock")
    kepler.start_daemon("--metrics-listen", kepler.metrics_socket)
    return kepler


def _sample(body, name, **labels):
    for line in body.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.partition("}")[0]))
            if all(found.get(key) == value for key, value in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return None


def test_metrics_of_services_and_of_the_daemon(metered):
    kepler = metered
    path = kepler.config(CONFIG)
    kepler.ctl("start", "-d", "--wait", "web", "checked")
    kepler.wait_status("checked", "healthy")
    wait_for(lambda: _sample(_get(kepler)[1], "kepler_log_lines_total", service="web", stream="stdout") == 2,
             message="web's lines to be counted")
    status, body = _get(kepler)
    assert status == "HTTP/1.1 200 OK"
    web = {"config": path, "service": "web"}
    assert _sample(body, "kepler_service_up", **web) == 1
    assert _sample(body, "kepler_service_up", config=path, service="idle") == 0
    assert _sample(body, "kepler_service_state", state="running", **web) == 1
    assert _sample(body, "kepler_service_state", state="stopped", **web) == 0
    assert _sample(body, "kepler_service_restarts_total", **web) == 0
    assert _sample(body, "kepler_service_cpu_seconds_total", **web) is not None
    assert _sample(body, "kepler_service_memory_bytes", **web) > 0
    assert _sample(body, "kepler_service_healthy", config=path, service="checked") == 1
    assert _sample(body, "kepler_service_healthy", **web) is None, "only services with a health check"
    assert _sample(body, "kepler_log_lines_total", stream="stderr", **web) == 1
    assert _sample(body, "kepler_daemon_loop_lag_seconds") >= 0
    assert _sample(body, "process_resident_memory_bytes") > 0
    assert _sample(body, "process_cpu_seconds_total") > 0


def test_promtool_finds_the_exposition_clean(metered):
    if shutil.which("promtool") is None:
        pytest.skip("promtool is not installed (Debian package prometheus; make test-tools installs it)")
    kepler = metered
    kepler.config(CONFIG)
    kepler.ctl("start", "-d", "--wait")
    body = _get(kepler)[1]
    checked = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_other_paths_and_methods_are_refused(metered):
    assert _get(metered, "/")[0] == "HTTP/1.1 404 Not Found"
    assert _get(metered, method="POST")[0] == "HTTP/1.1 405 Method Not Allowed"
    assert oct(os.stat(metered.metrics_socket).st_mode & 0o777) == "0o600"


def test_a_loopback_port_serves_and_a_remote_one_needs_metrics_allow_remote(kepler_stopped):
    kepler = kepler_stopped
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    kepler.start_daemon("--metrics-listen", f"127.0.0.1:{port}")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
        client.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        assert client.recv(64).startswith(b"HTTP/1.1 200 OK")
    kepler.stop_daemon()
    refused = subprocess.run([sys.executable, "-m", "keplerd", *kepler.isolation_args(),
                              "--metrics-listen", f"0.0.0.0:{port}"], env=kepler.env(), capture_output=True,
                             text=True, timeout=60)
    assert refused.returncode == 1
    assert "is not loopback: set metrics_allow_remote: true" in refused.stderr


def test_keplerd_conf_metrics_address_errors_are_located(kepler_stopped):
    kepler = kepler_stopped
    conf = kepler.write("bad.conf", "metrics_listen: 10.1.2.3:9464\n", directory=kepler.root)
    refused = subprocess.run([sys.executable, "-m", "keplerd", "--config", conf], env=kepler.env(),
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert f"{conf}: metrics_listen: metrics address '10.1.2.3:9464' is not loopback" in refused.stderr


def test_instances_of_a_replicated_service_carry_a_replica_label(metered):
    kepler = metered
    path = kepler.config("services:\n  web:\n    command: [sleep, '1000']\n    replicas: 2\n"
                         "  solo:\n    command: [sleep, '1000']\n")
    kepler.ctl("start", "-d", "--wait")
    body = _get(kepler)[1]
    assert _sample(body, "kepler_service_up", config=path, service="web", replica="1") == 1
    assert _sample(body, "kepler_service_up", config=path, service="web", replica="2") == 1
    # Without replicas the label is empty, which Prometheus reads as absent.
    assert _sample(body, "kepler_service_up", config=path, service="solo", replica="") == 1
