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

import logging
import time

import gevent

from keplerd.model import actions, changes
from keplerd.model.record import Record
from keplerd.supervise import lifecycle, replicas
from keplerd.supervise.hooks import HookFailed
from keplerd.model.states import DESIRED_UP

log = logging.getLogger("keplerd.apply")


class Prepared(Record):
    """An accepted-to-be plan: its entries, the snapshot to keep, and the bake to copy files from."""

    entries: list
    global_fields: list
    snapshot: dict
    baked: object  # bakery.Baked for a whole apply; None when services were named
    replicated: tuple = ()  # services with instances (web.1, web.2...): rolled or scaled, not restarted whole

    def named(self, *actions):
        return [entry["service"] for entry in self.entries if entry["action"] in actions]


def prepare(project, baked, names=()):
    """Return the ``Prepared`` apply of the new bake *baked* to *project*; raise ``changes.PlanError``."""
    old = project.snapshot
    if names and baked.snapshot.get("owner", 0) != old.get("owner", 0):
        # Services baked for two users in one config: run-as defaults and limits would differ.
        raise changes.PlanError(f"only {project.owner} (who owns this config) may apply some of its services; "
                                f"apply the whole config instead")
    replicated = {name for snapshot in (old, baked.snapshot) for name, spec in snapshot["services"].items()
                  if spec.get("replicas", 1) > 1} | set(project.scaled)
    up = {service.base for service in project.services.values()
          if service.desired == DESIRED_UP or service.supervised}
    entries = changes.plan(old["services"], baked.snapshot["services"], up, names)
    _count_instances(project, entries, baked.snapshot)
    snapshot = changes.merge(old, baked.snapshot, entries, names)
    global_fields = [] if names else changes.global_changes(old, baked.snapshot)
    return Prepared(entries, global_fields, snapshot, None if names else baked,
                    tuple(entry["service"] for entry in entries if entry["service"] in replicated))


def _count_instances(project, entries, new):
    """Give each entry whose instance count changes ``replicas: [running, wanted]`` (SPEC §17).

    The running count may be one ``scale`` set by hand: apply takes every count
    from the file again, so an unchanged service scaled by hand is planned as a scale.
    """
    for entry in entries:
        name = entry["service"]
        if entry["change"] in (changes.ADDED, changes.REMOVED) or entry["action"] == changes.STORE:
            continue
        running, wanted = len(project.instances(name)), new["services"][name].get("replicas", 1)
        if running != wanted or "replicas" in entry:
            entry["replicas"] = [running, wanted]
            if entry["action"] == changes.NOTHING:
                entry["action"] = changes.SCALE


def carry_out(project, prepared):
    """Accept the plan and act on it; return the names started, raise ``lifecycle.ActionFailed``.

    Run it in a greenlet of the project (as the handler does), not of a request.
    """
    began = time.monotonic()
    old_edges = project.edges()
    _store(project, prepared)
    restarting = [entry["service"] for entry in prepared.entries if entry["action"] == changes.RESTART
                  and entry["service"] not in prepared.replicated
                  # a dependent of rolled services only: the roll restarts it once, at its end
                  and not (entry["change"] == changes.UNCHANGED and entry["because"]
                           and set(entry["because"]) <= set(prepared.replicated))]
    removed = [entry["service"] for entry in prepared.entries if entry["change"] == changes.REMOVED]
    # Removed services stop instance by instance (``web`` → ``web.1``, ``web.2``), in the old graph's order.
    failures = _stop_old(project, old_edges, [service.name for name in removed for service in project.instances(name)],
                         restarting)
    stopped = time.monotonic()
    for name in removed:
        project.forget_service(name)
    started = _start_new(project, prepared, restarting)
    scaled, roll_failures = _scale_and_roll(project, prepared)
    started += scaled
    failures += roll_failures
    log.info("%s: applied in %.0f ms (stop %.0f ms, start %.0f ms): %s", project.name,
             (time.monotonic() - began) * 1000, (stopped - began) * 1000, (time.monotonic() - stopped) * 1000,
             "; ".join(changes.plan_line(entry) for entry in prepared.entries if entry["action"] != changes.NOTHING)
             or "nothing changed")
    project.record("global", "apply", plan=[changes.plan_line(entry) for entry in prepared.entries],
                   failures=failures)
    if failures:
        raise lifecycle.ActionFailed("; ".join(failures))
    return list(dict.fromkeys(started))


def _store(project, prepared):
    """Write the new snapshot and redefine the services; nothing here yields.

    Each service keeps its count of instances (and so their names) until
    ``_scale_and_roll`` changes it: a daemon killed before then boots with the
    new definitions and the counts (in ``state.json``) that ran.
    """
    project.take_definition(prepared.snapshot, prepared.baked)
    for entry in prepared.entries:
        if entry["change"] not in (changes.ADDED, changes.REMOVED):
            project.pin_count(entry["service"], len(project.instances(entry["service"])))
    change = {entry["service"]: entry["change"] for entry in prepared.entries}
    scaled_only = set(prepared.named(changes.SCALE))
    for name, spec in prepared.snapshot["services"].items():
        if change.get(name) == changes.ADDED:
            for service in project.add_service(name, spec):
                if name in prepared.named(changes.START):
                    # Wanted up from now on: a daemon that dies before the start brings it up at boot.
                    service.desired = DESIRED_UP
        elif change.get(name) == changes.CHANGED and name not in scaled_only:
            for service in project.instances(name):
                service.redefine(spec)  # a running instance takes it at its next start (the roll)
        else:
            # Equal in all the process sees (the count aside); what differs (how the env was written,
            # waits) applies now.
            for service in project.instances(name):
                service.take_equal_definition(spec)
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


def _scale_and_roll(project, prepared):
    """Give the replicated services their new counts, then roll what changed; return ``(started, failures)``.

    A count crossing 1 renames instance 1 (``web`` ↔ ``web.1``), process kept
    (SPEC §17). Then the instances that ran before roll one at a time, once the
    new ones are up: those of a changed service, and of a replicated ``restart:
    true`` dependent of what restarted (after the whole services restarted).
    Every count is the file's afterwards (a hand ``scale`` ends).
    """
    started, failures = [], []
    for entry in prepared.entries:
        name = entry["service"]
        if name not in prepared.replicated or entry["change"] in (changes.ADDED, changes.REMOVED):
            continue
        wanted = prepared.snapshot["services"][name].get("replicas", 1)
        if entry["action"] == changes.STORE:
            project.set_count(name, wanted)
            continue
        before = set(map(id, project.instances(name)))
        added = replicas.scale(project, {name: wanted})
        project.set_count(name, wanted)
        started += added
        if entry["action"] == changes.RESTART:
            problem = _wait_new_instances(project, added)
            if problem:
                failures.append(f"{problem}; {name} not rolled: its other instances keep their old definition")
                continue
            kept = [service.name for service in project.instances(name) if id(service) in before]
            try:
                started += replicas.roll(project, kept, reason="apply" if entry["change"] == changes.CHANGED
                                         else "dependency")
            except lifecycle.ActionFailed as failure:
                failures.append(str(failure))
    return started, failures


def _wait_new_instances(project, names):
    """Wait until the instances a scale-up started are up; return why one is not, or None."""
    for name in names:
        problem = replicas.wait_up(project, project.services[name])
        if problem:
            return f"{name}: {problem}"
    return None


def _start_new(project, prepared, restarting):
    """Start what was restarted (new definitions) and what was added; return the names started."""
    restarted = [name for name in restarting if not project.services[name].supervised]
    changed = {entry["service"] for entry in prepared.entries if entry["change"] == changes.CHANGED}
    for name in restarted:
        project.services[name].note_restart("apply" if name in changed else "dependency")
    started = []
    if restarted:
        started += lifecycle.start(project, restarted, actions.AFTER_RESTART.replace(global_init=False))
    added = prepared.named(changes.START)
    if added:
        started += [name for name in lifecycle.start(project, added, actions.Start(global_init=False))
                    if name not in started]
    return started
