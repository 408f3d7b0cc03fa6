"""Benchmark keplerctl apply (issue #17): one changed service in a 100-service config.

Run as root from the repository, with the project's venv:

    .venv/bin/python bench/apply.py [--services 100] [--runs 7] [--keep]

Each run changes one variable of one service, then times ``keplerctl apply``
(which returns once what it restarted is running) from the command to the
changed service running again, and checks that the service has a new pid and
that the other services' pids did not change. Reported: median, min and max
over the runs, and where the time goes: the daemon's own log lines (bake in the
worker, plan, stop, start), the rest (keplerctl, socket, the wait until the
service runs), and for scale a bare ``python -I`` start, a cold bake worker's
imports and ``keplerctl ps`` (the CLI's start-up and one round trip).

Everything lives in bench/.scratch/apply/ (a private daemon state dir) and is
removed at the end unless --keep.
"""

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SCRATCH = os.path.join(HERE, ".scratch", "apply")
BIN = os.path.dirname(sys.executable)
KEPLERCTL = os.path.join(BIN, "keplerctl")
CHANGED = "s042"
BAKED = re.compile(r"apply: baked in (\d+) ms, planned in ([\d.]+) ms")
APPLIED = re.compile(r"applied in (\d+) ms \(stop (\d+) ms, start (\d+) ms\)")


class Daemon:
    """A private keplerd for the benchmark, logging at info (its apply timings)."""

    def __init__(self):
        self.state_dir = os.path.join(SCRATCH, "state")
        self.log_path = os.path.join(SCRATCH, "keplerd.log")
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/root",
                    "KEPLER_DAEMON_PATH": self.state_dir, "NO_COLOR": "1"}
        self.process = None

    def start(self):
        conf = os.path.join(SCRATCH, "keplerd.conf")
        with open(conf, "w") as file:
            file.write(f"autostart_dir: {os.path.join(SCRATCH, 'conf.d')}\n")
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "keplerd", "--config", conf, "--log-level", "info"], env=self.env,
                stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 30
        while self.ctl("daemon", "status", check=False).returncode != 0:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise SystemExit(f"keplerd did not start; see {self.log_path}")
            time.sleep(0.05)

    def stop(self):
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def ctl(self, *args, check=True):
        return subprocess.run([KEPLERCTL, *args], cwd=SCRATCH, env=self.env, capture_output=True, text=True,
                              check=check)

    def pids(self):
        return {row["name"]: row["pid"] for row in json.loads(self.ctl("ps", "--json").stdout)}

    def log_text(self):
        with open(self.log_path, errors="replace") as file:
            return file.read()


def write_config(count, version):
    services = {f"s{index:03d}": {"command": ["sleep", "100000"], "environment": [f"INDEX={index}"]}
                for index in range(count)}
    services[CHANGED]["environment"].append(f"VERSION={version}")
    with open(os.path.join(SCRATCH, "kepler.yaml"), "w") as file:
        json.dump({"services": services}, file)


def timed(argv, env=None):
    began = time.perf_counter()
    subprocess.run(argv, check=True, env=env, cwd=SCRATCH, capture_output=True)
    return time.perf_counter() - began


def one_apply(daemon, count, run):
    before = daemon.pids()
    write_config(count, run)
    began = time.perf_counter()
    daemon.ctl("apply")
    elapsed = time.perf_counter() - began
    after = daemon.pids()
    if after[CHANGED] in (None, before[CHANGED]):
        raise SystemExit(f"run {run}: {CHANGED} was not restarted ({before[CHANGED]} -> {after[CHANGED]})")
    moved = [name for name in before if name != CHANGED and after[name] != before[name]]
    if moved:
        raise SystemExit(f"run {run}: other services changed pid: {', '.join(moved)}")
    return elapsed


def summary(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def daemon_parts(log_text, totals):
    """Return where each run's time went (ms): the daemon's log lines, and the rest of *totals*.

    The rest is keplerctl's start-up, the socket round trip, and the wait from the
    spawn until the daemon sees the service running and answers.
    """
    baked = [(float(bake), float(plan)) for bake, plan in BAKED.findall(log_text)]
    applied = [tuple(map(float, match)) for match in APPLIED.findall(log_text)]
    rest = [total * 1000 - bake - plan - act for total, (bake, plan), (act, _, _) in zip(totals, baked, applied)]
    return {
        "daemon: bake (zygote-forked worker)": summary([bake for bake, _ in baked]),
        "daemon: plan": summary([plan for _, plan in baked]),
        "daemon: stop the changed service": summary([stop for _, stop, _ in applied]),
        "daemon: start it (until spawned)": summary([start for _, _, start in applied]),
        "rest: keplerctl start-up, socket, wait until running": summary(rest),
    }


def baselines(daemon, runs):
    """Time what bounds the apply from below: interpreter start, worker imports, a CLI round trip."""
    code = f"import sys; sys.path[:0] = {sys.path!r}; import keplerd.config.worker"
    return {
        "for scale: python -I -c pass": summary(
            [timed([sys.executable, "-I", "-c", "pass"]) * 1000 for _ in range(runs)]),
        "for scale: a cold bake worker's imports (the zygote avoids them)": summary(
            [timed([sys.executable, "-I", "-c", code]) * 1000 for _ in range(runs)]),
        "for scale: keplerctl ps": summary([timed([KEPLERCTL, "ps"], env={**daemon.env}) * 1000 for _ in range(runs)]),
    }


def report(count, runs, totals, parts, floors, load):
    lines = [f"# keplerctl apply: 1 changed service of {count}", "",
             f"{runs} runs; the other {count - 1} pids unchanged in every run (checked); "
             f"load average {load[0]:.1f} before, {load[1]:.1f} after.", "",
             "| measure | median | min | max |", "|---|---|---|---|"]
    rows = {"apply, command to running again": summary([value * 1000 for value in totals]), **parts, **floors}
    for name, values in rows.items():
        lines.append(f"| {name} | {values['median']:.0f} ms | {values['min']:.0f} ms | {values['max']:.0f} ms |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="leave bench/.scratch/apply/ in place")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/apply.py starts keplerd and must run as root")
    shutil.rmtree(SCRATCH, ignore_errors=True)
    os.makedirs(SCRATCH)
    daemon = Daemon()
    try:
        daemon.start()
        write_config(args.services, 0)
        daemon.ctl("start", "-d", "--wait")
        load = [os.getloadavg()[0]]
        totals = [one_apply(daemon, args.services, run) for run in range(1, args.runs + 1)]
        load.append(os.getloadavg()[0])
        parts = daemon_parts(daemon.log_text(), totals)
        floors = baselines(daemon, args.runs)
        daemon.ctl("stop")
    finally:
        daemon.stop()
        if not args.keep:
            shutil.rmtree(SCRATCH, ignore_errors=True)
    print(report(args.services, args.runs, totals, parts, floors, load))


if __name__ == "__main__":
    main()
