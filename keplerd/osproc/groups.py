"""Process groups: signal one, and tell whether it still has members.

Each child starts its own session, so its pid is its process group id. Shared by
``process`` (stop signals) and ``proctree`` (the final SIGKILL).
"""

import os


def signal_group(pgid, signum):
    """Send *signum* to a process group; a group that is already gone is fine (returns False)."""
    try:
        os.killpg(pgid, signum)
        return True
    except ProcessLookupError:
        return False


def group_alive(pgid):
    """Return True while a member of the group exists.

    A zombie member counts, but not for long: the daemon is a child subreaper, so
    orphans of its services become its children and gevent's loop reaps them.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
