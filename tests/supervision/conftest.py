"""In-process supervision: a real Project on a FakeSystem, baked from YAML like the daemon does."""

import os
import textwrap

import gevent
import pytest

from keplerd.config.bake import bake
from keplerd.model import actions
from keplerd.supervise import lifecycle
from keplerd.supervise.project import Project
from tests.supervision.fake_system import FakeSystem

WAIT_SECONDS = 5


class Stack:
    """One config loaded in-process: bake YAML, drive it with lifecycle, watch its states."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.system = FakeSystem()
        self.project = None

    def load(self, yaml_text):
        """Bake *yaml_text* and load it as a Project on the fake system."""
        path = os.path.join(self.tmp_path, "kepler.yaml")
        with open(path, "w") as file:
            file.write(textwrap.dedent(yaml_text))
        baked = bake(path, {"PATH": "/usr/bin:/bin"}, str(self.tmp_path))
        self.project = Project.create(os.path.join(self.tmp_path, "state"), "c1", baked, system=self.system)
        return self

    def __getitem__(self, name):
        return self.project.services[name]

    def start(self, *names, **options):
        return lifecycle.start(self.project, list(names), actions.Start(**options))

    def stop(self, *names, **options):
        return lifecycle.stop(self.project, list(names), **options)

    def restart(self, *names, **options):
        return lifecycle.restart(self.project, list(names), **options)

    def status(self, name):
        return self[name].status

    def wait_for(self, predicate, what="condition", timeout=WAIT_SECONDS):
        """Block (cooperatively) until *predicate()* holds, re-checking on every state change."""
        with gevent.Timeout(timeout, AssertionError(f"timed out waiting for {what}: {self.statuses()}")):
            while not predicate():
                self.project.wait_change(timeout=0.05)

    def wait_status(self, name, *statuses, timeout=WAIT_SECONDS):
        self.wait_for(lambda: self.status(name) in statuses, f"{name} in {statuses}", timeout)

    def statuses(self):
        return {name: service.status for name, service in self.project.services.items()}

    def in_background(self, function, *args, **kwargs):
        """Run *function* in a greenlet of the project (a client request, as the server would)."""
        return self.project.spawn(lambda: function(*args, **kwargs))

    def close(self):
        if self.project is not None:
            with gevent.Timeout(WAIT_SECONDS, False):
                self.project.shutdown()
            self.project.close()


@pytest.fixture
def stack(tmp_path):
    stack = Stack(tmp_path)
    yield stack
    stack.close()
