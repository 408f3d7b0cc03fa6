"""Service states and the transitions allowed between them (SPEC §13).

Imports nothing: this is data that the supervisor, the dependency logic and the
CLI's formatting all read.
"""

STOPPED = "stopped"
STARTING = "starting"
RUNNING = "running"
HEALTHY = "healthy"
UNHEALTHY = "unhealthy"
STOPPING = "stopping"
EXITED = "exited"
KILLED = "killed"
FAILED = "failed"

ALL = (STOPPED, STARTING, RUNNING, HEALTHY, UNHEALTHY, STOPPING, EXITED, KILLED, FAILED)

# A service in one of these has no process and nothing will bring it back by itself.
TERMINAL = frozenset({STOPPED, EXITED, KILLED, FAILED})

# A process exists (or is being spawned, or waits to be restarted).
ACTIVE = frozenset({STARTING, RUNNING, HEALTHY, UNHEALTHY, STOPPING})

# The process is up: what `service_started` waits for.
UP = frozenset({RUNNING, HEALTHY, UNHEALTHY})

# The desired state of a service (what the user asked for), not a status: UP is the set of up statuses.
DESIRED_UP = "up"
DESIRED_DOWN = "down"

_LIVE_TARGETS = {HEALTHY, UNHEALTHY, STOPPING, EXITED, KILLED, FAILED, STARTING}

TRANSITIONS = {
    STOPPED: {STARTING, FAILED},
    EXITED: {STARTING, STOPPED, FAILED},
    KILLED: {STARTING, STOPPED, FAILED},
    FAILED: {STARTING, STOPPED, FAILED},
    # STARTING -> STARTING: a new attempt after a crash (restart back-off).
    STARTING: {STARTING, RUNNING, STOPPING, STOPPED, FAILED, EXITED, KILLED},
    RUNNING: _LIVE_TARGETS,
    HEALTHY: _LIVE_TARGETS,
    UNHEALTHY: _LIVE_TARGETS,
    STOPPING: {STOPPED},
}


class TransitionError(Exception):
    """A state change the state machine does not allow: a bug, not a user error."""


def check_transition(current, new):
    """Raise ``TransitionError`` unless *current* -> *new* is allowed."""
    if new not in TRANSITIONS.get(current, ()):
        raise TransitionError(f"{current} -> {new}")
