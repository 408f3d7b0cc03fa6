"""The scenarios of issue #11, each a function of one fresh manager.

A scenario configures the services, starts the tool's daemon, measures, and checks
the result against ``/proc`` and the files on disk; it raises ``Incorrect`` when a
tool got something wrong (a line lost, a process missing or surviving a stop).
Daemon start-up is never timed: every timer starts at the tool's own command.
Returned metrics are plain numbers; names end in their unit.
"""

import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

from peers.base import Service
from procs import count_running, cpu_seconds, memory_mib, wait_until

SLEEP = ("/usr/bin/sleep", "3600")   # ends on SIGTERM and SIGINT, like a well-behaved service
RUNNING_TIMEOUT = 120.0
GONE_TIMEOUT = 60.0
LOG_TIMEOUT = 120.0
STATUS_POLL = 0.01


class Incorrect(Exception):
    """The tool did not do what the scenario asked; the message says what went wrong."""


@dataclass(frozen=True)
class Settings:
    """Sizes and durations of one benchmark run (issue #11; ``QUICK`` for iterating)."""

    reps: int = 3
    start_many: tuple = (100, 300)
    idle_n: int = 100
    idle_settle_s: float = 2.0
    idle_window_s: float = 20.0
    log_lines: int = 500_000
    restarts: int = 50
    restart_budget_s: float = 60.0   # a tool slower than this is measured on the restarts it made
    status_n: int = 100
    status_calls: int = 20
    stop_n: int = 100
    scale_n: int = 1000              # S7 (issue #25)
    followers: int = 50              # S9
    follow_rate: int = 10_000        # S9: lines per second of the followed service
    follow_window_s: float = 10.0
    apply_n: int = 100               # C1-C5: the capabilities' costs (bench/capabilities.py)
    applies: int = 5
    reexec_n: int = 100
    reexec_writers: int = 20
    reexecs: int = 5
    scrape_n: int = 300
    scrapes: int = 10
    roll_replicas: int = 10


QUICK = Settings(reps=1, start_many=(50,), idle_n=20, idle_window_s=5.0, log_lines=100_000, restarts=20,
                 restart_budget_s=10.0, status_n=20, status_calls=10, stop_n=20, scale_n=200, followers=10,
                 follow_window_s=3.0, applies=3, reexecs=2, scrapes=5)


@dataclass(frozen=True)
class Context:
    """What every scenario run gets besides its manager."""

    settings: Settings
    data_file: str    # the S3 writer's output: ``log_lines`` numbered lines of 100 bytes


# -- helpers -------------------------------------------------------------------------------


def sleepers(n):
    return [Service(f"s{i:03d}", SLEEP) for i in range(1, n + 1)]


def timed(manager, argv, check=True):
    """Run a CLI command; return its wall time in seconds."""
    began = time.perf_counter()
    manager.run(argv, check=check)
    return time.perf_counter() - began


def wait_all_running(manager, timeout=RUNNING_TIMEOUT):
    """Ask the tool's status until it calls every configured service running."""
    wanted = {service.name for service in manager.services}
    if not wait_until(lambda: wanted <= manager.running(), timeout, interval=STATUS_POLL):
        missing = sorted(wanted - manager.running())
        raise Incorrect(f"{len(missing)} services not running after {timeout:.0f}s: {', '.join(missing[:5])}")


def expect_processes(argv, n, timeout=10.0):
    """Check from /proc that exactly *n* processes run *argv* (allowing *timeout* for exec)."""
    if not wait_until(lambda: count_running(argv) == n, timeout):
        raise Incorrect(f"/proc shows {count_running(argv)} processes of {' '.join(argv)}, expected {n}")


def bring_up(manager, services):
    """Configure, start the daemon and the services, and wait until all run (untimed)."""
    manager.configure(services)
    manager.start_daemon()
    manager.run(manager.start_command())
    wait_all_running(manager)


# -- S1 start-many -------------------------------------------------------------------------


def start_many(manager, context, n):
    """Start *n* sleepers: time until the tool's status calls all running; CPU, peak RSS."""
    manager.configure(sleepers(n))
    manager.start_daemon()
    pids = manager.manager_pids()
    cpu_before = cpu_seconds(pids)
    began = time.perf_counter()
    manager.run(manager.start_command())
    returned = time.perf_counter() - began
    wait_all_running(manager)
    all_running = time.perf_counter() - began
    cpu = cpu_seconds(pids) - cpu_before
    expect_processes(SLEEP, n)
    return {"all_running_s": all_running, "returned_s": returned, "cpu_s": cpu,
            "peak_rss_mib": memory_mib(pids, "VmHWM")}


# -- S2 idle -------------------------------------------------------------------------------


def idle(manager, context):
    """With N sleepers running and nobody asking, the manager's CPU over a window; its RSS."""
    settings = context.settings
    bring_up(manager, sleepers(settings.idle_n))
    pids = manager.manager_pids()
    time.sleep(settings.idle_settle_s)
    cpu_before = cpu_seconds(pids)
    time.sleep(settings.idle_window_s)
    cpu = cpu_seconds(pids) - cpu_before
    expect_processes(SLEEP, settings.idle_n, timeout=0)
    return {"idle_cpu_s": cpu, "rss_mib": memory_mib(pids, "VmRSS")}


# -- S3 log throughput ---------------------------------------------------------------------


def data_line(number):
    """Line *number* of the writer's output: 100 bytes with the newline, numbered for the order check."""
    return b"%07d " % number + b"kepler-bench-" * 7 + b"\n"


def make_data_file(path, lines):
    """Write the writer's output once per run (the same bytes for every tool)."""
    if os.path.exists(path) and os.path.getsize(path) == 100 * lines:
        return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "wb") as file:
        for start in range(0, lines, 10_000):
            file.write(b"".join(data_line(number) for number in range(start, min(start + 10_000, lines))))
    os.rename(path + ".tmp", path)
    return path


def writer_script(workdir, data_file):
    """A service that notes when it started (ns since the epoch), then execs cat on the data."""
    started = os.path.join(workdir, "writer.started")
    script = os.path.join(workdir, "writer.sh")
    with open(script, "w") as file:
        file.write(f"/usr/bin/date +%s%N > {started}\nexec /usr/bin/cat {data_file}\n")
    return script, started


def log_throughput(manager, context):
    """One service prints the data file: time until every line is in the tool's log file."""
    script, started_file = writer_script(manager.workdir, context.data_file)
    manager.configure([Service("writer", ("/usr/bin/sh", script))])
    manager.start_daemon()
    pids = manager.manager_pids()
    cpu_before = cpu_seconds(pids)
    began = time.perf_counter()
    manager.run(manager.start_command())
    wait_last_line(manager.log_path("writer"), data_line(context.settings.log_lines - 1))
    done_ns, done = time.time_ns(), time.perf_counter()
    cpu = cpu_seconds(pids) - cpu_before
    check_lines(manager.log_path("writer"), context.data_file, manager.stamps_lines)
    return {"to_disk_s": (done_ns - read_ns(started_file)) / 1e9, "from_command_s": done - began, "cpu_s": cpu}


def cat_limit(workdir, context):
    """The physical limits of S3: the same writer through a pipe into `cat > file`, and `cat > file`."""
    script, started_file = writer_script(workdir, context.data_file)
    piped = os.path.join(workdir, "piped.log")
    subprocess.run(["/usr/bin/sh", "-c", f"/usr/bin/sh {script} | /usr/bin/cat > {piped}"], check=True)
    to_disk = (time.time_ns() - read_ns(started_file)) / 1e9
    check_lines(piped, context.data_file, stamped=False)
    direct = os.path.join(workdir, "direct.log")
    began = time.perf_counter()
    with open(direct, "wb") as out:
        subprocess.run(["/usr/bin/cat", context.data_file], stdout=out, check=True)
    return {"to_disk_s": to_disk, "direct_s": time.perf_counter() - began}


def wait_last_line(path, last_line, timeout=LOG_TIMEOUT):
    """Poll *path* until it ends with *last_line* (stamped or not): every line is then on disk.

    Files are only appended to, in order, so the last line there means every line is, and
    ``check_lines`` proves it after. Each poll is a stat and, when the size changed, a read
    of the file's end: reading and counting every line as it came (as `tail -f | wc -l`
    would) cost the benchmark ~30 ms of CPU per 500,000 lines, taken from the two cores the
    tool and its writer run on.
    """
    deadline = time.monotonic() + timeout
    size = -1
    while True:
        try:
            now = os.stat(path).st_size
        except FileNotFoundError:
            now = -1
        if now != size and now >= len(last_line):
            size = now
            with open(path, "rb") as file:
                file.seek(size - len(last_line))
                if file.read(len(last_line)) == last_line:
                    return
        if time.monotonic() > deadline:
            raise Incorrect(f"{path} does not end with line {last_line[:7].decode()} after {timeout:.0f}s")
        time.sleep(0.002)


def check_lines(path, data_file, stamped):
    """Check that *path* holds every line of *data_file* exactly once, in order.

    With *stamped*, each line must read ``<epoch-ms> <text>`` (13 digits) and the
    stamps must never go backwards.
    """
    with open(path, "rb") as file:
        got = file.read()
    with open(data_file, "rb") as file:
        want = file.read()
    if stamped:
        lines = got.split(b"\n")
        if lines.pop() != b"":
            raise Incorrect(f"{path}: the last line has no newline")
        pairs = [line.split(b" ", 1) for line in lines]
        stamps = [pair[0] for pair in pairs]
        if not all(len(stamp) == 13 and stamp.isdigit() for stamp in stamps) or any(len(p) != 2 for p in pairs):
            raise Incorrect(f"{path}: a line without an epoch-ms timestamp")
        if any(a > b for a, b in zip(stamps, stamps[1:])):
            raise Incorrect(f"{path}: timestamps go backwards")
        got = b"\n".join(pair[1] for pair in pairs) + b"\n"
    if got != want:
        raise Incorrect(f"{path}: {describe_difference(got, want)}")


def describe_difference(got, want):
    got_lines, want_lines = got.split(b"\n"), want.split(b"\n")
    for index, (a, b) in enumerate(zip(got_lines, want_lines)):
        if a != b:
            return f"line {index + 1} is {a[:40]!r}, expected {b[:40]!r} ({len(got_lines) - 1} lines)"
    return f"{len(got_lines) - 1} lines, expected {len(want_lines) - 1}"


def read_ns(path):
    with open(path) as file:
        return int(file.read().strip())


# -- S4 crash-restart ----------------------------------------------------------------------


def crash_script(workdir):
    """A service that appends its start time (bash's $EPOCHREALTIME: no fork) and exits 1."""
    starts = os.path.join(workdir, "starts")
    script = os.path.join(workdir, "crash.sh")
    with open(script, "w") as file:
        file.write(f"echo $EPOCHREALTIME >> {starts}\nexit 1\n")
    return ("/usr/bin/bash", script), starts


def crash_restart(manager, context):
    """A service that exits 1 at once: the intervals between its starts over N restarts."""
    settings = context.settings
    argv, starts = crash_script(manager.workdir)
    manager.configure([Service("crash", argv, restart=True)])
    manager.start_daemon()
    # A process that exits at once may make a start command report a failure; the starts file tells.
    started = manager.run(manager.start_command(), check=False)
    wait_until(lambda: count_lines(starts) > settings.restarts, settings.restart_budget_s, interval=0.01)
    manager.run(manager.stop_command(), check=False)
    if not wait_until(lambda: count_running(argv) == 0, GONE_TIMEOUT):
        raise Incorrect("the crashing service still runs after the stop command")
    if count_lines(starts) < 2:
        raise Incorrect(f"no restart within {settings.restart_budget_s:g}s; the start command said: "
                        f"{(started.stdout + started.stderr).strip()[-500:]}")
    return restart_intervals(starts, settings.restarts)


def loop_limit(workdir, context):
    """The physical limit of S4: a shell loop running the same service back to back."""
    argv, starts = crash_script(workdir)
    loop = f"for i in $(seq {context.settings.restarts + 1}); do {' '.join(argv)}; done; exit 0"
    subprocess.run(["/usr/bin/bash", "-c", loop], check=True)
    return restart_intervals(starts, context.settings.restarts)


def count_lines(path):
    try:
        with open(path, "rb") as file:
            return file.read().count(b"\n")
    except FileNotFoundError:
        return 0


def restart_intervals(starts, restarts):
    with open(starts) as file:
        times = [float(line.replace(",", ".")) for line in file.read().split()][:restarts + 1]
    if len(times) < 2:
        raise Incorrect(f"the service started {len(times)} time(s): no restart to measure")
    intervals = sorted((b - a) * 1000 for a, b in zip(times, times[1:]))
    p95 = intervals[max(0, -(-len(intervals) * 95 // 100) - 1)]   # nearest rank
    return {"median_ms": statistics.median(intervals), "p95_ms": p95, "restarts_n": len(intervals)}


# -- S5 status latency ---------------------------------------------------------------------


def status_latency(manager, context):
    """With N sleepers running, the wall time of the tool's status command."""
    settings = context.settings
    services = sleepers(settings.status_n)
    bring_up(manager, services)
    shown = manager.run(manager.status_command()).stdout
    missing = [service.name for service in services if service.name not in shown]
    if missing:
        raise Incorrect(f"status does not show {len(missing)} services, e.g. {missing[0]}")
    times = [timed(manager, manager.status_command()) * 1000 for _ in range(settings.status_calls)]
    metrics = {"median_ms": statistics.median(times)}
    version = manager.version_command()
    if version is not None:
        metrics["version_ms"] = statistics.median(
            timed(manager, version) * 1000 for _ in range(settings.status_calls))
    return metrics


def interpreter_limit(workdir, context):
    """The physical limit of S5: the interpreter Kepler's CLI runs on, doing nothing (`python3 -c pass`).

    The real binary, not a ``python3`` found on PATH: that may be a version manager's shim (pyenv's is a
    shell script that costs ten times the interpreter).
    """
    python = os.path.realpath(sys._base_executable)
    times = [_wall([python, "-c", "pass"]) * 1000 for _ in range(context.settings.status_calls)]
    median = statistics.median(times)
    return {"median_ms": median, "version_ms": median}


def _wall(argv):
    began = time.perf_counter()
    subprocess.run(argv, check=True)
    return time.perf_counter() - began


# -- S6 stop-all ---------------------------------------------------------------------------


def stop_all(manager, context):
    """With N sleepers running: time until the stop command returns, and until none is left."""
    settings = context.settings
    bring_up(manager, sleepers(settings.stop_n))
    expect_processes(SLEEP, settings.stop_n)
    began = time.perf_counter()
    manager.run(manager.stop_command())
    returned = time.perf_counter() - began
    if not wait_until(lambda: count_running(SLEEP) == 0, GONE_TIMEOUT, interval=0.005):
        raise Incorrect(f"{count_running(SLEEP)} services survive the stop command after {GONE_TIMEOUT:.0f}s")
    return {"returned_s": returned, "all_gone_s": time.perf_counter() - began}


# -- S7 scale ------------------------------------------------------------------------------


def scale(manager, context):
    """N = 1,000 sleepers: start → all running, RSS, the status command, stop → none left."""
    settings = context.settings
    started = start_many(manager, context, settings.scale_n)
    pids = manager.manager_pids()
    rss = memory_mib(pids, "VmRSS")
    status = [timed(manager, manager.status_command()) * 1000 for _ in range(5)]
    began = time.perf_counter()
    manager.run(manager.stop_command())
    if not wait_until(lambda: count_running(SLEEP) == 0, GONE_TIMEOUT, interval=0.005):
        raise Incorrect(f"{count_running(SLEEP)} services survive the stop command after {GONE_TIMEOUT:.0f}s")
    return {"all_running_s": started["all_running_s"], "rss_mib": rss, "peak_rss_mib": started["peak_rss_mib"],
            "status_ms": statistics.median(status), "all_gone_s": time.perf_counter() - began}


# -- S9 followers --------------------------------------------------------------------------

FOLLOWED = """\
import os, sys, time
rate, batch = int(sys.argv[1]), 100
began, sent = time.monotonic(), 0
while True:
    due = began + sent / rate
    if due > time.monotonic():
        time.sleep(due - time.monotonic())
    os.write(1, b"".join(b"%09d followed-line-of-forty-bytes\\n" % (sent + k) for k in range(batch)))
    sent += batch
"""


def followers(manager, context):
    """F followers of a service writing R lines/s: the manager's CPU share; every follower complete."""
    settings = context.settings
    script = os.path.join(manager.workdir, "followed.py")
    with open(script, "w") as file:
        file.write(FOLLOWED)
    follow = manager.follow_command("chatty")
    if follow is None:
        raise NotApplicable(f"{manager.name} has no follow command in this benchmark")
    bring_up(manager, [Service("chatty", ("/usr/bin/python3", script, str(settings.follow_rate)))])
    outputs = [os.path.join(manager.workdir, f"follower-{i}.out") for i in range(settings.followers)]
    readers = [subprocess.Popen(follow, stdout=open(path, "wb"), stderr=subprocess.STDOUT, env=manager.env())
               for path in outputs]
    try:
        # Synchronised on what the followers show, not on sleeps: on a loaded machine 50 CLIs
        # take seconds to start, and a follower still starting would be counted incomplete.
        def ended():
            return any(reader.poll() is not None for reader in readers)  # a dropped follower: no use waiting

        if not wait_until(lambda: all(_last_number(path) is not None for path in outputs) or ended(), LOG_TIMEOUT):
            raise Incorrect(f"not every follower showed a line within {LOG_TIMEOUT:.0f}s")
        if ended():
            raise Incorrect(f"a follower ended before the window opened: {_said(outputs)}")
        first = [_last_number(path) for path in outputs]
        pids = manager.manager_pids()
        cpu_before = cpu_seconds(pids)
        time.sleep(settings.follow_window_s)
        cpu = cpu_seconds(pids) - cpu_before
        # Every follower must then show the newest line any follower showed at the window's end.
        newest = max(_last_number(path) for path in outputs)
        wait_until(lambda: all(reader.poll() is not None or (_last_number(path) or 0) >= newest
                               for reader, path in zip(readers, outputs)), LOG_TIMEOUT, interval=0.05)
        dropped = sum(reader.poll() is not None for reader in readers)
    finally:
        for reader in readers:
            reader.terminate()
        for reader in readers:
            reader.wait()
    window = settings.follow_window_s
    measured = f"(manager CPU {100 * cpu / window:.1f} % meanwhile, {(newest - max(first)) / window:.0f} lines/s)"
    if dropped:
        raise Incorrect(f"{dropped} of {len(outputs)} followers ended (dropped?) before the end: "
                        f"{_said(outputs)} {measured}")
    complete = sum(_contiguous(path, newest) for path in outputs)
    if complete < len(outputs):
        raise Incorrect(f"{len(outputs) - complete} of {len(outputs)} followers missed or repeated lines {measured}")
    return {"cpu_percent": 100 * cpu / window, "lines_per_s": (newest - max(first)) / window}


def _last_number(path):
    """Return the number of the last whole line a follower printed, or None before its first."""
    with open(path, "rb") as file:
        file.seek(max(0, os.fstat(file.fileno()).st_size - 200))
        numbers = re.findall(rb"(\d{9}) followed-line-of-forty-bytes\n", file.read())
    return int(numbers[-1]) if numbers else None


def _said(paths):
    """Return the first line a follower printed that is not a followed line (its error), if any."""
    for path in paths:
        with open(path, "rb") as file:
            for line in file.read()[-4096:].splitlines():
                if b"followed-line" not in line and line.startswith(b"keplerctl"):
                    return line.decode(errors="replace")
    return "no error printed"


def _contiguous(path, through):
    """Whether the follower's lines are numbered without gap or repeat, from before the window through *through*.

    (Through the newest line at the window's end, not a count: on a loaded machine the
    writer itself falls behind its rate, and its lines are all there is to show.)
    """
    with open(path, "rb") as file:
        numbers = [int(match) for match in re.findall(rb"(\d{9}) followed-line", file.read())]
    return bool(numbers) and numbers[-1] >= through and numbers == list(range(numbers[0], numbers[0] + len(numbers)))


class NotApplicable(Exception):
    """The scenario does not apply to this tool (it is left out of the table)."""
