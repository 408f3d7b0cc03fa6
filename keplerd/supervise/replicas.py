"""Replicas (SPEC §17): change a service's instance count; roll a restart through its instances.

An instance is a ``Service`` with an index (``web.2``); these functions only choose
which instances to start, stop or restart, and in what order, through ``lifecycle``.
"""

import logging

import gevent

from keplerd.model import deps, states
from keplerd.supervise import lifecycle

log = logging.getLogger("keplerd.replicas")


class RollStopped(lifecycle.ActionFailed):
    """An instance did not come back during a rolling restart; the message names it."""


def scale(project, counts):
    """Give each service of *counts* (``{base: n}``, n ≥ 1) that many instances.

    Extra instances (the highest-numbered) are stopped and forgotten; new ones are
    started. The other instances keep their processes; crossing 1 renames instance
    1 (``web`` becomes ``web.1`` before the new ones start, ``web.1`` becomes ``web``
    once the others are stopped). Returns the names started.
    """
    started = []
    for base, count in counts.items():
        current = project.instances(base)
        if count < len(current):
            lifecycle.stop(project, [service.name for service in current[count:]])
            renamed = project.set_count(base, count)
            project.record(base, "scale", replicas=count, previous=len(current), renamed=renamed)
            log.info("%s: scaled %s down to %d", project.name, base, count)
        elif count > len(current):
            renamed = project.set_count(base, count, wanted_up=True)
            added = [service.name for service in project.instances(base)[len(current):]]
            project.record(base, "scale", replicas=count, previous=len(current), renamed=renamed)
            started += lifecycle.start(project, added)
            log.info("%s: scaled %s up to %d", project.name, base, count)
    return started


def roll(project, names, timeout=None, before_each=None, reason="user"):
    """Restart the instances *names* one at a time, in ascending order (SPEC §17).

    Each must be healthy (with a healthcheck) or up before the next is touched; one
    that is not within *timeout* (default: its ``start_period + retries × interval``)
    stops the roll with ``RollStopped``: the instances not yet rolled keep running as
    they were. *before_each(service)* runs just before an instance restarts; *reason*
    is recorded as the restart's (``apply``). ``restart: true`` dependents restart
    once, after the last instance. Returns the names restarted.
    """
    ordered = sorted(names, key=lambda name: (project.services[name].base, project.services[name].index))
    for position, name in enumerate(ordered):
        service = project.services[name]
        if before_each is not None:
            before_each(service)
        lifecycle.restart(project, [name], dependents=False, reason=reason)
        problem = wait_up(project, service, timeout)
        if problem:
            rest = ordered[position + 1:]
            kept = f"; {', '.join(rest)} not restarted" if rest else ""
            raise RollStopped(f"rolling restart stopped at {name}: {problem}{kept}")
    dependents = lifecycle.running_dependents(project, ordered)
    if dependents:
        lifecycle.restart(project, dependents, reason="dependency")
    return ordered + dependents


def wait_up(project, service, timeout=None):
    """Wait until *service* is healthy (or up, without a healthcheck); return why not, or None."""
    check = service.spec.get("healthcheck")
    if timeout is None and check:
        timeout = (check["start_period"] or 0) + check["retries"] * check["interval"]
    wanted = "healthy" if check else "up"
    with gevent.Timeout(timeout, False):
        while True:
            if check and service.status == states.HEALTHY:
                return None
            if not check and deps.startup_outcome(service) == "started":
                return None
            if service.status in states.TERMINAL:
                return f"it is {service.status}{f' ({service.reason})' if service.reason else ''}"
            project.wait_change()
    return f"not {wanted} within {timeout:g}s"
