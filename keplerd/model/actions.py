"""What a start, stop or restart is asked to do: plain data from lifecycle to each service.

>>> Start(no_deps=True).awaited()
frozenset()
>>> counted("policy"), counted("user")
(True, False)
"""

from keplerd.model.record import Record


# Why a service is stopped: a user asked; the daemon shuts down (the desired state
# stays, so the next daemon brings it back; nothing may abort it); or it is the
# stop half of a restart (pre_restart guards it, log retention is the start half's).
BY_USER, SHUTDOWN, RESTART = "user", "shutdown", "restart"
# The stop half of ``apply``'s restart of a changed service: pre_restart guards it
# as for RESTART, but the desired state stays up, as for SHUTDOWN: a daemon that
# dies before the start half brings the service back, with its new definition.
APPLY = "apply"
# Stops that leave the desired state as it is (and that pre_stop cannot abort).
KEEPS_DESIRED = frozenset({SHUTDOWN, APPLY})

# Why a service restarts. The ones the daemon makes on its own count in
# ``restarts`` (crash loops, edit loops); asked-for and propagated ones do not.
RESTART_REASONS = ("user", "policy", "watch", "dependency", "unhealthy", "apply")
_COUNTED = frozenset({"policy", "watch", "unhealthy"})


def counted(reason):
    """Tell whether a restart for *reason* adds one to the service's ``restarts``."""
    return reason in _COUNTED


class Start(Record):
    """How services start, beyond which ones.

    *no_deps*: start only the named services, awaiting no dependency unless
    *wait_on* names some; *wait_on*: the dependencies whose conditions are awaited
    (None: all); *after_start*: service hooks run after ``post_start``
    (``post_restart``); *then*: global hooks run once the startup cluster is up;
    *restarting*: the start half of a restart (log retention ``on_restart``);
    *global_init*: run the global ``on_init`` first if it has not run (``apply`` never does).
    """

    no_deps: bool = False
    wait_on: frozenset | None = None
    after_start: tuple = ()
    then: tuple = ()
    restarting: bool = False
    global_init: bool = True

    def awaited(self):
        """Return the dependencies awaited (None: all of them)."""
        if self.wait_on is None and self.no_deps:
            return frozenset()
        return self.wait_on


PLAIN = Start()
AFTER_RESTART = Start(after_start=("post_restart",), restarting=True)
