"""An honest ``--wait`` (SPEC §13, §18): wait until what was started reached its target, or say why not.

A startup-cluster service's target is ``healthy`` when it has a healthcheck,
ready (``READY=1``) when it uses ``notify``, else ``running``; a one-shot that
exited 0 is done too. A service that fails, exits non-zero or is killed before
its target fails the wait at once, even when its policy will restart it: a
crash loop is not "up". ``start --wait``, ``restart`` and ``apply --wait`` all
wait here (``wait_ready``).
"""

import gevent

from keplerd.logs.cursor_table import open_reading
from keplerd.model import deps, graph, states
from keplerd.units import signal_name

LOG_LINES = 5
REACHED, FAILED, PENDING = "reached", "failed", "pending"


class WaitFailed(Exception):
    """The wait ended badly; the message names the services and why (several lines)."""


def target(service):
    """Return what *service* must reach: ``healthy``, ``ready`` or ``running``."""
    if service.spec.get("healthcheck"):
        return "healthy"
    return "ready" if service.spec.get("notify") else "running"


def wait_ready(project, names, timeout=None, on_line=None):
    """Wait until each startup-cluster service in *names* reached its target.

    *on_line(name, text)* hears one line per service as soon as it is known:
    ``healthy``, ``exited (0)``, ``deferred: waits on web (service_unhealthy)``.
    Raises ``WaitFailed`` as soon as one fails (with its exit code and last log
    lines), or after *timeout* seconds naming what was not ready (a ``notify``
    service still without READY=1 then fails, SPEC §18).
    """
    on_line = on_line or (lambda name, text: None)
    services = [project.services[name] for name in names]
    for service in services:
        if not service.spec["effective_wait"]:
            on_line(service.name, "deferred: " + _deferred_edges(project, service))
    waiting = {service.name: (service, service.bad_exits) for service in services
               if service.spec["effective_wait"]}
    with gevent.Timeout(timeout, False):
        while waiting:
            for name, (service, bad_exits) in list(waiting.items()):
                verdict, text = judge(service, bad_exits)
                if verdict == FAILED:
                    raise WaitFailed(_failure(project, service, text))
                if verdict == REACHED:
                    del waiting[name]
                    on_line(name, text)
            if waiting:
                project.wait_change()
    if waiting:
        for service, _ in waiting.values():
            service.not_ready_within(timeout)
        late = ", ".join(f"{name} ({judge(service, bad)[1]})" for name, (service, bad) in waiting.items())
        raise WaitFailed(f"timed out after {timeout:g}s waiting for: {late}; they keep starting")


def judge(service, bad_exits_before):
    """Return ``(verdict, text)``: REACHED and what, FAILED and why, or PENDING and where it is."""
    status, wanted = service.status, target(service)
    if service.bad_exits > bad_exits_before:
        return FAILED, _ended(service, wanted)
    if status == states.FAILED:
        return FAILED, f"failed: {service.reason}"
    if status == states.EXITED and service.exit_code == 0:
        return REACHED, "exited (0)"
    if status in (states.STOPPED, states.STOPPING):
        return FAILED, f"was stopped before it was {wanted}"
    if status in (states.EXITED, states.KILLED):
        return FAILED, _ended(service, wanted)
    if status == states.UNHEALTHY and wanted == "healthy":
        output = ((service.last_probe or {}).get("output") or "").strip().splitlines()
        return FAILED, "unhealthy" + (f": {output[-1]}" if output else "")
    if service.reached_up and (status == states.HEALTHY or status in states.UP and wanted != "healthy"):
        return REACHED, wanted
    return PENDING, _where(service, wanted)


def _ended(service, wanted):
    how = (f"killed by {signal_name(service.signal)}" if service.signal
           else f"exited with code {service.exit_code}")
    again = " (its restart policy starts it again)" if service.status == states.STARTING else ""
    return f"{how} before it was {wanted}{again}"


def _where(service, wanted):
    if service.waiting_on:
        return "waiting for " + ", ".join(service.waiting_on)
    if service.status == states.STARTING:
        if service.pid and service.spec.get("notify"):
            return "started, no READY=1 yet"
        return "starting" + (f": {service.reason}" if service.reason else "")
    return f"{service.status}, not {wanted} yet"


def _deferred_edges(project, service):
    """Return ``waits on web (service_unhealthy)``: the edges that keep *service* out of startup."""
    edges = []
    for name, edge in service.spec["depends_on"].items():
        startup_kind = edge["wait"] if edge.get("wait") is not None else graph.is_startup_condition(edge["condition"])
        if not (startup_kind and project.services[name].spec["effective_wait"]):
            edges.append(deps.describe(name, edge))
    return "waits on " + ", ".join(edges) if edges else "wait: false"


def _failure(project, service, text):
    """Return the message of a failed wait: what happened, then the service's last log lines."""
    lines = last_log_lines(project, service.name)
    message = f"{service.name} {text}"
    if lines:
        message += f"; its last {len(lines)} log lines:\n" + "\n".join(f"  {line}" for line in lines)
    return message


def last_log_lines(project, name, count=LOG_LINES):
    """Return the last *count* lines *name* wrote (stdout and stderr merged, no hook logs)."""
    try:
        reading = open_reading(project, [name], no_hook=True, tail=count)
        batch = reading.stored.read()
    except OSError:
        return []  # the logs cannot be read: the failure is still reported, without them
    return [line[3].rstrip("\n") for line in batch][-count:]
