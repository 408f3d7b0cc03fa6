"""Run lifecycle hooks (SPEC §9): spawn, log under ``<owner>.<hook>``, bound by a timeout.

A hook's baked spec already carries what it inherits (a service hook: the service's
user, working dir, environment and limits; a global hook: nothing), so running one
is just spawning it like a service and waiting.
"""

import logging
import signal

import gevent

from keplerd.logs.format import kepler_note
from keplerd.osproc import process

log = logging.getLogger("keplerd.hooks")


class HookFailed(Exception):
    """A hook exited non-zero, could not be spawned or timed out; the message says which."""


def run_hook(project, owner, name, hook):
    """Run hook *name* of *owner* (a service name or ``global``); raise ``HookFailed``.

    Output goes to the log name ``<owner>.<name>``; the hook runs in its own process
    group, killed whole when its ``timeout`` expires. Its result is an event.
    """
    with project.system.passing_child():
        mark = project.system.service_mark(project.id, owner)
        try:
            _run(project, project.logs.writer(f"{owner}.{name}"), name, hook, mark)
        except HookFailed as failure:
            project.record(owner, "hook", hook=name, ok=False, reason=str(failure))
            raise
    project.record(owner, "hook", hook=name, ok=True, reason=None)


def _run(project, writer, name, hook, mark):
    child, pumps = _spawn(project, writer, hook, mark)
    if child is None:
        raise _failure(writer, name, pumps)
    try:
        returncode = child.wait(hook.get("timeout"))
    except BaseException:
        # Whoever ran the hook is being killed (e.g. a stop during pre_start): no orphan.
        child.stop(signal.SIGKILL, 0)
        raise
    if returncode is None:
        child.stop(signal.SIGKILL, 0)
        gevent.joinall(pumps, timeout=1.0)
        raise _failure(writer, name, f"timed out after {hook['timeout']:g}s")
    gevent.joinall(pumps, timeout=1.0)
    if returncode != 0:
        reason = f"exited with code {returncode}" if returncode > 0 else f"killed by signal {-returncode}"
        raise _failure(writer, name, reason)


def _spawn(project, writer, hook, mark):
    """Return ``(child, pumps)``, or ``(None, reason)`` when the hook cannot start."""
    try:
        env = project.system.marked_env(hook["env"], project.state_dir, mark)
        return project.system.spawn_logged(writer, hook, env=env)
    except process.SpawnError as error:
        return None, str(error)


def _failure(writer, name, reason):
    writer.write("stderr", kepler_note(f"hook {name} failed: {reason}"))
    log.warning("hook %s failed: %s", writer.name, reason)
    return HookFailed(f"{name} hook {reason}")
