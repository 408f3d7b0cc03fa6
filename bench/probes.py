"""Benchmark what health probes cost the daemon (issue #19): http probes made by keplerd vs exec probes.

Run as root from the repository, with the project's venv:

    .venv/bin/python bench/probes.py [--services 100] [--seconds 60] [--keep]

SERVICES services (``sleep``), each with a health probe every second, run three times:
once with ``http: http://127.0.0.1:PORT/`` (one small HTTP server, not counted,
answers them all), once with ``tcp: 127.0.0.1:PORT`` and once with
``test: ["true"]`` (one fork and exec per probe).
Reported: the daemon's CPU seconds (user + system, from /proc) over SECONDS of
steady probing, once every service is healthy, and that as a share of one core;
then the CPU of the probe processes the daemon forked and reaped (its children's
times), which an exec probe costs the machine on top. The probed server's CPU is
not counted.

Everything lives in bench/.scratch/probes/ and is removed at the end unless --keep.
"""

import argparse
import json
import os
import shutil
import signal
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


def measure(daemon, name, check, services, seconds):
    """Run SERVICES services probed by *check*; return the daemon's CPU seconds over *seconds*."""
    config = os.path.join(SCRATCH, f"{name}.yaml")
    document = {"services": {f"s{i}": {"command": ["sleep", "100000"],
                                       "healthcheck": {**check, "interval": "1s", "timeout": "5s"}}
                             for i in range(services)}}
    with open(config, "w") as file:
        json.dump(document, file)
    daemon.ctl("-f", config, "start", "-d", "--wait", "--timeout", "300s")
    healthy = lambda: all(row["status"] == "healthy"  # noqa: E731
                          for row in json.loads(daemon.ctl("-f", config, "ps", "--json").stdout))
    deadline = time.monotonic() + 300
    while not healthy():
        if time.monotonic() > deadline:
            raise SystemExit(f"{name}: not every service became healthy")
        time.sleep(0.5)
    time.sleep(2)  # let the probes spread out into their steady rhythm
    before, began = cpu_seconds(daemon.process.pid), time.monotonic()
    time.sleep(seconds)
    after, elapsed = cpu_seconds(daemon.process.pid), time.monotonic() - began
    daemon.ctl("-f", config, "stop", "--clean")
    return [b - a for a, b in zip(before, after)], elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each measurement")
    parser.add_argument("--kinds", default="http,tcp,exec", help="probe kinds to measure, in this order")
    parser.add_argument("--keep", action="store_true", help="leave bench/.scratch/probes/ in place")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/probes.py starts keplerd and must run as root")
    shutil.rmtree(SCRATCH, ignore_errors=True)
    os.makedirs(SCRATCH)
    port = 18000 + os.getpid() % 1000
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)], start_new_session=True)
    daemon = None
    try:
        daemon = Daemon()
        checks = {"http": {"http": f"http://127.0.0.1:{port}/"}, "tcp": {"tcp": f"127.0.0.1:{port}"},
                  "exec": {"test": ["true"]}}
        results = {kind: measure(daemon, kind, checks[kind], args.services, args.seconds)
                   for kind in args.kinds.split(",")}
    finally:
        if daemon is not None:
            daemon.stop()
        server.kill()
        server.wait()
        if not args.keep:
            shutil.rmtree(SCRATCH, ignore_errors=True)
    print(f"keplerd CPU for {args.services} services probed every 1s ({os.cpu_count()} CPUs, "
          f"{args.seconds:g}s each):")
    for kind, ((user, system, children), elapsed) in results.items():
        used = user + system
        print(f"  {kind:5} probes: keplerd {used:5.2f} CPU s in {elapsed:4.1f} s = {100 * used / elapsed:4.1f}% of "
              f"one core (user {user:.2f}, system {system:.2f}); the probe processes {children:5.2f} CPU s more")


if __name__ == "__main__":
    main()
