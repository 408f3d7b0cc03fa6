"""When a service that ended on its own comes back, and after how long (SPEC §10).

Pure logic: the supervisor asks, this module answers.

>>> backoff = Backoff(first=0.1, maximum=30.0, max_retries=None)
>>> [backoff.next_delay(run_seconds=1) for _ in range(4)]
[0.0, 0.1, 0.2, 0.4]
>>> backoff.next_delay(run_seconds=60)   # a long run resets the back-off
0.0
>>> backoff.next_delay(run_seconds=1), backoff.reset(), backoff.next_delay(run_seconds=1)
(0.1, None, 0.0)
"""

QUICK_RUN_SECONDS = 10.0


def wants_restart(policy, returncode):
    """Tell whether *policy* restarts a process that ended with *returncode*.

    A negative *returncode* is death by that signal, which counts as a failure.
    """
    if policy == "always":
        return True
    if policy == "on-failure":
        return returncode != 0
    return False


class Backoff:
    """The crash-loop back-off: immediate first restart, then doubling delays."""

    def __init__(self, first, maximum, max_retries):
        self.first = first
        self.maximum = maximum
        self.max_retries = max_retries
        self.quick_failures = 0

    @classmethod
    def from_spec(cls, restart):
        return cls(restart["backoff"], restart["max_backoff"], restart["max_retries"])

    def reset(self):
        """Forget the crash loop: the service proved itself (a healthy run, SPEC §10)."""
        self.quick_failures = 0

    def next_delay(self, run_seconds):
        """Return the delay before the next restart, or ``None`` to give up."""
        if run_seconds >= QUICK_RUN_SECONDS:
            self.quick_failures = 0
        if self.max_retries is not None and self.quick_failures >= self.max_retries:
            return None
        if self.quick_failures == 0 or self.first == 0:
            delay = 0.0
        else:
            delay = min(self.first * 2 ** (self.quick_failures - 1), self.maximum)
        self.quick_failures += 1
        return delay
