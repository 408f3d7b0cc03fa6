"""Cost of watching services (SPEC §19): ``ps --stats``, an idle daemon with metrics on and off, a scrape.

    python bench/stats.py                  # as root; about 3 minutes
    python bench/stats.py --idle 20        # shorter idle windows

Prints one line per measure. A real keplerd in a scratch state dir, driven by the
real keplerctl; every daemon and service is stopped at the end.
"""

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

BIN = os.path.dirname(sys.executable)
KEPLERCTL = os.path.join(BIN, "keplerctl")


class Daemon:
    """A keplerd with *count* idle services, in a scratch dir."""

    def __init__(self, count, *flags):
        self.root = tempfile.mkdtemp(prefix="kb-stats-", dir="/tmp")
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/root",
                    "KEPLER_DAEMON_PATH": os.path.join(self.root, "state")}
        conf = os.path.join(self.root, "keplerd.conf")
        with open(conf, "w") as file:
            file.write(f"autostart_dir: {self.root}/conf.d\n")
        with open(os.path.join(self.root, "kepler.yaml"), "w") as file:
            file.write("services:\n" + "".join(f"  s{n}:\n    command: [sleep, '100000']\n" for n in range(count)))
        self.process = subprocess.Popen([sys.executable, "-m", "keplerd", "--config", conf, *flags], env=self.env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while self.ctl("daemon", "status", check=False).returncode != 0:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("keplerd did not start")
            time.sleep(0.05)
        self.ctl("start", "-d", "--wait")

    def ctl(self, *args, check=True):
        return subprocess.run([KEPLERCTL, *args], cwd=self.root, env=self.env, capture_output=True, text=True,
                              check=check, timeout=600)

    def cpu_seconds(self):
        """CPU time of the daemon in ns precision (schedstat), not clock ticks: an idle daemon uses µs."""
        with open(f"/proc/{self.process.pid}/schedstat") as schedstat:
            return int(schedstat.read().split()[0]) / 1e9

    def close(self):
        try:
            self.ctl("daemon", "stop", check=False)
            self.process.wait(120)
        finally:
            if self.process.poll() is None:
                self.process.kill()
            shutil.rmtree(self.root, ignore_errors=True)


def ps_stats(count, rounds=20):
    """Time ``keplerctl ps --stats`` (the whole command) and the request alone, over *count* services."""
    daemon = Daemon(count)
    try:
        sys.path.insert(0, os.path.dirname(BIN))
        os.environ["KEPLER_DAEMON_PATH"] = daemon.env["KEPLER_DAEMON_PATH"]
        from keplerd.cli.client import Client

        requests = []
        with Client() as client:
            request = {"type": "ps", "config": os.path.join(daemon.root, "kepler.yaml"), "stats": True}
            for _ in range(rounds):
                began = time.perf_counter()
                rows = client.call(request)["services"]
                requests.append(time.perf_counter() - began)
                time.sleep(0.05)
        assert len(rows) == count and all(row["processes"] == 1 for row in rows)
        commands, plain, interpreter = [], [], []
        for _ in range(rounds):
            commands.append(_timed(lambda: daemon.ctl("ps", "--stats")))
            plain.append(_timed(lambda: daemon.ctl("ps")))
            interpreter.append(_timed(lambda: subprocess.run([sys.executable, "-S", "-c", "pass"], check=True)))
        print(f"ps --stats, {count} services: the request {_ms(requests)}; the whole keplerctl command "
              f"{_ms(commands)}, against {_ms(plain)} for plain ps and {_ms(interpreter)} for a bare interpreter")
    finally:
        daemon.close()


def _timed(action):
    began = time.perf_counter()
    action()
    return time.perf_counter() - began


def _ms(times):
    return f"median {statistics.median(times) * 1000:.1f} ms (max {max(times) * 1000:.1f})"


def idle_cpu(count, seconds, *flags):
    """Return the daemon's CPU seconds per hour while *count* services idle and nobody asks anything."""
    daemon = Daemon(count, *flags)
    try:
        time.sleep(5)  # let start-up settle
        before = daemon.cpu_seconds()
        time.sleep(seconds)
        return (daemon.cpu_seconds() - before) * 3600 / seconds
    finally:
        daemon.close()


def scrape(count, rounds=10):
    path = os.path.join(tempfile.gettempdir(), f"kb-metrics-{os.getpid()}.sock")
    daemon = Daemon(count, "--metrics-listen", path)
    try:
        times, size = [], 0
        for _ in range(rounds):
            began = time.perf_counter()
            with socket.socket(socket.AF_UNIX) as client:
                client.connect(path)
                client.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
                data = b""
                while chunk := client.recv(1 << 16):
                    data += chunk
            times.append(time.perf_counter() - began)
            size = len(data)
            time.sleep(0.2)
        print(f"one scrape, {count} services: median {statistics.median(times) * 1000:.1f} ms "
              f"(max {max(times) * 1000:.1f}), {size / 1024:.0f} KiB")
    finally:
        daemon.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of each idle window (default 60)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/stats.py runs keplerd: run it as root")
    ps_stats(100)
    scrape(300)
    off = idle_cpu(100, args.idle)
    metrics_socket = os.path.join(tempfile.gettempdir(), f"kb-idle-{os.getpid()}.sock")
    on = idle_cpu(100, args.idle, "--metrics-listen", metrics_socket)
    print(f"idle daemon, 100 services, {args.idle:g} s windows: metrics off {off:.3f} CPU s/h, "
          f"metrics on (no scrape) {on:.3f} CPU s/h")


if __name__ == "__main__":
    main()
