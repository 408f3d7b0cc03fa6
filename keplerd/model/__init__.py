"""Pure supervision logic: states, dependency graph and conditions, back-off, globs.

Nothing here imports gevent, does I/O or touches processes.
"""
