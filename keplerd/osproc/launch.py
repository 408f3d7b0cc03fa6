"""Start a child whose stdout and stderr are pumped into a log writer.

Shared by services and hooks: both spawn from a baked spec (``command``, ``env``,
``working_dir``, ``user``, ``group``, ``limits``) and log every line.
"""

import os

import gevent

from keplerd.osproc import cgroups, process


def spawn_logged(writer, spec, instance=None, env=None, gate=None):
    """Spawn *spec* with its output going to *writer*; return ``(child, pumps)``.

    *instance* is ``(config id, service)`` for a service's own process, which gets
    its cgroup (when cgroups are in use) with the limits of *spec* applied. *env*
    replaces ``spec["env"]`` (the service's, with the stray mark). *gate* is held
    while the child is started (``process.spawn``). Pumps are waitable like
    greenlets (``gevent.joinall``). Raises ``process.SpawnError``.
    """
    cgroup = None
    if instance is not None:
        try:
            cgroup = cgroups.prepare(*instance, spec.get("limits"))
        except cgroups.LimitUnavailable as error:
            raise process.SpawnError(str(error)) from None
    try:
        return _spawn_with_pipes(writer, spec, cgroup, env, gate)
    except process.SpawnError:
        if cgroup is not None:
            cgroups.kill_and_remove(cgroup, gevent.sleep)  # the failed child is reaped: it is empty
        raise


def _spawn_with_pipes(writer, spec, cgroup, env, gate):
    try:
        out_read, out_write = os.pipe2(os.O_CLOEXEC)
    except OSError as error:
        raise process.SpawnError(f"cannot create pipes for the output: {error.strerror}") from None
    try:
        err_read, err_write = os.pipe2(os.O_CLOEXEC)
    except OSError as error:
        for fd in (out_read, out_write):
            os.close(fd)
        raise process.SpawnError(f"cannot create pipes for the output: {error.strerror}") from None
    try:
        child = process.spawn(spec["command"], spec["env"] if env is None else env, spec["working_dir"],
                              user=spec.get("user"), group=spec.get("group"), limits=spec.get("limits"),
                              stdout=out_write, stderr=err_write, cgroup=cgroup, gate=gate)
    except BaseException:
        for fd in (out_read, err_read):
            os.close(fd)
        raise
    finally:
        for fd in (out_write, err_write):
            process.close_now(fd)
    pumps = []
    for stream, fd in (("stdout", out_read), ("stderr", err_read)):
        os.set_blocking(fd, False)
        pumps.append(writer.start_pump(stream, fd))
    return child, pumps
