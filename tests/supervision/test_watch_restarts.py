"""restart.watch (SPEC §10) in-process: a real inotify watch on a temp dir, fake children."""

import errno
import os

from inotify_simple import INotify

from keplerd.model import states

WATCHED = """
services:
  web:
    command: [web]
    restart: {policy: always, watch: ["*.py"]}
    hooks: {pre_restart: {run: 'true'}, post_restart: {run: 'true'}}
  api:
    command: [api]
    depends_on: {web: {condition: service_started, restart: true}}
"""


def touch(stack, name):
    with open(os.path.join(stack.tmp_path, name), "a") as file:
        file.write("x")


def test_a_matching_change_restarts_through_the_restart_path_and_propagates(stack):
    stack.load(WATCHED)
    stack.start()
    stack.wait_status("api", states.RUNNING)
    touch(stack, "app.py")
    stack.system.wait_spawn("api", count=2)
    stack.wait_status("api", states.RUNNING)
    web = stack["web"]
    assert (web.restarts, web.restart_reason) == (1, "watch")
    assert stack["api"].restart_reason == "dependency"
    assert stack.system.spawns("web") == ["web", "web.pre_restart", "web", "web.post_restart"]


class LimitedInotify(INotify):
    """A real inotify that refuses watches beyond *limit*, as the kernel does past max_user_watches."""

    limit = 3

    def add_watch(self, path, mask):
        if getattr(self, "added", 0) >= self.limit:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.added = getattr(self, "added", 0) + 1
        return super().add_watch(path, mask)


def test_watch_limit_exhaustion_is_reported_and_the_service_keeps_running(stack):
    for index in range(30):
        os.makedirs(os.path.join(stack.tmp_path, "src", f"d{index}"))
    stack.system.inotify = LimitedInotify
    stack.load("services:\n  web: {command: [web], restart: {policy: always, watch: ['src/**']}}\n")
    stack.start()
    stack.wait_status("web", states.RUNNING)
    web = stack["web"].runtime()
    assert "inotify watch limit reached (fs.inotify.max_user_watches" in web["watch_error"]
    assert web["status"] == states.RUNNING and web["watched_dirs"] == 3
    stack.project.logs.flush()
    with open(os.path.join(stack.project.paths.logs, "web.stderr.log"), "rb") as log:
        assert b"kepler: web: inotify watch limit reached" in log.read()
