"""The first `start -d` of a config the daemon has never seen, bake included (issue #25, target 3).

Run as root from the repository, with the project's venv:

    .venv/bin/python bench/first_start.py [--runs 10] [--services 10]

One daemon in a temporary state dir (its own KEPLER_DAEMON_PATH); each run writes a
new config of N services (``sleep 1000``, no Lua) in a new directory, so the daemon
bakes it afresh, and times `keplerctl -f <it> start -d` from the command to its exit.
The services are stopped (untimed) before the next run. The limit beside it is
`python3 -c pass` of the interpreter keplerctl runs on (the real binary, as S5 of
bench/run.py: a version manager's shim on PATH costs ten times more), timed the
same way and interleaved with the runs. Target: the median start ≤ 3× the median
interpreter.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

BIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, ".venv", "bin")


def config(count):
    lines = ["services:"]
    lines += [f"  s{index}: {{command: [sleep, '1000']}}" for index in range(count)]
    return "\n".join(lines) + "\n"


def timed(argv, env=None):
    began = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - began


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--services", type=int, default=10)
    parser.add_argument("--bin", default=BIN, help="where keplerctl is (default: the project's .venv)")
    options = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: keplerd runs as root")
    keplerctl = os.path.join(options.bin, "keplerctl")
    python = os.path.realpath(sys._base_executable)
    workdir = tempfile.mkdtemp(prefix="kepler-first-start-")
    env = {**os.environ, "KEPLER_DAEMON_PATH": os.path.join(workdir, "daemon")}
    starts, interpreter = [], []
    daemon_pid = None
    try:
        subprocess.run([keplerctl, "daemon", "start", "-d"], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(os.path.join(workdir, "daemon", "kepler.pid")) as file:
            daemon_pid = int(file.read())
        for run in range(options.runs):
            path = os.path.join(workdir, f"config-{run}", "kepler.yaml")
            os.makedirs(os.path.dirname(path))
            with open(path, "w") as file:
                file.write(config(options.services))
            interpreter.append(timed([python, "-c", "pass"]))
            starts.append(timed([keplerctl, "-f", path, "start", "-d"], env))
            subprocess.run([keplerctl, "-f", path, "stop"], env=env, check=True, stdout=subprocess.DEVNULL)
    finally:
        subprocess.run([keplerctl, "daemon", "stop"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if daemon_pid is not None:
            deadline = time.monotonic() + 10
            while os.path.exists(f"/proc/{daemon_pid}") and time.monotonic() < deadline:
                time.sleep(0.01)
        shutil.rmtree(workdir, ignore_errors=True)
    start, limit = statistics.median(starts), statistics.median(interpreter)
    print(f"first start -d of {options.services} services: median {start * 1000:.1f} ms "
          f"[{min(starts) * 1000:.1f}-{max(starts) * 1000:.1f}] over {options.runs} runs")
    print(f"python3 -c pass: median {limit * 1000:.1f} ms; ratio {start / limit:.2f}x "
          f"(target <= 3x: {'met' if start <= 3 * limit else 'NOT met'}); load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
