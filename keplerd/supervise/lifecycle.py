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
from keplerd.model import deps, graph
from keplerd.supervise.hooks import HookFailed, run_hook

log = logging.getLogger("keplerd.lifecycle")


class ActionFailed(Exception):
    """A start, stop or restart was aborted (a guarding hook failed); the message says why."""


def start(project, names=(), no_deps=False, wait_on=None, after_start=(), then=(), restarting=False,
          global_init=True):
    """Start *names* (all when empty) and, unless *no_deps*, what they depend on.

    *wait_on* limits the dependencies awaited (default: all, or none with *no_deps*).
    Returns the started names in start order. Global ``on_init``/``pre_start`` run
    before any service and abort everything when they fail (``on_init`` not at all
    without *global_init*: ``apply`` never runs it); ``post_start`` (and the global
    hooks in *then*) run in the background once the startup cluster is up.
    """
    whole = not names
    wanted = {service.name for service in project.select(names)}
    if names and not no_deps:
        wanted = graph.dependencies_closure(wanted, project.edges())
    ordered = [name for name in project.snapshot["start_order"] if name in wanted]
    if global_init:
        _global_on_init(project)
    if whole:
        _guard(project, "pre_start")
        project.logs.apply_retention(GLOBAL, "on_restart" if restarting else "on_start")
    if wait_on is None and no_deps:
        wait_on = set()
    for name in ordered:
        project.services[name].start(wait_on=wait_on, after_start=after_start, restarting=restarting)
    hooks = (("post_start",) if whole else ()) + tuple(then)
    if any(hook in project.global_hooks for hook in hooks):
        project.spawn(_after_startup, project, ordered, hooks)
    return ordered


def stop(project, names=(), signum=None, by_user=True, restarting=False):
    """Stop *names* (all when empty), dependents before their dependencies.

    A failing guard hook (global or per service ``pre_stop``/``pre_restart``)
    aborts with ``ActionFailed``; services already stopped stay stopped.
    """
    whole = not names
    targets = {service.name for service in project.select(names)}
    if whole and by_user:
        _guard(project, "pre_stop")
    failures = _stop_in_reverse_order(project, targets, signum, by_user, restarting)
    if failures:
        raise ActionFailed("; ".join(failures))
    if whole and by_user:
        if not restarting:
            project.logs.apply_retention(GLOBAL, "on_stop")
        _logged(project, "post_stop")


def _stop_in_reverse_order(project, targets, signum, by_user, restarting):
    """Stop each target once every target depending on it is stopped; return failures.

    The stoppers belong to the project. A bug in one stopper does not keep the
    others from stopping their services: it is raised once all have finished.
    """
    edges = project.edges()
    stoppers, failures = {}, []

    def stop_after_dependents(name):
        gevent.joinall([stoppers[other] for other in targets if other != name and name in edges[other]])
        try:
            project.services[name].stop(signum, by_user=by_user, restarting=restarting)
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


def restart(project, names=(), reason="user"):
    """Restart *names* (all when empty) and their running ``restart: true`` dependents.

    Each service runs ``pre_restart`` → stop → start → ``post_restart``; a whole
    config is wrapped in the global ``pre_restart``/``post_restart``. *reason*
    (user, watch, dependency) is recorded on *names*; their dependents record
    ``dependency``.
    """
    whole = not names
    selected = [service.name for service in project.select(names)]
    # A dependent restarts with its dependency only if it runs: a stopped one stays stopped.
    targets = selected + [name for name in restart_closure(project, selected)
                          if name not in selected and project.services[name].supervised]
    if whole:
        _guard(project, "pre_restart")
    stop(project, [] if whole else targets, restarting=True)
    for name in targets:
        project.services[name].note_restart(reason if name in selected else "dependency")
    return start(project, [] if whole else targets, after_start=("post_restart",),
                 then=("post_restart",) if whole else (), restarting=True)


def restart_closure(project, names):
    """Return *names* plus every service that depends on one of them with ``restart: true``."""
    found, queue = list(names), list(names)
    while queue:
        changed = queue.pop()
        for name, spec in project.snapshot["services"].items():
            edge = spec["depends_on"].get(changed)
            if edge and edge.get("restart") and name not in found:
                found.append(name)
                queue.append(name)
    return found


def bounce_dependents(project, dependency):
    """Restart the ``restart: true`` dependents of *dependency*, which is being restarted."""
    dependents = [name for name in restart_closure(project, [dependency.name]) if name != dependency.name]
    running = [name for name in dependents if project.services[name].supervised]
    if running:
        log.info("%s: %s restarts, so %s restart too", project.name, dependency.name, ", ".join(running))
        project.spawn(_restart_logged, project, running)


def restart_on_change(project, name, change):
    """Restart *name* because the watched path *change* changed; a failure is only logged."""
    if not project.services[name].supervised:
        return  # stopped meanwhile: a stopped service is not restarted by file changes
    log.info("%s: restarting %s: watch: %s changed", project.name, name, change)
    try:
        restart(project, [name], reason="watch")
    except (ActionFailed, HookFailed) as failure:
        log.warning("%s: restart of %s after %s changed: %s", project.name, name, change, failure)


def _restart_logged(project, names):
    try:
        restart(project, names, reason="dependency")
    except (ActionFailed, HookFailed) as failure:
        log.warning("%s: restart of %s after their dependency restarted: %s", project.name,
                    ", ".join(names), failure)


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
