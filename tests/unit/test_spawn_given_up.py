"""A spawn given up while its child execs (the spawning greenlet killed) leaves no process behind.

The C spawner returns before the child has exec'd; the daemon waits for the exec
report cooperatively, and a stop may kill the waiting greenlet then (a probe of a
service being stopped). Nobody else knows the child: the spawn itself must end it.
"""

import os

import gevent

from keplerd.osproc import process


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_spawn_given_up_before_the_exec_report_kills_its_child_and_its_group(monkeypatch, tmp_path):
    waiting, pids = gevent.event.Event(), []

    def exec_report_never_comes(fd):
        waiting.set()
        gevent.sleep(60)

    class Recorded(process.Child):
        def __init__(self, pid, cgroup=None):
            pids.append(pid)
            super().__init__(pid, cgroup)

    monkeypatch.setattr(process, "_read_exec_report", exec_report_never_comes)
    monkeypatch.setattr(process, "Child", Recorded)
    started = tmp_path / "started"
    script = f"sleep 1000 & echo $! > {started}; wait"
    keep_alive = gevent.get_hub().loop.timer(60)  # the child watcher alone keeps no loop running
    keep_alive.start(lambda: None)
    try:
        spawner = gevent.spawn(process.spawn, ["sh", "-c", script], {"PATH": "/usr/bin:/bin"}, "/")
        assert waiting.wait(10)
        with gevent.Timeout(10):
            while not started.exists() or not started.read_text().strip():
                gevent.sleep(0.01)
        background = int(started.read_text())
        spawner.kill()
        with gevent.Timeout(10, AssertionError("the abandoned child or its background sleep lives on")):
            while _alive(pids[0]) or _alive(background):
                gevent.sleep(0.01)
    finally:
        keep_alive.stop()
        for pid in pids:
            try:
                os.killpg(pid, 9)
            except ProcessLookupError:
                pass
