"""``GET /metrics``: the daemon's state in the Prometheus text format, served on its own loop.

A custom collector reads the services when a scrape comes (nothing is kept up
to date in between), and gevent's WSGI server answers on the daemon's loop:
no thread, since the daemon forks with Python between fork and exec (see
docs/architecture.md). Imported only when ``metrics_listen`` is set.
"""

import logging
import os
import socket
import stat

import gevent
from gevent.pool import Pool
from gevent.pywsgi import WSGIServer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from keplerd.model import states
from keplerd.supervise import accounting

log = logging.getLogger("keplerd.metrics")

MAX_SCRAPERS = 4
YIELD_EVERY = 50  # services read between two turns of the loop
# ``replica`` is empty (which Prometheus reads as absent) for a service without replicas (SPEC §19).
SERVICE_LABELS = ["config", "service", "replica"]


class ServiceCollector:
    """The metrics of every service of every loaded config, read at scrape time."""

    def __init__(self, registry, lag):
        self._registry = registry
        self._lag = lag

    def collect(self):
        families = {
            "up": GaugeMetricFamily("kepler_service_up", "1 while the service's process runs.", labels=SERVICE_LABELS),
            "state": GaugeMetricFamily("kepler_service_state", "1 for the state the service is in, 0 for the others.",
                                       labels=SERVICE_LABELS + ["state"]),
            "restarts": CounterMetricFamily("kepler_service_restarts", "Restarts the daemon made on its own.",
                                            labels=SERVICE_LABELS),
            "cpu": CounterMetricFamily("kepler_service_cpu_seconds", "CPU time of the current run, all its processes.",
                                       labels=SERVICE_LABELS),
            "memory": GaugeMetricFamily("kepler_service_memory_bytes", "Memory of the current run, all its processes.",
                                        labels=SERVICE_LABELS),
            "healthy": GaugeMetricFamily("kepler_service_healthy", "1 when the last health verdict is healthy.",
                                         labels=SERVICE_LABELS),
            "lines": CounterMetricFamily("kepler_log_lines", "Lines the service printed, stored or not.",
                                         labels=SERVICE_LABELS + ["stream"]),
        }
        done = 0
        for project in tuple(self._registry.projects.values()):
            for service in tuple(project.services.values()):
                _add_service(families, project, service)
                done += 1
                if done % YIELD_EVERY == 0:
                    gevent.sleep(0)  # a scrape of many services must not hold up supervision
        for family in families.values():
            yield family
            gevent.sleep(0)  # the family was formatted meanwhile: let the loop turn between families
        yield GaugeMetricFamily("kepler_daemon_loop_lag_seconds", "How late the daemon's loop ran its last 1 s timer.",
                                value=self._lag.seconds)


def _add_service(families, project, service):
    labels = [project.source_path, service.base, str(service.index) if service.name != service.base else ""]
    families["up"].add_metric(labels, 1 if service.status in states.UP else 0)
    for state in states.ALL:
        families["state"].add_metric(labels + [state], 1 if service.status == state else 0)
    families["restarts"].add_metric(labels, service.restarts)
    usage = accounting.stats_of(project, service)
    families["cpu"].add_metric(labels, usage["cpu_seconds"])
    families["memory"].add_metric(labels, usage["memory_bytes"])
    if service.spec.get("healthcheck"):
        families["healthy"].add_metric(labels, 1 if service.status == states.HEALTHY else 0)
    for stream, count in service.log.lines.items():
        families["lines"].add_metric(labels + [stream], count)


class Exporter:
    """The metrics endpoint of a daemon: its collector registry and its server.

    *lag* is the daemon's ``LoopLag`` (armed for the daemon's lifetime, whether scraped or not).
    """

    def __init__(self, registry, address, lag):
        self.metrics = CollectorRegistry(auto_describe=False)
        self.metrics.register(ServiceCollector(registry, lag))
        self.metrics.register(ProcessCollector(registry=None))
        self._unix_path = address[1] if address[0] == "unix" else None
        # The server's own pool owns the request greenlets; a few scrapers at a time are plenty.
        self._server = WSGIServer(_listen(address), self._answer, spawn=Pool(MAX_SCRAPERS), log=None,
                                  error_log=log)

    def start(self):
        self._server.start()

    def stop(self):
        self._server.stop(timeout=1.0)
        if self._unix_path:
            _unlink(self._unix_path)

    def _answer(self, environ, start_response):
        if environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: the metrics are at /metrics\n"]
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Content-Type", "text/plain"), ("Allow", "GET, HEAD")])
            return [b"only GET\n"]
        body = generate_latest(self.metrics)
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(body)))])
        return [body] if environ["REQUEST_METHOD"] == "GET" else []


def _listen(address):
    """Return a listening socket for ``("tcp", (host, port))`` or ``("unix", path)``; raise OSError."""
    kind, where = address
    if kind == "unix":
        _unlink(where)  # a socket left by an earlier daemon (the pid file lock says we are alone)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(where)
        os.chmod(where, 0o600)
    else:
        host, port = where
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
    listener.listen(64)
    return listener


def _unlink(path):
    """Remove the socket at *path*; anything else there is left alone (bind then fails)."""
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass  # nothing there: fine
