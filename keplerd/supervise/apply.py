"""``keplerctl apply`` (SPEC §16): take a re-baked definition and restart only what changed.

The plan comes from :mod:`keplerd.model.changes` (pure). Carrying it out:

1. without yielding: write the new snapshot (atomically: a daemon killed from
   here on boots with the new definition of every service, never half of one),
   add the new services, and give every changed service its new definition —
   at once when it is not running, else for its next start (so its stop half
   still runs the old definition's hooks);
2. stop, dependents first in the old graph: removed services (their old
   ``pre_stop``/``post_stop``), and changed ones with their ``restart: true``
   dependents as the stop half of a restart (``pre_restart`` guards it);
3. forget the removed services and delete their logs;
4. start the restarted services (new definition; ``post_restart`` after
   ``post_start``; their ``on_init`` does not run again) and the added ones
   (their ``on_init`` runs), dependencies first. Never the global ``on_init``.

The handler runs it in a greenlet of the project, not of the request: a client
that goes away mid-apply does not leave it half done.
"""

import dataclasses
import logging
import time

import gevent

from keplerd.model import actions, changes
from keplerd.supervise import lifecycle
from keplerd.supervise.hooks import HookFailed
from keplerd.supervise.service import DESIRED_UP

log = logging.getLogger("keplerd.apply")


@dataclasses.dataclass
class Prepared:
    """An accepted-to-be plan: its entries, the snapshot to keep, and the bake to copy files from."""

    entries: list
    global_fields: list
    snapshot: dict
    baked: object  # bakery.Baked for a whole apply; None when services were named

    def named(self, *actions):
        return [entry["service"] for entry in self.entries if entry["action"] in actions]


def prepare(project, baked, names=()):
    """Return the ``Prepared`` apply of the new bake *baked* to *project*; raise ``changes.PlanError``."""
    old = project.snapshot
    if names and baked.snapshot.get("owner", 0) != old.get("owner", 0):
        # Services baked for two users in one config: run-as defaults and limits would differ.
        raise changes.PlanError(f"only {project.owner} (who owns this config) may apply some of its services; "
                                f"apply the whole config instead")
    replicated = sorted(name for snapshot in (old, baked.snapshot) for name, spec in snapshot["services"].items()
                        if spec.get("replicas", 1) > 1) + sorted(project.scaled)
    if replicated:
        # Instances (web.1, web.2...) are not yet planned one by one: refuse rather than act on the wrong thing.
        raise changes.PlanError(f"apply does not handle replicated services yet ({', '.join(replicated)}): "
                                f"use restart --rolling, or stop the config and recreate it")
    up = {name for name, service in project.services.items() if service.desired == DESIRED_UP or service.supervised}
    entries = changes.plan(old["services"], baked.snapshot["services"], up, names)
    snapshot = changes.merge(old, baked.snapshot, entries, names)
    global_fields = [] if names else changes.global_changes(old, baked.snapshot)
    return Prepared(entries, global_fields, snapshot, None if names else baked)


def carry_out(project, prepared):
    """Accept the plan and act on it; return the names started, raise ``lifecycle.ActionFailed``.

    Run it in a greenlet of the project (as the handler does), not of a request.
    """
    began = time.monotonic()
    old_edges = project.edges()
    _store(project, prepared)
    restarting = prepared.named(changes.RESTART)
    removed = [entry["service"] for entry in prepared.entries if entry["change"] == changes.REMOVED]
    failures = _stop_old(project, old_edges, removed, restarting)
    stopped = time.monotonic()
    for name in removed:
        project.forget_service(name)
    started = _start_new(project, prepared, restarting)
    log.info("%s: applied in %.0f ms (stop %.0f ms, start %.0f ms): %s", project.name,
             (time.monotonic() - began) * 1000, (stopped - began) * 1000, (time.monotonic() - stopped) * 1000,
             "; ".join(changes.plan_line(entry) for entry in prepared.entries if entry["action"] != changes.NOTHING)
             or "nothing changed")
    project.record("global", "apply", plan=[changes.plan_line(entry) for entry in prepared.entries],
                   failures=failures)
    if failures:
        raise lifecycle.ActionFailed("; ".join(failures))
    return started


def _store(project, prepared):
    """Write the new snapshot and redefine the services; nothing here yields."""
    project.take_definition(prepared.snapshot, prepared.baked)
    change = {entry["service"]: entry["change"] for entry in prepared.entries}
    for name, spec in prepared.snapshot["services"].items():
        if change.get(name) == changes.ADDED:
            service = project.add_service(name, spec)
            if name in prepared.named(changes.START):
                # Wanted up from now on: a daemon that dies before the start brings it up at boot.
                service.desired = DESIRED_UP
        elif change.get(name) == changes.CHANGED:
            project.services[name].redefine(spec)
        else:
            # Equal in all the process sees; what differs (how the env was written, waits) applies now.
            project.services[name].base_spec = project.services[name].spec = spec
    project.write_state()


def _stop_old(project, old_edges, removed, restarting):
    """Stop *removed* and *restarting* services, dependents first in *old_edges*; return failures.

    A removed service's ``pre_stop`` cannot refuse (it goes either way); a
    restarting one's ``pre_restart`` can: that service keeps its process, and its
    new definition waits for its next start.
    """
    targets = {name: name in removed for name in [*removed, *restarting]}
    stoppers, failures = {}, []

    def stop_after_dependents(name):
        gevent.joinall([stoppers[other] for other in targets if name in old_edges.get(other, ())])
        try:
            # Either way the desired state stays: the user still wants it up, also if the daemon dies now.
            project.services[name].stop(why=actions.SHUTDOWN if targets[name] else actions.APPLY)
        except HookFailed as failure:
            failures.append(f"{name}: {failure} (it keeps running as it was)")

    for name in targets:
        stoppers[name] = gevent.Greenlet(stop_after_dependents, name)
    for greenlet in stoppers.values():
        project.adopt(greenlet)  # all made first: each finds the others in ``stoppers``
    gevent.joinall(list(stoppers.values()))
    crashed = [greenlet for greenlet in stoppers.values() if greenlet.exception is not None]
    if crashed:
        raise crashed[0].exception  # a bug in one stopper, raised once the others stopped theirs
    return failures


def _start_new(project, prepared, restarting):
    """Start what was restarted (new definitions) and what was added; return the names started."""
    restarted = [name for name in restarting if not project.services[name].supervised]
    changed = {entry["service"] for entry in prepared.entries if entry["change"] == changes.CHANGED}
    for name in restarted:
        project.services[name].note_restart("apply" if name in changed else "dependency")
    started = []
    if restarted:
        started += lifecycle.start(project, restarted, dataclasses.replace(actions.AFTER_RESTART, global_init=False))
    added = prepared.named(changes.START)
    if added:
        started += [name for name in lifecycle.start(project, added, actions.Start(global_init=False))
                    if name not in started]
    return started
