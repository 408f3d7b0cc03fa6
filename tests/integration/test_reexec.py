"""keplerctl daemon reexec (SPEC §20): a fresh daemon image takes over the running services.

Through the real keplerd and keplerctl: same pids, no hook run again, every line
stored once and in order, the socket answering throughout, and the fallback to a
normal boot when the hand-over cannot be read.
"""

import json
import os
import signal
import subprocess
import sys
import threading

from tests.integration.harness import KEPLERCTL, Kepler, wait_for

# Prints 1, 2, 3... 50 times a second, without a fork per line (25 of them run at once).
COUNTER = "perl -e '$|=1; for ($i = 1; ; $i++) { print \"$i\\n\"; select(undef, undef, undef, 0.02) }'"
UNBUFFERED, BUFFERED = 20, 5     # the numbers (#21)
REEXECS = 10
# Ends as soon as the daemon has written its hand-over: during the exec. The new image reaps it and
# restarts it before its readers are back, so its events reach them only if the feed replays them.
FLAP = """\
  flap:
    command: [perl, -e, 'select(undef, undef, undef, 0.005) until -e "$ENV{KEPLER_STATE_DIR}/handover.json"']
    restart: {policy: always, backoff: 0}
"""


def counters(unbuffered, buffered, extra=""):
    """Services printing 1, 2, 3...; *buffered* of them with a 64 KiB log buffer."""
    lines = ["services:"]
    for i in range(unbuffered + buffered):
        lines.append(f"  c{i}:\n    command: {json.dumps(['sh', '-c', 'exec ' + COUNTER])}")
        if i >= unbuffered:
            lines.append("    logs: {buffer_size: 64K}")
    return "\n".join(lines) + "\n" + extra


def stored_numbers(kepler):
    """The numbers each service printed, as stored (one `keplerctl logs`, which reads the files)."""
    numbers = {}
    for line in kepler.logs("--no-hook"):
        name, _, text = line.partition(" | ")
        if text.strip().isdigit():
            numbers.setdefault(name.strip(), []).append(int(text))
    return numbers


def recorded(kepler, *names):
    """Wait until state.json (written at most every 150 ms) records the running pid of each service."""
    path = os.path.join(kepler.inspect_path(), "state.json")

    def written():
        with open(path) as file:
            services = json.load(file)["services"]
        return all(services[name]["pid"] == kepler.ps()[name]["pid"] for name in names)
    wait_for(written, message=f"state.json to record {', '.join(names)}")


class StatusLoop:
    """Runs `keplerctl ps` in a loop meanwhile and remembers every exit code."""

    def __init__(self, kepler):
        self.kepler = kepler
        self.codes = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self):
        while not self._stop.is_set():
            result = subprocess.run([KEPLERCTL, "ps"], cwd=self.kepler.workdir, env=self.kepler.env(),
                                    capture_output=True, timeout=60)
            self.codes.append(result.returncode)


class Clients:
    """Attached keplerctl commands running meanwhile, each printing into a file; all ended on exit."""

    def __init__(self, kepler):
        self.kepler = kepler
        self.running = {}

    def __enter__(self):
        return self

    def run(self, name, *args):
        path = os.path.join(self.kepler.root, f"{name}.out")
        with open(path, "w") as out, open(path + ".err", "w") as err:
            self.running[name] = subprocess.Popen([KEPLERCTL, *args], cwd=self.kepler.workdir,
                                                  env=self.kepler.env(), stdout=out, stderr=err)
        return path

    def errors(self, name):
        with open(os.path.join(self.kepler.root, f"{name}.out.err")) as file:
            return file.read()

    def end(self, name, signum=signal.SIGTERM):
        """End a client as Ctrl+C or a terminal would; return its exit code."""
        process = self.running.pop(name)
        process.send_signal(signum)
        return process.wait(timeout=60)

    def __exit__(self, *exc):
        for process in self.running.values():
            process.kill()
            process.wait()


def test_reexec_keeps_every_process_and_every_attached_client_shows_every_line_and_event_once(kepler):
    """The issue's proof: 20 unbuffered and 5 buffered services, 10 reexecs in a row while `ps` runs in a
    loop and four clients stay attached: logs -f, start (attached), events --json and events."""
    names = [f"c{i}" for i in range(UNBUFFERED + BUFFERED)]
    kepler.config(counters(UNBUFFERED, BUFFERED, FLAP))
    with Clients(kepler) as clients:
        attached = clients.run("start", "start")

        def every_service_running():
            rows = kepler.ps()  # empty until the attached start has loaded the config
            return set(names) <= set(rows) and all(row["status"] == "running" for row in rows.values())

        wait_for(every_service_running, message="every service running")
        events_json = clients.run("events-json", "events", "--json")
        events_text = clients.run("events-text", "events")
        follower = clients.run("follower", "logs", "-f", "--no-hook")
        wait_for(lambda: all("watching the events" in clients.errors(name) for name in ("events-json", "events-text")),
                 message="the event readers to subscribe")
        before = {name: row["pid"] for name, row in kepler.ps().items() if name in names}
        generation = daemon_status(kepler)["generation"]
        with StatusLoop(kepler) as loop:
            for _ in range(REEXECS):
                assert f"pid {kepler.daemon.pid}," in kepler.ctl("daemon", "reexec").stdout
        assert loop.codes and 2 not in loop.codes, "the socket must answer throughout"
        assert daemon_status(kepler)["generation"] == generation + REEXECS
        # A service restarted on the way would show another pid (and its numbers would start at 1 again).
        rows = kepler.ps()
        moved = {name: rows[name] for name in names if rows[name]["pid"] != before[name]}
        assert not moved, f"no service may restart: {moved}\n{kepler.read_daemon_log()[-3000:]}"
        kepler.wait_status("flap", "running")
        stored = stored_numbers(kepler)
        assert set(stored) == set(names)
        for name, numbers in stored.items():
            assert numbers == list(range(1, len(numbers) + 1)), f"{name}: a line was lost or stored twice"
        last = {name: numbers[-1] for name, numbers in stored.items()}
        for output in (follower, attached):
            wait_for(lambda output=output: all(shown(output).get(name, [0])[-1:] >= [n] for name, n in last.items()),
                     message=f"{os.path.basename(output)} to show what was stored")
        wait_for(lambda: restarts_shown(events_json) >= REEXECS, message="the event reader to show every restart")
        for name in ("follower", "events-json", "events-text"):
            clients.end(name)
        for name in ("events-json", "events-text"):
            errors = clients.errors(name)
            assert errors.count("watching the events") == 1 and "missed" not in errors, errors
        assert clients.end("start") == 130   # SIGTERM is Ctrl+C: it stops the services
    for output in (follower, attached):
        for name, numbers in shown(output).items():
            assert numbers == list(range(1, len(numbers) + 1)), \
                f"{os.path.basename(output)} showed a line of {name} twice or not at all"
        assert set(shown(output)) == set(names)
    _assert_every_event_once(events_json, events_text)
    assert "none restarted" in kepler.read_daemon_log()


def daemon_status(kepler):
    return json.loads(kepler.ctl("daemon", "status", "--json").stdout)


def shown(path):
    """The numbers a client printed, by service (``c3 | 17`` lines)."""
    numbers = {}
    with open(path) as file:
        for line in file:
            name, _, text = line.partition(" | ")
            if text.strip().isdigit():
                numbers.setdefault(name.strip(), []).append(int(text))
    return numbers


def restarts_shown(path):
    with open(path) as file:
        return sum(1 for line in file if '"kind": "restart"' in line)


def _assert_every_event_once(json_path, text_path):
    with open(json_path) as file:
        events = [json.loads(line) for line in file]
    seqs = [event["seq"] for event in events]
    # One config in this daemon: every event is this reader's, so the seqs it saw must follow on by one.
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "an event was shown twice or skipped"
    assert sum(event["kind"] == "restart" and event["service"] == "flap" for event in events) == REEXECS
    ended = [event for event in events if event["kind"] == "state" and event["service"] == "flap"
             and event["from"] == "running"]
    assert len(ended) == REEXECS
    assert [event["reason"] for event in ended] == ["restarting after exit code 0"] * REEXECS
    with open(text_path) as file:
        lines = file.read().splitlines()
    assert len(lines) == len(set(lines)), "the text reader showed an event twice"
    assert sum(line.endswith("flap restart (policy)") for line in lines) == REEXECS


def test_reexec_carries_back_off_and_counters_over(kepler):
    kepler.config("""\
        services:
          crashy:
            command: [sh, -c, 'echo ran >> runs; exit 3']
            restart: {policy: on-failure, backoff: 2s}
          web:
            command: [sleep, '1000']
            hooks:
              post_start: {run: 'echo started >> hooks'}
    """)
    kepler.ctl("start", "-d")
    wait_for(lambda: kepler.ps()["crashy"].get("retries", 0) >= 2, message="crashy to be backing off")
    kepler.wait_status("web", "running")
    before = backing_off(kepler, "crashy")
    kepler.ctl("daemon", "reexec")
    after = backing_off(kepler, "crashy")
    assert after["restarts"] >= before["restarts"] and after["retries"] >= before["retries"]
    wait_for(lambda: kepler.ps()["crashy"]["restarts"] > after["restarts"],
             message="crashy to restart once its back-off ends in the new image")
    with open(os.path.join(kepler.workdir, "hooks")) as file:
        assert file.read().split() == ["started"], "no hook runs again"


def backing_off(kepler, name):
    """Its ps row once a back-off runs: ps shows retries only then (a loaded machine may catch it between two)."""
    return wait_for(lambda: (row := kepler.ps()[name]).get("backoff_until") and row, message=f"{name} backing off")


def test_a_hand_over_it_cannot_read_boots_as_after_a_crash(kepler):
    kepler.config("services:\n  web:\n    command: [sleep, '1000']\n")
    kepler.ctl("start", "-d")
    old = kepler.wait_status("web", "running")["pid"]
    recorded(kepler, "web")
    kepler.kill_daemon()
    future = os.path.join(kepler.state_dir, "handover.json")
    with open(future, "w") as file:
        json.dump({"format": 999, "pid": 1, "configs": {}}, file)
    kepler.start_daemon("--resume", future)
    new = kepler.wait_status("web", "running")["pid"]
    assert new != old
    wait_for(lambda: not os.path.exists(f"/proc/{old}") or open(f"/proc/{old}/stat").read().split()[2] == "Z",
             message="the old process to be gone")
    log = kepler.read_daemon_log()
    assert "cannot resume" in log and "format 999" in log and "this keplerd reads format 1" in log
    assert "1 service(s) it left running were killed and restarted" in log


def test_boot_after_a_crash_says_how_many_services_it_restarted(kepler):
    kepler.config("services:\n  a:\n    command: [sleep, '1000']\n  b:\n    command: [sleep, '1000']\n")
    kepler.ctl("start", "-d")
    kepler.wait_status("a", "running")
    kepler.wait_status("b", "running")
    recorded(kepler, "a", "b")
    kepler.kill_daemon()
    kepler.start_daemon()
    kepler.wait_status("a", "running")
    assert "2 service(s) it left running were killed and restarted" in kepler.read_daemon_log()


def test_only_root_may_reexec_the_daemon(kepler_root, accounts):
    group = accounts.group("sock")
    member = accounts.user("memb", groups=[group])
    kepler = Kepler(kepler_root, daemon_args=["--socket-group", group])
    try:
        kepler.start_daemon()
        result = kepler.ctl("daemon", "reexec", user=member, check=False)
        assert result.returncode == 1
        assert "permission denied: only root may re-execute the daemon" in result.stderr
        assert json.loads(kepler.ctl("daemon", "status", "--json").stdout)["generation"] == 1
    finally:
        kepler.cleanup()


# STATUS=before, then READY=1 and STATUS=after once the file `go` appears; STATUS=later once `again` does.
NOTIFY_ACROSS = """\
import os, socket, time
def notify(text):
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(text.encode(), os.environ["NOTIFY_SOCKET"])
def await_file(name):
    while not os.path.exists(name):
        time.sleep(0.02)
notify("STATUS=before")
await_file("go")
notify("READY=1\\nSTATUS=after")
await_file("again")
notify("STATUS=later")
time.sleep(1000)
"""


def test_a_notify_service_is_heard_across_a_reexec_before_and_after_its_ready(kepler):
    kepler.config(f"services:\n  app:\n    command: {json.dumps([sys.executable, '-c', NOTIFY_ACROSS])}\n"
                  "    notify: true\n  web:\n    command: [sleep, '1000']\n    depends_on: [app]\n")
    kepler.ctl("start", "-d")
    row = wait_for(lambda: kepler.ps()["app"]["status_text"] == "before" and kepler.ps()["app"],
                   message="STATUS=before")
    assert row["status"] == "starting"
    kepler.ctl("daemon", "reexec")   # while app awaits its READY=1: its socket goes to the new image
    kepler.write("go", "")
    after = kepler.wait_status("app", "running")
    assert after["pid"] == row["pid"] and after["status_text"] == "after"
    kepler.wait_status("web", "running")   # its dependency became ready in the new image
    kepler.ctl("daemon", "reexec")   # now up: STATUS= goes on being heard
    kepler.write("again", "")
    wait_for(lambda: kepler.ps()["app"]["status_text"] == "later", message="STATUS=later after the second reexec")
    assert kepler.ps()["app"]["pid"] == row["pid"]
    assert "none restarted" in kepler.read_daemon_log()


def test_attached_clients_end_with_a_message_when_the_daemon_really_stops(kepler):
    kepler.config("services:\n  web:\n    command: [sh, -c, 'echo hello; exec sleep 1000']\n")
    kepler.ctl("start", "-d")
    kepler.wait_status("web", "running")
    with Clients(kepler) as clients:
        follower = clients.run("follower", "logs", "-f")
        clients.run("events", "events")
        # Both attached before the daemon goes: a client that never reached it fails at once (exit 1).
        wait_for(lambda: "hello" in open(follower).read(), message="the follower")
        wait_for(lambda: "watching the events" in clients.errors("events"), message="the event reader")
        kepler.stop_daemon()
        for name in ("follower", "events"):
            assert clients.running[name].wait(timeout=60) == 2, f"{name}: no reconnect loop once nothing listens"
            assert "keplerctl: the daemon went away: keplerd is not running" in clients.errors(name)


def test_an_attached_start_carried_over_a_reexec_ends_when_its_service_does(kepler):
    kepler.config("services:\n  job:\n    command: [sh, -c, 'echo one; while [ ! -e go ]; do sleep 0.05; done; "
                  "echo two']\n")
    with Clients(kepler) as clients:
        output = clients.run("start", "start")
        wait_for(lambda: "job | one" in open(output).read(), message="the first line")
        kepler.ctl("daemon", "reexec")
        kepler.write("go", "")
        assert clients.running["start"].wait(timeout=60) == 0
    with open(output) as file:
        lines = file.read().splitlines()
    assert [line for line in lines if "|" in line] == ["job | one", "job | two"]
    assert lines.count("[+] job: exited with code 0") == 1
