"""``keplerctl events`` (SPEC §19): the live stream through a real keplerd, plain and JSON."""

import json
import os
import select
import signal
import subprocess
import time

import pytest

from tests.integration.harness import DEFAULT_TIMEOUT, KEPLERCTL
from tests.integration.test_security_owners import ctl, write_config
from tests.integration.test_security_owners import members  # noqa: F401 (the fixture, used by name)


@pytest.fixture
def watch(kepler):
    """Start ``keplerctl events`` with the given flags; return a reader of its stdout lines."""
    readers = []

    def start(*flags):
        reader = subprocess.Popen([KEPLERCTL, "events", *flags], cwd=kepler.workdir, env=kepler.env(),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
        reader.pending = b""
        readers.append(reader)
        assert b"watching the events" in reader.stderr.readline()
        return reader

    yield start
    for reader in readers:
        reader.kill()
        reader.wait()


def _read_until(reader, predicate, parse=json.loads, timeout=DEFAULT_TIMEOUT):
    """Return the lines (parsed) read up to and including the first one *predicate* accepts."""
    seen = []
    deadline = time.monotonic() + timeout
    while True:
        while b"\n" not in reader.pending:
            ready, _, _ = select.select([reader.stdout], [], [], max(0.0, deadline - time.monotonic()))
            assert ready, f"no matching event within {timeout}s; got {seen}"
            chunk = reader.stdout.read(65536)
            assert chunk, f"the stream ended; got {seen}"
            reader.pending += chunk
        line, _, reader.pending = reader.pending.partition(b"\n")
        seen.append(parse(line.decode()))
        if predicate(seen[-1]):
            return seen


def test_state_changes_restarts_and_hooks_stream_as_json(kepler, watch):
    reader = watch("--all", "--json")
    path = kepler.config("""
        services:
          flaky:
            command: ["sh", "-c", "exit 3"]
            restart: {policy: on-failure, max_retries: 1, backoff: 10ms}
            hooks:
              pre_start: {command: ["true"]}
    """)
    kepler.ctl("start", "-d")
    events = _read_until(reader, lambda event: event["kind"] == "state" and event["to"] in ("exited", "failed"))
    assert all(event["config_path"] == path and event["service"] == "flaky" and event["time"] > 0
               for event in events)
    kinds = [(event["kind"], event.get("to") or event.get("hook") or event.get("reason")) for event in events]
    assert kinds.count(("hook", "pre_start")) == 2, "one per run"
    assert ("restart", "policy") in kinds
    assert kinds.count(("state", "running")) == 2
    restarting = next(event for event in events if event.get("from") == "running" and event["to"] == "starting")
    assert restarting["reason"] == "restarting after exit code 3"
    exited = events[-1]
    assert (exited["from"], exited["to"], exited["exit_code"], exited["signal"]) == ("running", "exited", 3, None)
    kepler.ctl("restart", "flaky", "-d")
    assert _read_until(reader, lambda event: event["kind"] == "restart")[-1]["reason"] == "user"


def test_the_plain_stream_shows_one_line_per_event_and_ctrl_c_ends_it(kepler, watch):
    kepler.config("""
        services:
          web:
            command: ["sleep", "1000"]
    """)
    kepler.ctl("start", "-d", "--wait")
    reader = watch()
    kepler.ctl("stop", "web")
    lines = _read_until(reader, lambda line: "stopping -> stopped" in line, parse=str.rstrip)
    assert lines[0].split()[1:] == ["kepler.yaml", "web", "running", "->", "stopping"]
    reader.send_signal(signal.SIGINT)
    assert reader.wait(15) == 0


def test_all_shows_every_config_and_one_config_only_its_own(kepler, watch):
    kepler.config("""
        services:
          web:
            command: ["sleep", "1000"]
    """)
    other = kepler.write("other/kepler.yaml", """
        services:
          db:
            command: ["sleep", "1000"]
    """)
    kepler.ctl("start", "-d", "--wait")
    kepler.ctl("-f", other, "start", "-d", "--wait")
    everything = watch("--all", "--json")
    mine = watch("--json")
    kepler.ctl("-f", other, "stop")
    kepler.ctl("stop")
    seen = _read_until(everything, lambda event: event["service"] == "web" and event["to"] == "stopped")
    assert {"db", "web"} <= {event["service"] for event in seen}
    own = _read_until(mine, lambda event: event["to"] == "stopped")
    assert {event["service"] for event in own} == {"web"}


def test_all_shows_a_member_only_its_own_configs(request):
    kepler = request.getfixturevalue("members")
    write_config(kepler, "alice", {"web": {"command": ["sleep", "1000"]}})
    write_config(kepler, "bob", {"db": {"command": ["sleep", "1000"]}})
    ctl(kepler, "bob", "start", "-d", "--wait", check=True)
    ctl(kepler, "alice", "start", "-d", "--wait", check=True)
    user = kepler.people["alice"]
    reader = subprocess.Popen(["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", KEPLERCTL,
                               "events", "--all", "--json"], cwd=os.path.join(kepler.workdir, "alice"),
                              env=kepler.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    reader.pending = b""
    try:
        assert b"watching the events" in reader.stderr.readline()
        ctl(kepler, "bob", "stop", check=True)
        ctl(kepler, "alice", "stop", check=True)
        seen = _read_until(reader, lambda event: event["to"] == "stopped")
        assert {event["service"] for event in seen} == {"web"}, "bob's db stopped first, unseen"
        assert {event["owner"] for event in seen} == {user}
    finally:
        reader.kill()
        reader.wait()


def test_applies_and_scales_are_events(kepler, watch):
    kepler.config("services:\n  app:\n    command: [sleep, '1000']\n  web:\n    command: [sleep, '1000']\n")
    kepler.ctl("start", "-d", "--wait")
    reader = watch("--json")
    kepler.config("services:\n  app:\n    command: [sleep, '1001']\n  web:\n    command: [sleep, '1000']\n")
    kepler.ctl("apply", "-d")
    applied = _read_until(reader, lambda event: event["kind"] == "apply")[-1]
    assert applied["service"] == "global" and any(line.startswith("app") and "changed" in line
                                                  for line in applied["plan"])
    kepler.ctl("scale", "web=2")
    scaled = _read_until(reader, lambda event: event["kind"] == "scale")[-1]
    assert (scaled["service"], scaled["replicas"], scaled["previous"]) == ("web", 2, 1)
    assert scaled["renamed"] == {"web": "web.1"}, "one instance to two: web is now web.1"
