"""A config's log store: writers by log name, settings per owner, retention of a service's logs."""

import os

from keplerd.logs.store import LogStore
from tests.unit.test_log_writer import FakeTimers


def touch(directory, *names):
    for name in names:
        with open(os.path.join(directory, name), "w") as file:
            file.write("1 x\n")


def test_clearing_a_service_removes_its_hook_logs_but_no_one_elses(tmp_path):
    logs = str(tmp_path)
    touch(logs, "web.stdout.log", "web.stderr.log", "web.stdout.log.1", "web.pre_start.stdout.log",
          "web.post_exit.stderr.log.1", "web-api.stdout.log", "api.stdout.log", "global.pre_start.stdout.log")
    store = LogStore(logs, set(), timers=FakeTimers())
    store.writer("web", {"retention": {"on_exit": "clear"}})
    assert store.apply_retention("web", "on_exit") is True
    assert sorted(os.listdir(logs)) == ["api.stdout.log", "global.pre_start.stdout.log", "web-api.stdout.log"]


def test_retention_follows_each_owners_settings(tmp_path):
    logs = str(tmp_path)
    touch(logs, "web.stdout.log", "global.on_init.stdout.log")
    store = LogStore(logs, set(), global_settings={"retention": {"on_start": "clear"}}, timers=FakeTimers())
    store.writer("web", {})
    assert store.apply_retention("web", "on_start") is False
    assert store.apply_retention("web", "on_restart") is False
    assert store.apply_retention("global", "on_start") is True
    assert os.listdir(logs) == ["web.stdout.log"]
    assert store.apply_retention("web", "on_stop") is False, "logs survive a stop by default"
    assert os.listdir(logs) == ["web.stdout.log"]


def test_retention_flushes_buffers_first(tmp_path):
    timers = FakeTimers()
    store = LogStore(str(tmp_path), set(), timers=timers)
    writer = store.writer("web", {"buffer_size": 1 << 20, "retention": {"on_stop": "retain"}})
    writer.write("stdout", b"1 buffered\n")
    store.apply_retention("web", "on_stop")
    assert (tmp_path / "web.stdout.log").read_bytes() == b"1 buffered\n"
    assert timers.pending == []


def test_a_hook_log_uses_its_services_settings(tmp_path):
    store = LogStore(str(tmp_path), set(), global_settings={"store": {"stdout": True}}, timers=FakeTimers())
    store.writer("web", {"store": {"stdout": False, "stderr": True}})
    store.writer("web.pre_start").write("stdout", b"1 not stored\n")
    store.writer("global.pre_start").write("stdout", b"1 stored\n")
    store.close()
    assert sorted(os.listdir(tmp_path)) == ["global.pre_start.stdout.log"]


def test_an_instances_retention_and_release_touch_only_that_instance(tmp_path):
    logs = str(tmp_path)
    touch(logs, "web.1.stdout.log", "web.1.pre_start.stdout.log", "web.2.stdout.log", "web.2.pre_start.stdout.log")
    store = LogStore(logs, set(), timers=FakeTimers())
    clear_on_stop = {"retention": {"on_stop": "clear"}}
    first = store.writer("web.2", clear_on_stop)
    store.writer("web.2.pre_start")
    store.writer("web.1", clear_on_stop)
    assert store.apply_retention("web.2", "on_stop") is True
    assert sorted(os.listdir(logs)) == ["web.1.pre_start.stdout.log", "web.1.stdout.log"]
    store.release("web.2")
    assert store.writer("web.2", {}) is not first
    assert store.writer("web.1") is store.writer("web.1")


def test_renaming_an_instance_carries_its_files_segments_hook_logs_and_open_writers(tmp_path):
    logs = str(tmp_path)
    touch(logs, "web.stdout.log.1", "web.pre_start.stderr.log", "web-api.stdout.log", "web.2.stdout.log",
          "web.1.stderr.log")  # web.1's: left by an earlier instance of that name
    store = LogStore(logs, set(), timers=FakeTimers())
    writer = store.writer("web", {"max_size": 80})
    writer.write("stdout", b"1 before the rename\n")
    store.rename("web", "web.1")
    assert sorted(os.listdir(logs)) == ["web-api.stdout.log", "web.1.pre_start.stderr.log", "web.1.stdout.log",
                                        "web.1.stdout.log.1", "web.2.stdout.log"]
    assert store.writer("web.1") is writer and writer.name == "web.1"
    writer.write("stdout", b"2 after\n")
    assert (tmp_path / "web.1.stdout.log").read_bytes() == b"1 before the rename\n2 after\n"
    writer.write("stdout", b"3 rotates under the new name\n")
    assert (tmp_path / "web.1.stdout.log.1").read_bytes() == b"1 before the rename\n2 after\n"
    assert not [name for name in os.listdir(logs) if name.startswith("web.std")]
    assert store.settings("web.1").max_size == 80


def test_renaming_back_to_the_plain_name_replaces_what_an_earlier_plain_instance_left(tmp_path):
    logs = str(tmp_path)
    touch(logs, "web.stdout.log", "web.stdout.log.1", "web.1.stdout.log")
    store = LogStore(logs, set(), timers=FakeTimers())
    store.rename("web.1", "web")
    assert sorted(os.listdir(logs)) == ["web.stdout.log"]
