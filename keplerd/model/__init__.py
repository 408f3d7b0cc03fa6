"""Pure logic and data: states, dependency graph and conditions, back-off, globs, actions, defaults, errors.

Nothing here imports gevent, does I/O or touches processes.
"""
