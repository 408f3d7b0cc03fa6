"""Dependency conditions (SPEC §7): is an edge satisfied, and can it still become so?

Pure functions over a dependency's observable state (anything with ``status``,
``exit_code``, ``reached_up`` and ``was_healthy``), so they are tested without
processes.
"""

from keplerd.model import states

# A dependency has started once its start sequence (spawn, post_start) has run in its
# current run. One that then ended on its own (or is being restarted by its policy)
# still counts: as in docker compose, a short-lived dependency satisfies
# service_started even if it is gone by the time we look.
_STARTED_THEN_ENDED = frozenset({states.STARTING, states.EXITED, states.KILLED})


def condition_met(dependency, condition, exit_codes=None):
    """Tell whether *dependency* satisfies *condition* (with the optional exit code filter)."""
    status = dependency.status
    if condition == "service_started":
        return dependency.reached_up and (status in states.UP or status in _STARTED_THEN_ENDED)
    if condition == "service_healthy":
        return status == states.HEALTHY and dependency.reached_up
    if condition == "service_completed_successfully":
        return status == states.EXITED and dependency.exit_code == 0
    if condition == "service_unhealthy":
        return status == states.UNHEALTHY and dependency.was_healthy
    if condition == "service_failed":
        failed = status in (states.KILLED, states.FAILED) or (status == states.EXITED and dependency.exit_code != 0)
        return failed and exit_code_matches(dependency.exit_code, exit_codes)
    if condition == "service_stopped":
        return status in states.TERMINAL and exit_code_matches(dependency.exit_code, exit_codes)
    raise ValueError(f"unknown condition {condition!r}")


def exit_code_matches(exit_code, ranges):
    """Tell whether *exit_code* is in one of the inclusive *ranges* (no filter: always)."""
    if not ranges:
        return True
    return exit_code is not None and any(low <= exit_code <= high for low, high in ranges)


def never_satisfiable(dependency, condition, exit_codes=None):
    """Tell whether the condition can no longer become true.

    A dependency in a terminal state stays there until someone starts it again
    (its restart policy has already declined), so an unmet condition on it is
    permanently unmet.
    """
    return dependency.status in states.TERMINAL and not condition_met(dependency, condition, exit_codes)


def describe(name, edge):
    """Return ``db (service_healthy)`` for messages."""
    return f"{name} ({edge['condition']})"


def startup_outcome(service):
    """Return how far a starting service got: ``started``, ``failed`` or ``pending``.

    Used by ``start --wait`` and the global ``post_start`` hook. A service that ran
    and completed with code 0, or that is being restarted by its policy after
    having run, counts as started.
    """
    status = service.status
    if status == states.EXITED and service.exit_code == 0:
        return "started"
    if service.reached_up and (status in states.UP or status == states.STARTING):
        return "started"
    if status in (states.FAILED, states.KILLED, states.EXITED, states.STOPPED):
        return "failed"
    return "pending"
