"""Start, stop and restart a config or some of its services: order, waits and hooks.

SPEC §7 orders services (dependencies first on start, dependents first on stop);
SPEC §9 wraps whole-config actions in global hooks:

* start:   on_init (once per bake) → pre_start → services → post_start (startup cluster up)
* stop:    pre_stop → services → post_stop
* restart: pre_restart → stop sequence → start sequence → post_restart

Global ``pre_start``/``post_start``/``pre_stop``/``post_stop`` run only when the
whole config is acted on, not for named services.
"""

import logging

import gevent

from keplerd.logs.store import GLOBAL
from keplerd.model import actions, deps, graph
from keplerd.supervise.hooks import HookFailed, run_hook

log = logging.getLogger("keplerd.lifecycle")


class ActionFailed(Exception):
    """A start, stop or restart was aborted (a guarding hook failed); the message says why."""


def start(project, names=(), how=actions.PLAIN):
    """Start *names* (all when empty) and, unless ``how.no_deps``, what they depend on.

    *how* (an ``actions.Start``) says what is awaited and which hooks follow.
    Returns the started names in start order. Global ``on_init``/``pre_start`` run
    before any service and abort everything when they fail; ``post_start`` (and the
    global hooks in ``how.then``) run in the background once the startup cluster is up.
    """
    whole = not names
    wanted = {service.name for service in project.select(names)}
    if names and not how.no_deps:
        wanted = graph.dependencies_closure(wanted, project.edges())
    ordered = project.start_order(wanted)
    if how.global_init:
        _global_on_init(project)
    if whole:
        _guard(project, "pre_start")
        project.logs.apply_retention(GLOBAL, "on_restart" if how.restarting else "on_start")
    for name in ordered:
        project.services[name].start(how)
    hooks = (("post_start",) if whole else ()) + tuple(how.then)
    if any(hook in project.global_hooks for hook in hooks):
        project.spawn(_after_startup, project, ordered, hooks)
    return ordered


def stop(project, names=(), signum=None, why=actions.BY_USER):
    """Stop *names* (all when empty), dependents before their dependencies.

    *why* is ``actions.BY_USER``, ``SHUTDOWN`` or ``RESTART``. A failing guard hook
    (global or per service ``pre_stop``/``pre_restart``) aborts with
    ``ActionFailed``; services already stopped stay stopped.
    """
    whole = not names
    targets = {service.name for service in project.select(names)}
    if whole and why != actions.SHUTDOWN:
        _guard(project, "pre_stop")
    failures = _stop_in_reverse_order(project, targets, signum, why)
    if failures:
        raise ActionFailed("; ".join(failures))
    if whole and why != actions.SHUTDOWN:
        if why == actions.BY_USER:
            project.logs.apply_retention(GLOBAL, "on_stop")
        _logged(project, "post_stop")


def _stop_in_reverse_order(project, targets, signum, why):
    """Stop each target once every target depending on it is stopped; return failures.

    The stoppers belong to the project. A bug in one stopper does not keep the
    others from stopping their services: it is raised once all have finished.
    """
    edges = project.edges()
    stoppers, failures = {}, []

    def stop_after_dependents(name):
        gevent.joinall([stoppers[other] for other in targets if other != name and name in edges[other]])
        project.system.take_turn()
        try:
            project.services[name].stop(signum, why)
        except HookFailed as failure:
            failures.append(f"{name}: {failure}")

    for name in targets:
        stoppers[name] = gevent.Greenlet(stop_after_dependents, name)
    for greenlet in stoppers.values():
        project.adopt(greenlet)
    gevent.joinall(list(stoppers.values()))
    crashed = [greenlet for greenlet in stoppers.values() if greenlet.exception is not None]
    if crashed:
        raise crashed[0].exception
    return failures


def clean(project):
    """Run the global ``pre_cleanup`` hook before the config's state dir is removed."""
    _guard(project, "pre_cleanup")


def restart(project, names=(), reason="user", dependents=True):
    """Restart *names* (all when empty) and, with *dependents*, their running ``restart: true`` dependents.

    Each service runs ``pre_restart`` → stop → start → ``post_restart``; a whole
    config is wrapped in the global ``pre_restart``/``post_restart``. *reason*
    (user, watch, dependency) is recorded on *names*; their dependents record
    ``dependency``.
    """
    whole = not names
    selected = [service.name for service in project.select(names)]
    targets = selected + (running_dependents(project, selected) if dependents else [])
    if whole:
        _guard(project, "pre_restart")
    stop(project, [] if whole else targets, why=actions.RESTART)
    for name in targets:
        project.services[name].note_restart(reason if name in selected else "dependency")
    how = actions.AFTER_RESTART.replace(then=("post_restart",)) if whole else actions.AFTER_RESTART
    return start(project, [] if whole else targets, how)


def running_dependents(project, names):
    """Return the ``restart: true`` dependents of *names* that run (a stopped one stays stopped)."""
    return [name for name in restart_closure(project, names)
            if name not in names and project.services[name].supervised]


def restart_closure(project, names):
    """Return *names* plus every instance of each service that depends on one of them with ``restart: true``."""
    found = list(names)
    queue = list(dict.fromkeys(project.services[name].base for name in names))
    reached = set(queue)
    while queue:
        changed = queue.pop()
        for base, spec in project.snapshot["services"].items():
            edge = spec["depends_on"].get(changed)
            if edge and edge.get("restart") and base not in reached:
                reached.add(base)
                queue.append(base)
                found.extend(service.name for service in project.instances(base) if service.name not in found)
    return found


def dependents_to_restart(project, name):
    """Return the running ``restart: true`` dependents of *name* (transitively), which restart with it."""
    return running_dependents(project, [name])


def restart_requested(project, names, reason):
    """Restart *names* for *reason*; return ``(started names, None)`` or ``(None, why it failed)``.

    What ``Project.request_restart`` runs. A restart the daemon makes on its own
    (watch, dependency) leaves alone a service that stopped meanwhile, and its
    failure is only logged; a user's starts a stopped service and reports failure.
    A watch's starts again a service down by its own doing (exited, killed, gave
    up, failed): only a stop disarms the watch (SPEC §10).
    """
    if reason == "watch":
        names = [name for name in names if project.services[name].supervised or project.services[name].watch_armed]
        if not names:
            return [], None
    elif reason != "user":
        names = [name for name in names if project.services[name].supervised]
        if not names:
            return [], None
        if reason == "dependency":  # a watch restart logged its changed path already
            log.info("%s: %s restart too: a dependency restarted", project.name, ", ".join(names))
    try:
        return restart(project, names, reason), None
    except (ActionFailed, HookFailed) as failure:
        if reason != "user":
            log.warning("%s: restart of %s (%s) failed: %s", project.name, ", ".join(names), reason, failure)
        return None, str(failure)


def wait_startup(project, names, timeout=None):
    """Wait until every startup-cluster service in *names* has started or failed.

    Returns ``(failed, pending)``: the services that failed and, on timeout, those
    still starting. Deferred services are not waited for.
    """
    cluster = [project.services[name] for name in names if project.services[name].spec["effective_wait"]]
    with gevent.Timeout(timeout, False):
        while any(deps.startup_outcome(service) == "pending" for service in cluster):
            project.wait_change()
    outcomes = {service.name: deps.startup_outcome(service) for service in cluster}
    failed = [name for name, outcome in outcomes.items() if outcome == "failed"]
    pending = [name for name, outcome in outcomes.items() if outcome == "pending"]
    return failed, pending


def _after_startup(project, names, hooks):
    failed, _ = wait_startup(project, names)
    if failed:
        log.warning("%s: not running %s: startup failed for %s", project.name, ", ".join(hooks), ", ".join(failed))
        return
    for hook in hooks:
        _logged(project, hook)


def _global_on_init(project):
    """Run the global ``on_init`` before the first start after a bake."""
    if project.on_init_done:
        return
    _guard(project, "on_init")
    project.on_init_done = True
    project.persist()


def _guard(project, name):
    """Run a global hook that guards an action; its failure aborts the action."""
    hook = project.global_hooks.get(name)
    if hook is None:
        return
    try:
        run_hook(project, "global", name, hook)
    except HookFailed as failure:
        raise ActionFailed(f"global {failure}") from None


def _logged(project, name):
    """Run a global ``post_*`` hook; a failure is only logged."""
    hook = project.global_hooks.get(name)
    if hook is None:
        return
    try:
        run_hook(project, "global", name, hook)
    except HookFailed:
        pass  # run_hook logged it, in the daemon log and in the hook's own log
