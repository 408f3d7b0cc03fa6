"""Benchmark replicas (issue #18): 1 service × N replicas vs N services; a rolling restart.

Run as root from the repository, with the project's venv:

    .venv/bin/python bench/replicas.py [--count 300] [--roll 10] [--rounds 3] [--keep]

(a) `start -d --wait` of one service with COUNT replicas and of COUNT plain services
    (`sleep`), ROUNDS times each (a fresh daemon each round): wall time until every
    instance runs, and the daemon's CPU time for it (from /proc).
(b) `restart --rolling` of ROLL replicas with a healthcheck probing every 200 ms:
    its wall time, and the time per instance.

Everything lives in bench/.scratch/replicas/ and is removed at the end unless --keep.
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reexec import Daemon, wait  # noqa: E402  (the same scratch daemon)

HERE = os.path.dirname(os.path.abspath(__file__))
SCRATCH = os.path.join(HERE, ".scratch", "replicas")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def write(root, text):
    with open(os.path.join(root, "kepler.yaml"), "w") as file:
        file.write(text)


def start_cost(root, config_text, count):
    """Return (seconds, daemon CPU seconds) of `start -d --wait` until *count* instances run."""
    write(root, config_text)
    daemon = Daemon(root)
    daemon.start()
    try:
        cpu_before = cpu_seconds(daemon.process.pid)
        began = time.monotonic()
        daemon.ctl("start", "-d", "--wait")
        wait(lambda: sum(row["status"] == "running" for row in daemon.ps().values()) == count, "all running")
        return time.monotonic() - began, cpu_seconds(daemon.process.pid) - cpu_before
    finally:
        daemon.ctl("stop", check=False)
        daemon.stop()
        shutil.rmtree(os.path.join(root, "state"), ignore_errors=True)


def roll_cost(root, count):
    check = (f"{{test: [{sys.executable}, -c, 'import os; os.kill(int(open(\"pid.\" + "
             f"os.environ[\"KEPLER_REPLICA\"]).read()), 0)'], interval: 200ms, retries: 5}}")
    write(root, f"services:\n  web:\n    command: [sh, -c, 'echo $$ > pid.$KEPLER_REPLICA; exec sleep 100000']\n"
                f"    replicas: {count}\n    healthcheck: {check}\n")
    daemon = Daemon(root)
    daemon.start()
    try:
        daemon.ctl("start", "-d")
        wait(lambda: sum(row["status"] == "healthy" for row in daemon.ps().values()) == count, "all healthy")
        began = time.monotonic()
        daemon.ctl("restart", "--rolling", "-d", "web")
        took = time.monotonic() - began
        return {"replicas": count, "interval_ms": 200, "roll_s": round(took, 2),
                "per_instance_ms": round(took / count * 1000)}
    finally:
        daemon.ctl("stop", check=False)
        daemon.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--roll", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    shutil.rmtree(SCRATCH, ignore_errors=True)
    os.makedirs(SCRATCH)
    replicated = f"services:\n  web:\n    command: [sleep, '100000']\n    replicas: {args.count}\n"
    plain = "services:\n" + "".join(f"  s{i:03d}:\n    command: [sleep, '100000']\n" for i in range(args.count))
    try:
        results = {}
        for label, text in (("replicas", replicated), ("services", plain)):
            runs = [start_cost(SCRATCH, text, args.count) for _ in range(args.rounds)]
            results[label] = {"count": args.count, "start_s_median": round(statistics.median(r[0] for r in runs), 2),
                              "daemon_cpu_s_median": round(statistics.median(r[1] for r in runs), 2),
                              "start_s": [round(r[0], 2) for r in runs]}
        results["rolling"] = roll_cost(SCRATCH, args.roll)
        print(json.dumps(results, indent=2))
    finally:
        if not args.keep:
            shutil.rmtree(SCRATCH, ignore_errors=True)


if __name__ == "__main__":
    main()
