"""Benchmark the log path of keplerd (issue #3): pump throughput and --tail on a large log.

Run as root from the repository, with the project's venv:

    .venv/bin/python bench/logs.py [--lines 500000] [--runs 7] [--keep]

(a) A service writes LINES lines of ~100 bytes as fast as it can. Reported: the
lines per second that reach disk through keplerd (from the generator's first
write until the last line is in the file), the daemon's CPU seconds for it, and
the same generator piped through ``cat`` into a file, measured in the same run.
Every line is counted and checked on disk.
(b) ``keplerctl logs --tail 100`` on a 1 GiB log against a 1 MiB log (median of
RUNS runs each).

Everything lives in bench/.scratch/ (a private daemon state dir) and is removed at
the end unless --keep.
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

import psutil

HERE = os.path.dirname(os.path.abspath(__file__))
SCRATCH = os.path.join(HERE, ".scratch", "logs")  # bench/run.py keeps its peers next to it
BIN = os.path.dirname(sys.executable)
KEPLERCTL = os.path.join(BIN, "keplerctl")
LINE_TEXT = 100 - len("line 0000000 ") - 1  # ~100 bytes of text per line, newline included
STAMP_AND_SPACE = len("1700000000000 ")

GENERATOR = """\
import os, sys, time
count = int(sys.argv[1])
filler = b"x" * {filler}
data = b"".join(b"line %07d %s\\n" % (i, filler) for i in range(count))
with open(sys.argv[2], "w") as started:
    started.write(repr(time.time()))
view = memoryview(data)
while view:
    view = view[os.write(1, view[:1 << 20]):]
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=500_000)
    parser.add_argument("--runs", type=int, default=7, help="runs of each --tail timing (median)")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each throughput pipeline (median)")
    parser.add_argument("--keep", action="store_true", help="leave bench/.scratch/ in place")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/logs.py starts keplerd and must run as root")
    shutil.rmtree(SCRATCH, ignore_errors=True)
    os.makedirs(SCRATCH)
    daemon = Daemon(os.path.join(SCRATCH, "state"))
    try:
        daemon.start()
        results = {"throughput": throughput(daemon, args.lines, args.repeat), "tail": tail(daemon, args.runs)}
    finally:
        daemon.stop()
        if not args.keep:
            shutil.rmtree(SCRATCH, ignore_errors=True)
    report(results, args.lines)


class Daemon:
    """A private keplerd for the benchmark."""

    def __init__(self, state_dir):
        self.state_dir = state_dir
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/root",
                    "KEPLER_DAEMON_PATH": state_dir, "NO_COLOR": "1"}
        self.process = None

    def start(self):
        log = open(os.path.join(SCRATCH, "keplerd.log"), "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "keplerd", "--log-level", "warning"], env=self.env,
                                        stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 30
        while self.ctl("daemon", "status", check=False).returncode != 0:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise SystemExit("keplerd did not start; see bench/.scratch/keplerd.log")
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

    def ctl(self, *args, cwd=SCRATCH, check=True):
        return subprocess.run([KEPLERCTL, *args], cwd=cwd, env=self.env, capture_output=True, text=True,
                              check=check)

    def cpu_seconds(self):
        times = psutil.Process(self.process.pid).cpu_times()
        return times.user + times.system

    def logs_dir(self, config):
        from keplerd.paths import config_id

        return os.path.join(self.state_dir, "configs", config_id(config), "logs")


# -- (a) throughput ------------------------------------------------------------------------------


def throughput(daemon, lines, repeat):
    """Run each pipeline *repeat* times, interleaved (so load on the machine hits all alike); keep the medians."""
    generator = os.path.join(SCRATCH, "generate.py")
    with open(generator, "w") as file:
        file.write(GENERATOR.format(filler=LINE_TEXT))
    text_bytes = lines * (len("line 0000000 ") + LINE_TEXT + 1)
    runs = {}
    for run in range(repeat):
        runs.setdefault("cat", []).append(through_cat(generator, lines, text_bytes))
        for buffer_size in ("0", "64K"):
            runs.setdefault(f"keplerd buffer_size {buffer_size}", []).append(
                through_daemon(daemon, generator, lines, text_bytes, buffer_size, run))
    return {label: median_run(results) for label, results in runs.items()}


def median_run(results):
    """Return the run of median time, with the worst line count seen (every run must have every line)."""
    ordered = sorted(results, key=lambda row: row["seconds"])
    chosen = dict(ordered[len(ordered) // 2])
    chosen["lines_on_disk"] = min(row["lines_on_disk"] for row in results)
    chosen["runs"] = len(results)
    return chosen


def through_cat(generator, lines, text_bytes):
    started_file = os.path.join(SCRATCH, "cat.started")
    output = os.path.join(SCRATCH, "cat.out")
    subprocess.run(f"{sys.executable} {generator} {lines} {started_file} | cat > {output}", shell=True, check=True)
    finished = time.time()
    elapsed = finished - float(open(started_file).read())
    assert os.path.getsize(output) == text_bytes
    return {"seconds": elapsed, "lines_per_second": lines / elapsed, "lines_on_disk": count_lines([output])}


def through_daemon(daemon, generator, lines, text_bytes, buffer_size, run):
    directory = os.path.join(SCRATCH, f"pump-{buffer_size}-{run}")
    os.makedirs(directory)
    started_file = os.path.join(directory, "started")
    config = os.path.join(directory, "kepler.yaml")
    with open(config, "w") as file:
        json.dump({"services": {"writer": {
            "command": [sys.executable, generator, str(lines), started_file],
            "logs": {"buffer_size": buffer_size}}}}, file)
    daemon.ctl("-f", config, "start", "--wait", "--timeout", "30s", "-d", cwd=directory)
    log = os.path.join(daemon.logs_dir(config), "writer.stdout.log")
    cpu_before = daemon.cpu_seconds()  # the spawn is not part of the pump's cost
    expected = text_bytes + lines * STAMP_AND_SPACE
    deadline = time.monotonic() + 300
    while not os.path.exists(log) or os.path.getsize(log) < expected:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {os.path.getsize(log) if os.path.exists(log) else 0} of {expected} bytes "
                             f"reached {log}")
        time.sleep(0.002)
    finished = time.time()
    cpu = daemon.cpu_seconds() - cpu_before
    elapsed = finished - float(open(started_file).read())
    on_disk = count_lines([log], check_sequence=True)
    daemon.ctl("-f", config, "stop", "--clean", cwd=directory)
    return {"seconds": elapsed, "lines_per_second": lines / elapsed, "daemon_cpu_seconds": cpu,
            "lines_on_disk": on_disk}


def count_lines(paths, check_sequence=False):
    """Count the lines of *paths*; with *check_sequence*, check that line i carries number i."""
    total = 0
    for path in paths:
        with open(path, "rb") as file:
            data = file.read()
        total += data.count(b"\n")
        if check_sequence:
            numbers = [int(line.split(b" ", 3)[2]) for line in data.split(b"\n")[:-1]]
            assert numbers == list(range(len(numbers))), f"{path}: lines missing or out of order"
    return total


# -- (b) tail ----------------------------------------------------------------------------------------


def tail(daemon, runs):
    results = {}
    for label, size in (("1 MiB", 1 << 20), ("1 GiB", 1 << 30)):
        directory = os.path.join(SCRATCH, f"tail-{label.replace(' ', '')}")
        os.makedirs(directory)
        config = os.path.join(directory, "kepler.yaml")
        with open(config, "w") as file:
            json.dump({"services": {"big": {"command": ["true"], "logs": {"retention": {"on_exit": "retain"}}}}},
                      file)
        daemon.ctl("-f", config, "start", "-d", "--wait", cwd=directory)
        wait_until_terminal(daemon, config, directory)
        write_log(os.path.join(daemon.logs_dir(config), "big.stdout.log"), size)
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            output = daemon.ctl("-f", config, "logs", "--tail", "100", cwd=directory).stdout
            times.append(time.perf_counter() - started)
            assert output.count("\n") == 100, output[-500:]
        results[label] = {"median_seconds": statistics.median(times), "min_seconds": min(times),
                          "file_bytes": size}
        daemon.ctl("-f", config, "stop", "--clean", cwd=directory)
    return results


def wait_until_terminal(daemon, config, directory):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = json.loads(daemon.ctl("-f", config, "ps", "--json", cwd=directory).stdout)
        if all(row["status"] in ("exited", "stopped", "killed", "failed") for row in rows):
            return
        time.sleep(0.05)
    raise SystemExit("the tail benchmark's service did not end")


def write_log(path, size):
    """Write *size* bytes of stored-format lines (~100 bytes each) to *path*."""
    filler = b"y" * (100 - STAMP_AND_SPACE - len("line 0000000000 ") - 1)
    stamp = int(time.time() * 1000) - 3_600_000
    with open(path, "wb") as file:
        number, written = 0, 0
        while written < size:
            block = b"".join(b"%d line %010d %s\n" % (stamp + (number + i) // 1000, number + i, filler)
                             for i in range(10_000))
            number += 10_000
            if written + len(block) > size:
                block = block[:block.rfind(b"\n", 0, size - written) + 1]
                written = size
            else:
                written += len(block)
            file.write(block)


# -- report -----------------------------------------------------------------------------------------


def report(results, lines):
    cpu = os.cpu_count()
    repeat = results["throughput"]["cat"]["runs"]
    print(f"keplerd log benchmark ({lines:,} lines of ~100 bytes, median of {repeat} runs; {cpu} CPUs; "
          f"Python {sys.version.split()[0]})")
    print()
    cat = results["throughput"]["cat"]
    print(f"{'pipeline':<28} {'lines/s':>12} {'seconds':>8} {'daemon CPU s':>13} {'lines on disk':>14} {'vs cat':>7}")
    for label, row in results["throughput"].items():
        cpu_text = f"{row['daemon_cpu_seconds']:.2f}" if "daemon_cpu_seconds" in row else "-"
        ratio = row["seconds"] / cat["seconds"]
        print(f"{label:<28} {row['lines_per_second']:>12,.0f} {row['seconds']:>8.3f} {cpu_text:>13} "
              f"{row['lines_on_disk']:>14,} {ratio:>6.2f}x")
    print()
    small, big = results["tail"]["1 MiB"], results["tail"]["1 GiB"]
    for label, row in results["tail"].items():
        print(f"keplerctl logs --tail 100 on {label}: median {row['median_seconds'] * 1000:.1f} ms "
              f"(min {row['min_seconds'] * 1000:.1f} ms)")
    print(f"1 GiB / 1 MiB: {big['median_seconds'] / small['median_seconds']:.2f}x")
    failures = []
    for label, row in results["throughput"].items():
        if row["lines_on_disk"] != lines:
            failures.append(f"{label}: {row['lines_on_disk']} of {lines} lines on disk")
        if label != "cat" and row["lines_per_second"] < 1_000_000:
            failures.append(f"{label}: below 1,000,000 lines/s")
        if label != "cat" and row["seconds"] > 3 * cat["seconds"]:
            failures.append(f"{label}: more than 3x the time of cat")
    if big["median_seconds"] > 2 * small["median_seconds"]:
        failures.append("--tail 100 on 1 GiB takes more than 2x the 1 MiB time")
    print()
    print("targets: " + ("all met" if not failures else "MISSED: " + "; ".join(failures)))


if __name__ == "__main__":
    main()
