"""Benchmark how soon keplerd stamps a line after the service wrote it, while it starts many services.

Run as root from the repository, with the project's venv:

    .venv/bin/python bench/stamps.py [--fillers 50] [--runs 3] [--since-1gib]

Two talker services print, every millisecond for 3 seconds, the time they write
the line (``time.time()``, microseconds). Once both run, FILLERS other services
(each with a health probe, the first at once, then every second) start: the daemon forks them and their
probes while the talkers write. Reported, from the stored logs: the delay between
each line's write time and the stamp the daemon stored (median, p95, p99, max),
and how many pairs of lines of the two talkers written at least 2 ms apart were
stored out of write order (what ``keplerctl logs`` would merge wrongly).

With --since-1gib it also writes a 1 GiB log (generated lines, real stamps) and
times ``keplerctl logs --since`` against ``--tail 1`` on it (issue #16 point 9).

Everything lives in bench/.scratch/stamps (a private daemon state dir), removed at the end.
"""

import argparse
import bisect
import json
import os
import shutil
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import logs as logs_bench  # noqa: E402  (bench/logs.py: a private keplerd, a 1 GiB log writer)

SCRATCH = os.path.join(HERE, ".scratch", "stamps")
TALKER = ("import sys, time\n"
          "end = time.time() + 3\n"
          "while time.time() < end:\n"
          "    sys.stdout.write('%.6f\\n' % time.time()); sys.stdout.flush(); time.sleep(0.001)\n")


class Daemon(logs_bench.Daemon):
    """bench/logs.py's private keplerd, run from this benchmark's scratch dir."""

    def ctl(self, *args, cwd=None, check=True):
        return super().ctl(*args, cwd=cwd or SCRATCH, check=check)


def config_text(fillers):
    lines = ["services:"]
    for name in ("talker-a", "talker-b"):
        lines += [f"  {name}:", f"    command: [python3, -c, {json.dumps(TALKER)}]"]
    for index in range(fillers):
        lines += [f"  filler-{index}:", "    command: [sleep, '1000']",
                  "    depends_on: {talker-a: {condition: service_started}, talker-b: {condition: service_started}}",
                  "    healthcheck: {test: ['true'], interval: 1s}"]
    return "\n".join(lines) + "\n"


def one_run(daemon, fillers):
    config = os.path.join(SCRATCH, "kepler.yaml")
    with open(config, "w") as file:
        file.write(config_text(fillers))
    daemon.ctl("-f", config, "start", "-d")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rows = json.loads(daemon.ctl("-f", config, "ps", "--json").stdout)
        talkers = [row for row in rows if row["name"].startswith("talker")]
        if all(row["status"] == "exited" for row in talkers):
            break
        time.sleep(0.2)
    directory = daemon.logs_dir(config)
    lines = {}
    for name in ("talker-a", "talker-b"):
        with open(os.path.join(directory, f"{name}.stdout.log")) as file:
            lines[name] = [(int(stamp), float(written) * 1000) for stamp, written in
                           (line.split() for line in file if line.strip())]
    daemon.ctl("-f", config, "stop", "--clean")
    return lines


def inversions(lines):
    """Count pairs (a line of one talker, one of the other) written >= 2 ms apart but stored out of order."""
    a, b = lines["talker-a"], lines["talker-b"]
    b_written = [written for _, written in b]
    count = 0
    for stamp, written in a:
        # b lines written >= 2 ms after this a line must not be stamped before it, and vice versa.
        later = bisect.bisect_left(b_written, written + 2)
        count += sum(1 for b_stamp, _ in b[later:later + 50] if b_stamp < stamp)
        earlier = bisect.bisect_right(b_written, written - 2)
        count += sum(1 for b_stamp, _ in b[max(0, earlier - 50):earlier] if b_stamp > stamp)
    return count


def summary(delays):
    ordered = sorted(delays)
    pick = lambda share: ordered[min(len(ordered) - 1, int(share * len(ordered)))]  # noqa: E731
    return {"lines": len(ordered), "median_ms": round(statistics.median(ordered), 2),
            "p95_ms": round(pick(0.95), 2), "p99_ms": round(pick(0.99), 2), "max_ms": round(ordered[-1], 2)}


def since_on_1gib(daemon):
    """Time ``logs --since`` (binary search) and ``--tail 1`` on a 1 GiB log; return seconds (median of 5)."""
    config = os.path.join(SCRATCH, "big.yaml")
    with open(config, "w") as file:
        file.write("services:\n  big:\n    command: ['true']\n")
    daemon.ctl("-f", config, "start", "-d")
    path = os.path.join(daemon.logs_dir(config), "big.stdout.log")
    logs_bench.write_log(path, 1 << 30)
    timings = {}
    for label, args in (("since_last_minute", ["--since", "1m"]), ("tail_1", ["--tail", "1"])):
        runs = []
        for _ in range(5):
            began = time.perf_counter()
            daemon.ctl("-f", config, "logs", *args)
            runs.append(time.perf_counter() - began)
        timings[label] = round(statistics.median(runs), 3)
    daemon.ctl("-f", config, "stop", "--clean")
    return timings


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fillers", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--since-1gib", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/stamps.py starts keplerd and must run as root")
    shutil.rmtree(SCRATCH, ignore_errors=True)
    os.makedirs(SCRATCH)
    logs_bench.SCRATCH = SCRATCH  # the daemon's log goes there too
    daemon = Daemon(os.path.join(SCRATCH, "state"))
    try:
        daemon.start()
        delays, inverted = [], 0
        for _ in range(args.runs):
            lines = one_run(daemon, args.fillers)
            delays += [stamp - written for talker in lines.values() for stamp, written in talker]
            inverted += inversions(lines)
        result = {"fillers": args.fillers, "runs": args.runs, "stamp_delay": summary(delays),
                  "out_of_order_pairs_2ms_apart": inverted}
        if args.since_1gib:
            result["1gib_log_seconds"] = since_on_1gib(daemon)
    finally:
        daemon.stop()
        shutil.rmtree(SCRATCH, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
