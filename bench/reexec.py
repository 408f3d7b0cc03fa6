"""Benchmark `keplerctl daemon reexec` (issue #21) and what a crash costs today.

Run as root from the repository, with the project's venv:

    .venv/bin/python bench/reexec.py [--services 100] [--writers 20] [--reexecs 10] [--keep]

(a) SERVICES services, WRITERS of them printing a numbered line every 5 ms, the others
    sleeping; REEXECS times `keplerctl daemon reexec`. Reported: the pause, as the
    longest gap between two consecutive stored lines of a writer around each reexec
    (nothing is read meanwhile), median and max over the reexecs; the pids checked
    unchanged and every writer's numbers stored once, in order.
(b) 50 services (WRITERS of them writing), then `kill -9` of the daemon and a fresh
    daemon: how many services were restarted, and how many lines the writers wrote
    (each also counts what it wrote in a side file) that never reached the log.

Everything lives in bench/.scratch/reexec/ and is removed at the end unless --keep.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SCRATCH = os.path.join(HERE, ".scratch", "reexec")
BIN = os.path.dirname(sys.executable)
KEPLERCTL = os.path.join(BIN, "keplerctl")

WRITER = """\
import os, sys, time
count_file = sys.argv[1]
n = 0
while True:
    n += 1
    os.write(1, b"%d\\n" % n)
    with open(count_file, "w") as file:
        file.write(str(n))
    time.sleep(0.005)
"""


class Daemon:
    """A keplerd on a scratch state dir."""

    def __init__(self, root):
        self.root = root
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/root", "NO_COLOR": "1",
                    "KEPLER_DAEMON_PATH": os.path.join(root, "state")}
        with open(os.path.join(root, "keplerd.conf"), "w") as file:
            file.write(f"autostart_dir: {os.path.join(root, 'conf.d')}\n")
        self.process = None

    def start(self):
        log = open(os.path.join(self.root, "keplerd.log"), "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "keplerd", "--config",
                                         os.path.join(self.root, "keplerd.conf")],
                                        env=self.env, stdout=log, stderr=log, start_new_session=True)
        wait(lambda: self.ctl("daemon", "status", check=False).returncode == 0, "keplerd to answer")

    def ctl(self, *args, check=True):
        result = subprocess.run([KEPLERCTL, *args], cwd=self.root, env=self.env, capture_output=True, text=True)
        if check and result.returncode != 0:
            raise SystemExit(f"keplerctl {' '.join(args)}: {result.stderr}")
        return result

    def ps(self):
        return {row["name"]: row for row in json.loads(self.ctl("ps", "--json").stdout)}

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(60)


def wait(predicate, what, timeout=120):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def write_config(root, services, writers):
    script = os.path.join(root, "writer.py")
    with open(script, "w") as file:
        file.write(WRITER)
    lines = ["services:"]
    for i in range(services):
        if i < writers:
            lines.append(f"  w{i:03d}:\n    command: [{sys.executable}, {script}, {root}/count-w{i:03d}]")
        else:
            lines.append(f"  s{i:03d}:\n    command: [sleep, '100000']")
    with open(os.path.join(root, "kepler.yaml"), "w") as file:
        file.write("\n".join(lines) + "\n")


def stored(daemon, name):
    """``[(epoch_ms, number)]`` of a writer, as stored."""
    out = daemon.ctl("logs", "--no-hook", "--json", name).stdout
    return [(record["time"], int(record["text"])) for record in map(json.loads, out.splitlines())]


def pause_around(entries, moment_ms):
    """The longest gap between consecutive stored lines within 2 s of *moment_ms*."""
    times = [stamp for stamp, _ in entries if abs(stamp - moment_ms) < 2000]
    return max((b - a for a, b in zip(times, times[1:])), default=0)


def reexec_run(root, services, writers, reexecs):
    write_config(root, services, writers)
    daemon = Daemon(root)
    daemon.start()
    try:
        daemon.ctl("start", "-d")
        wait(lambda: sum(row["status"] == "running" for row in daemon.ps().values()) == services, "all running")
        before = {name: row["pid"] for name, row in daemon.ps().items()}
        time.sleep(1)
        moments = []
        for _ in range(reexecs):
            moments.append(time.time() * 1000)
            daemon.ctl("daemon", "reexec")
            time.sleep(0.5)
        after = {name: row["pid"] for name, row in daemon.ps().items()}
        names = [f"w{i:03d}" for i in range(writers)]
        logs = {name: stored(daemon, name) for name in names}
        broken = [name for name, entries in logs.items()
                  if [n for _, n in entries] != list(range(1, len(entries) + 1))]
        pauses = [max(pause_around(logs[name], moment) for name in names) for moment in moments]
        return {"services": services, "writers": writers, "reexecs": reexecs,
                "pids_unchanged": before == after, "writers_with_gaps_or_repeats": broken,
                "pause_ms_median": statistics.median(pauses), "pause_ms_max": max(pauses),
                "pauses_ms": pauses}
    finally:
        daemon.stop()


def crash_run(root, writers, services=50):
    write_config(root, services, writers)
    daemon = Daemon(root)
    daemon.start()
    try:
        daemon.ctl("start", "-d")
        wait(lambda: sum(row["status"] == "running" for row in daemon.ps().values()) == services, "all running")
        time.sleep(1)
        before = {name: row["pid"] for name, row in daemon.ps().items()}
        runs_before = {f"w{i:03d}": len(stored(daemon, f"w{i:03d}")) for i in range(writers)}
        daemon.process.kill()
        daemon.process.wait()
        time.sleep(0.5)  # the writers notice the closed pipes
        written = {}
        for i in range(writers):
            with open(os.path.join(root, f"count-w{i:03d}")) as file:
                written[f"w{i:03d}"] = int(file.read() or 0)
        daemon.start()
        wait(lambda: sum(row["status"] == "running" for row in daemon.ps().values()) == services, "all running")
        after = {name: row["pid"] for name, row in daemon.ps().items()}
        lost = 0
        for name, count in written.items():
            numbers = [n for _, n in stored(daemon, name)]
            first_run = numbers[:numbers.index(1, 1)] if 1 in numbers[1:] else numbers
            lost += count - len(first_run)
        log = open(os.path.join(root, "keplerd.log")).read()
        said = [line for line in log.splitlines() if "killed and restarted" in line]
        return {"services": services, "restarted": sum(before[name] != after[name] for name in before),
                "lines_written_not_stored": lost, "stored_before_kill": sum(runs_before.values()),
                "daemon_log_says": said[-1].split(": ", 1)[-1] if said else None}
    finally:
        daemon.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--writers", type=int, default=20)
    parser.add_argument("--reexecs", type=int, default=10)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    shutil.rmtree(SCRATCH, ignore_errors=True)
    results = {"loadavg": os.getloadavg()}
    for name, run in (("reexec", lambda root: reexec_run(root, args.services, args.writers, args.reexecs)),
                      ("crash", lambda root: crash_run(root, args.writers))):
        root = os.path.join(SCRATCH, name)
        os.makedirs(root)
        results[name] = run(root)
        print(json.dumps({name: results[name]}), flush=True)
    results["loadavg_end"] = os.getloadavg()
    print(json.dumps(results, indent=1))
    if not args.keep:
        shutil.rmtree(SCRATCH, ignore_errors=True)


if __name__ == "__main__":
    main()
