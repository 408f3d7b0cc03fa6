"""restart.watch (SPEC §10) in-process: a real inotify watch on a temp dir, fake children."""

import os

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
