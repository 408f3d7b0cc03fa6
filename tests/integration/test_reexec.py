"""keplerctl daemon reexec (SPEC §20): a fresh daemon image takes over the running services.

Through the real keplerd and keplerctl: same pids, no hook run again, every line
stored once and in order, the socket answering throughout, and the fallback to a
normal boot when the hand-over cannot be read.
"""

import json
import os
import subprocess
import threading

from tests.integration.harness import KEPLERCTL, Kepler, wait_for

COUNTER = "i=0; while true; do i=$((i+1)); echo $i; sleep 0.005; done"


def counters(unbuffered, buffered):
    """Services printing 1, 2, 3...; *buffered* of them with a 64 KiB log buffer."""
    lines = ["services:"]
    for i in range(unbuffered + buffered):
        lines.append(f"  c{i}:\n    command: [sh, -c, '{COUNTER}']")
        if i >= unbuffered:
            lines.append("    logs: {buffer_size: 64K}")
    return "\n".join(lines) + "\n"


def stored_numbers(kepler, name):
    """The numbers service *name* printed, as stored (keplerctl logs, which reads the files)."""
    return [int(line.split("| ", 1)[1]) for line in kepler.logs("--no-hook", name) if "| " in line]


def recorded(kepler, *names):
    """Wait until state.json (written at most every 150 ms) records the running pid of each service."""
    path = os.path.join(kepler.inspect_path(), "state.json")

    def written():
        with open(path) as file:
            services = json.load(file)["services"]
        return all(services[name]["pid"] == kepler.ps()[name]["pid"] for name in names)
    wait_for(written, message=f"state.json to record {', '.join(names)}")


def pids(kepler):
    return {name: row["pid"] for name, row in kepler.ps().items()}


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


def test_reexec_keeps_every_process_and_stores_every_line_once(kepler):
    kepler.config(counters(unbuffered=6, buffered=2))
    kepler.ctl("start", "-d")
    for i in range(8):
        kepler.wait_status(f"c{i}", "running")
    before = pids(kepler)
    followed = os.path.join(kepler.root, "followed.txt")
    with open(followed, "w") as out:
        follower = subprocess.Popen([KEPLERCTL, "logs", "-f", "--no-hook"], cwd=kepler.workdir, env=kepler.env(),
                                    stdout=out, stderr=subprocess.PIPE)
    try:
        _reexec_three_times_while_asking_ps(kepler, before)
        for i in range(8):
            numbers = stored_numbers(kepler, f"c{i}")
            assert numbers == list(range(1, len(numbers) + 1)), f"c{i}: a line was lost or stored twice"
            assert len(numbers) > 20
        # The follower reconnected after each reexec and shows every line once, in order.
        last = {f"c{i}": stored_numbers(kepler, f"c{i}")[-1] for i in range(8)}
        wait_for(lambda: all(shown(followed).get(name, [0])[-1:] >= [n] for name, n in last.items()),
                 message="the follower to show what was stored")
    finally:
        follower.terminate()
        _, errors = follower.communicate(timeout=30)
    for name, numbers in shown(followed).items():
        assert numbers == list(range(1, len(numbers) + 1)), f"the follower showed a line of {name} twice or not at all"
    assert "none restarted" in kepler.read_daemon_log()


def shown(path):
    """The numbers a follower printed, by service (``c3 | 17`` lines)."""
    numbers = {}
    with open(path) as file:
        for line in file:
            name, _, text = line.partition(" | ")
            if text.strip().isdigit():
                numbers.setdefault(name.strip(), []).append(int(text))
    return numbers


def _reexec_three_times_while_asking_ps(kepler, before):
    with StatusLoop(kepler) as loop:
        for _ in range(3):
            generation = json.loads(kepler.ctl("daemon", "status", "--json").stdout)["generation"]
            kepler.ctl("daemon", "reexec")
            status = json.loads(kepler.ctl("daemon", "status", "--json").stdout)
            assert status["generation"] == generation + 1
            assert status["pid"] == kepler.daemon.pid
            assert pids(kepler) == before, "no service may be restarted by a reexec"
    assert loop.codes and 2 not in loop.codes, "the socket must answer throughout"


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
    before = kepler.ps()["crashy"]
    kepler.ctl("daemon", "reexec")
    after = kepler.ps()["crashy"]
    assert after["restarts"] >= before["restarts"] and after["retries"] >= before["retries"]
    wait_for(lambda: kepler.ps()["crashy"]["restarts"] > after["restarts"],
             message="crashy to restart once its back-off ends in the new image")
    with open(os.path.join(kepler.workdir, "hooks")) as file:
        assert file.read().split() == ["started"], "no hook runs again"


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
