"""Just enough of a Project for one Service, without processes or files (in-process health tests)."""

from gevent.pool import Group


class FakeWriter:
    def __init__(self):
        self.lines = []

    def write(self, stream, data):
        self.lines.append((stream, data))


class FakeLogs:
    def __init__(self):
        self.output = FakeWriter()

    def writer(self, name, settings=None):
        return self.output

    def apply_retention(self, owner, event):
        pass


class SweepOnlySystem:
    """The crash handler still sweeps strays; nothing else of the OS is asked for."""

    def __init__(self):
        self.sweeps = []

    def service_mark(self, config_id, owner):
        return f"{config_id}/{owner}"

    def collect_strays(self, mark, main=None):
        self.sweeps.append(mark)
        return []


class FakeProject:
    """Just enough of a Project for one Service, without processes or files."""

    name = "test.yaml"
    id = "0123456789abcdef"

    def __init__(self):
        self.system = SweepOnlySystem()  # the supervisor crashes before it spawns anything
        self.greenlets = Group()
        self.logs = FakeLogs()

    def spawn(self, function, *args):
        return self.greenlets.spawn(function, *args)

    def service_changed(self, service):
        pass

    def record(self, service, kind, **fields):
        pass  # the event feed (keplerctl events) has no reader here

    def persist(self):
        pass

    def replica_count(self, base):
        return 1


SPEC = {"command": ["true"], "env": {}, "working_dir": "/", "depends_on": {}, "hooks": {},
        "restart": {"policy": "no", "watch": [], "backoff": 0.1, "max_backoff": 30.0, "max_retries": None},
        "healthcheck": None, "stop_signal": 15, "stop_grace_period": 1.0, "logs": None}
