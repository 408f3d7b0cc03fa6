"""Benchmark what health probes cost the daemon (issue #19): http and tcp probes made by keplerd vs exec probes.

Run as root from the repository, with the project's venv:

    .venv/bin/python bench/probes.py [--services 100] [--seconds 30] [--repeat 3] [--keep]

SERVICES services (``sleep``), each with a health probe every second, are run
with each kind of probe in turn, REPEAT rounds interleaved (none, http, tcp,
exec, none, http, ...) so that every kind sees the same machine:
``none`` has no healthcheck (the daemon's floor with that many services),
``http: http://127.0.0.1:PORT/`` and ``tcp: 127.0.0.1:PORT`` are probed by the
daemon itself (one small HTTP server, not counted, answers them all), and
``test: ["true"]`` is one fork and exec per probe.
Reported per kind: the daemon's CPU (user + system, from /proc) over SECONDS of
steady probing, once every service is healthy, as a share of one core, every
round and the median; what a probe adds over ``none``; the CPU of the probe
processes the daemon forked and reaped (its children's times), which an exec
probe costs the machine on top; and the machine's load average during the run.
The probed server's CPU is not counted.

Everything lives in bench/.scratch/probes/ and is removed at the end unless --keep.
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
SCRATCH = os.path.join(HERE, ".scratch", "probes")
BIN = os.path.dirname(sys.executable)
KEPLERCTL = os.path.join(BIN, "keplerctl")
SERVER = """\
import http.server, sys
class Quiet(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Quiet).serve_forever()
"""


def cpu_seconds(pid):
    """Return ``(user, system, reaped children)`` CPU seconds of *pid* (children: the probes it waited for)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick, (int(fields[13]) + int(fields[14])) / tick


class Daemon:
    """A private keplerd (own state dir, keplerd.conf and autostart dir)."""

    def __init__(self):
        self.state_dir = os.path.join(SCRATCH, "state")
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/root",
                    "KEPLER_DAEMON_PATH": self.state_dir, "NO_COLOR": "1"}
        conf = os.path.join(SCRATCH, "keplerd.conf")
        with open(conf, "w") as file:
            file.write(f"autostart_dir: {os.path.join(SCRATCH, 'conf.d')}\n")
        log = open(os.path.join(SCRATCH, "keplerd.log"), "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "keplerd", "--config", conf, "--log-level", "warning"],
                                        env=self.env, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 60
        while self.ctl("daemon", "status", check=False).returncode != 0:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise SystemExit("keplerd did not start; see bench/.scratch/probes/keplerd.log")
            time.sleep(0.05)

    def ctl(self, *args, check=True):
        return subprocess.run([KEPLERCTL, *args], cwd=SCRATCH, env=self.env, capture_output=True, text=True,
                              check=check)

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(120)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Round:
    """One measurement: the daemon's user, system and reaped-children CPU seconds over *elapsed* seconds."""

    def __init__(self, before, after, elapsed, load):
        self.user, self.system, self.children = (b - a for a, b in zip(before, after))
        self.elapsed = elapsed
        self.load = load

    @property
    def daemon_percent(self):
        return 100 * (self.user + self.system) / self.elapsed

    @property
    def children_percent(self):
        return 100 * self.children / self.elapsed


def measure(daemon, name, check, services, seconds):
    """Run SERVICES services probed by *check* (None: no healthcheck); return a ``Round`` of *seconds*."""
    config = os.path.join(SCRATCH, f"{name}.yaml")
    healthcheck = {"healthcheck": {**check, "interval": "1s", "timeout": "5s"}} if check else {}
    document = {"services": {f"s{i}": {"command": ["sleep", "100000"], **healthcheck} for i in range(services)}}
    with open(config, "w") as file:
        json.dump(document, file)
    daemon.ctl("-f", config, "start", "-d", "--wait", "--timeout", "300s")
    target = "healthy" if check else "running"
    settled = lambda: all(row["status"] == target  # noqa: E731
                          for row in json.loads(daemon.ctl("-f", config, "ps", "--json").stdout))
    deadline = time.monotonic() + 300
    while not settled():
        if time.monotonic() > deadline:
            raise SystemExit(f"{name}: not every service became {target}")
        time.sleep(0.5)
    time.sleep(2)  # let the probes spread out into their steady rhythm
    before, began = cpu_seconds(daemon.process.pid), time.monotonic()
    time.sleep(seconds)
    after, elapsed = cpu_seconds(daemon.process.pid), time.monotonic() - began
    load = os.getloadavg()[0]
    daemon.ctl("-f", config, "stop", "--clean")
    return Round(before, after, elapsed, load)


def report(rounds, services, seconds):
    """Print every kind's rounds side by side, their medians and what a probe adds over ``none``."""
    loads = [one.load for kind_rounds in rounds.values() for one in kind_rounds]
    print(f"keplerd CPU for {services} services probed every 1s ({os.cpu_count()} CPUs, {seconds:g}s a round, "
          f"rounds interleaved; 1-min load average {min(loads):.2f}-{max(loads):.2f}):")
    floor = statistics.median(one.daemon_percent for one in rounds["none"]) if "none" in rounds else None
    for kind, kind_rounds in rounds.items():
        each = " ".join(f"{one.daemon_percent:4.1f}" for one in kind_rounds)
        median = statistics.median(one.daemon_percent for one in kind_rounds)
        user = statistics.median(100 * one.user / one.elapsed for one in kind_rounds)
        system = statistics.median(100 * one.system / one.elapsed for one in kind_rounds)
        added = f", {median - floor:+4.1f} over none" if floor is not None and kind != "none" else ""
        children = statistics.median(one.children_percent for one in kind_rounds)
        print(f"  {kind:5} keplerd % of a core: {each}  median {median:4.1f} (user {user:.1f}, system {system:.1f})"
              f"{added}; probe processes {children:4.1f}% more")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each round")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of every kind, interleaved")
    parser.add_argument("--kinds", default="none,http,tcp,exec", help="probe kinds to measure, in this order")
    parser.add_argument("--keep", action="store_true", help="leave bench/.scratch/probes/ in place")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/probes.py starts keplerd and must run as root")
    shutil.rmtree(SCRATCH, ignore_errors=True)
    os.makedirs(SCRATCH)
    port = 18000 + os.getpid() % 1000
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)], start_new_session=True)
    checks = {"none": None, "http": {"http": f"http://127.0.0.1:{port}/"}, "tcp": {"tcp": f"127.0.0.1:{port}"},
              "exec": {"test": ["true"]}}
    kinds = args.kinds.split(",")
    rounds = {kind: [] for kind in kinds}
    daemon = None
    try:
        daemon = Daemon()
        for _ in range(args.repeat):
            for kind in kinds:
                rounds[kind].append(measure(daemon, kind, checks[kind], args.services, args.seconds))
    finally:
        if daemon is not None:
            daemon.stop()
        server.kill()
        server.wait()
        if not args.keep:
            shutil.rmtree(SCRATCH, ignore_errors=True)
    report(rounds, args.services, args.seconds)


if __name__ == "__main__":
    main()
