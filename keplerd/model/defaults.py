"""Defaults that several parts of Kepler must agree on, written once.

The bake, the daemon's settings, the spawner and the exports all use these; the
man pages state them (tests/unit/test_man_pages.py checks the ones they parse).
"""

# PATH for finding a program when the service's environment has none (SPEC §2).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Seconds between the stop signal and SIGKILL when a service sets no stop_grace_period.
STOP_GRACE_PERIOD = 10.0

# A service's logs when neither it nor ``kepler.logs`` says otherwise (SPEC §11).
LOG_DEFAULTS = {
    "max_size": None,
    "buffer_size": 0,
    "store": {"stdout": True, "stderr": True},
    "retention": {"on_start": "retain", "on_stop": "retain", "on_restart": "retain", "on_exit": "retain"},
}

# The daemon's log levels (keplerd.conf ``log_level``, ``--log-level``).
LOG_LEVELS = ("debug", "info", "warning", "error")
CONTAINMENTS = ("auto", "process-group")  # keplerd.conf containment (SPEC §19)

# The Lua of one config gets this much memory and CPU time per bake.
LUA_MEMORY_LIMIT = 64 << 20
LUA_TIME_LIMIT = 2.0
