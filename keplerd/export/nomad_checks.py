"""A service's healthcheck as a Nomad service with one check (and the static port it needs)."""

import re
import urllib.parse

from . import common
from .report import nanoseconds

LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
PORT_LABEL = "health"
MIN_CHECK_SECONDS = 1.0  # Nomad rejects check intervals and timeouts under 1 s


def service_name(name):
    """Return *name* as a Consul/Nomad service name: lowercase letters, digits and ``-`` (RFC 1123)."""
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63] or "service"


def health_service(result, path, name, service):
    """Return ``(Services list, group Networks list)`` for the service's healthcheck."""
    health = service.get("healthcheck")
    path = path + ["healthcheck"]
    if not health:
        result.map(path)
        return None, None
    common.check_unknown(result, path, health, common.HEALTH_KEYS)
    check = {"Name": f"{service_name(name)}-health",
             "Interval": _at_least_a_second(result, path + ["interval"], health.get("interval", 30.0)),
             "Timeout": _at_least_a_second(result, path + ["timeout"], health.get("timeout", 30.0))}
    result.map(path)
    networks = None
    if health.get("test"):
        check.update({"Type": "script", "Command": health["test"][0], "Args": list(health["test"][1:])})
        result.map(path + ["test"])
    else:
        kind = "http" if health.get("http") else "tcp"
        if not isinstance(health.get(kind), str):
            result.warn(path, "a health check of a form this exporter does not know, dropped")
            return None, None
        port, extra = _address_check(result, path + [kind], health[kind], kind)
        check.update({"Type": kind, "FailuresBeforeCritical": health.get("retries", 3), **extra})
        networks = [{"ReservedPorts": [{"Label": PORT_LABEL, "Value": port}]}]
    entry = {"Name": service_name(name), "Provider": "consul", "Checks": [check]}
    if networks:
        entry["PortLabel"] = PORT_LABEL
    _retries_and_restart(result, path, service, health, check)
    return [entry], networks


def _at_least_a_second(result, path, seconds):
    """Return *seconds* in nanoseconds, raised to Nomad's minimum of 1 s for check intervals and timeouts."""
    if seconds < MIN_CHECK_SECONDS:
        result.warn(path, f"Nomad's minimum is 1s; {seconds:g}s raised to 1s")
        seconds = MIN_CHECK_SECONDS
    else:
        result.map(path)
    return nanoseconds(seconds)


def _address_check(result, path, address, kind):
    """Return the port and the check fields of an ``http: URL`` or ``tcp: HOST:PORT`` probe."""
    if kind == "http":
        url = urllib.parse.urlsplit(address)
        host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
        target = url.path or "/"
        extra = {"Path": target + (f"?{url.query}" if url.query else ""), "Protocol": url.scheme or "http"}
    else:
        host, _, port_text = address.rpartition(":")
        port, extra = int(port_text), {}
    result.map(path)
    if host in LOOPBACK:
        result.warn(path, f"Nomad checks port {port} on the node's address, not on {host}: a service that "
                          "listens on loopback only fails the check")
    return port, extra


def _retries_and_restart(result, path, service, health, check):
    """Map ``retries``, ``start_period`` and ``restart.on_unhealthy`` onto the check.

    Consul counts failures before critical for tcp and http checks only; a script
    check is critical at its first failure. Nomad's ``CheckRestart`` restarts after
    ``Limit`` critical results in a row, after ``Grace``: for a script check the
    limit carries ``retries``.
    """
    retries, script = health.get("retries", 3), check["Type"] == "script"
    if (service.get("restart") or {}).get("on_unhealthy"):
        check["CheckRestart"] = {"Limit": retries if script else 1,
                                 "Grace": nanoseconds(health.get("start_period", 0.0)), "IgnoreWarnings": False}
        result.map(path + ["retries"], path + ["start_period"], ["services", path[1], "restart", "on_unhealthy"])
        return
    if script and retries > 1:
        result.warn(path + ["retries"], "no Nomad equivalent for a script check (one failure makes it "
                                        "critical), dropped")
    else:
        result.map(path + ["retries"])
    if health.get("start_period"):
        result.warn(path + ["start_period"], "no Nomad equivalent (checks start with the task), dropped")
    else:
        result.map(path + ["start_period"])
