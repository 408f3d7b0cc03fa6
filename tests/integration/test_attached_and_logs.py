"""Attached start (progress and logs until the end, Ctrl+C stops) and reading stored logs."""

import os
import re
import signal
import subprocess
import threading

from tests.integration.harness import KEPLERCTL, pids_with_marker, wait_for


class Attached:
    """A keplerctl process whose output is collected by a thread while the test goes on."""

    def __init__(self, kepler, *args):
        self.process = subprocess.Popen([KEPLERCTL, *args], cwd=kepler.workdir, env=kepler.env(),
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_line(self, pattern):
        return wait_for(lambda: any(re.search(pattern, line) for line in self.lines),
                        message=f"a line matching {pattern!r} in {self.lines}")

    def finish(self, timeout=30):
        code = self.process.wait(timeout)
        self._reader.join(5)
        return code

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def test_attached_start_streams_progress_and_logs_until_all_end(kepler):
    kepler.config("""
        services:
          short:
            command: ["sh", "-c", "echo hello from short; echo oops >&2; exit 3"]
          ghost:
            command: ["no-such-program-kt"]
            hooks: {pre_start: {run: "true"}}  # it might create the program: found missing at start
    """)
    attached = Attached(kepler, "start")
    try:
        assert attached.finish() == 0
    finally:
        attached.kill()
    output = "\n".join(attached.lines)
    assert "[+] short: started (pid" in output
    assert "short | hello from short" in output and "short | oops" in output
    assert "[+] short: exited with code 3" in output
    assert "[+] ghost: failed: program not found: no-such-program-kt" in output


def test_ctrl_c_in_attached_mode_stops_everything(kepler):
    marker = "kt-attached-marker"
    kepler.config(f"""
        services:
          web:
            command: ["bash", "-c", "echo serving; exec -a {marker} sleep 1000"]
          worker:
            command: ["bash", "-c", "exec -a {marker}-w sleep 1000"]
    """)
    attached = Attached(kepler, "start")
    try:
        attached.wait_line(r"web \| serving")
        kepler.wait_status("worker", "running")
        attached.process.send_signal(signal.SIGINT)
        assert attached.finish() == 130
    finally:
        attached.kill()
    assert {row["status"] for row in kepler.ps().values()} == {"stopped"}
    assert pids_with_marker(marker) == []


def test_start_wait_returns_once_services_run(kepler):
    kepler.config("""
        services:
          web:
            command: ["sleep", "1000"]
    """)
    kepler.ctl("start", "-d", "--wait")
    assert kepler.status("web") == "running"


def test_start_wait_fails_naming_a_failed_service(kepler):
    kepler.config("""
        services:
          ghost:
            command: ["no-such-program-kt"]
            hooks: {pre_start: {run: "true"}}  # it might create the program: found missing at start
    """)
    result = kepler.ctl("start", "-d", "--wait", check=False)
    assert result.returncode == 1
    assert "ghost" in result.stderr and "program not found" in result.stderr


def _three_lines_config(kepler):
    kepler.config("""
        services:
          talk:
            command: ["sh", "-c", "echo one; echo two >&2; echo three; printf 'no newline at the end'"]
    """)
    kepler.ctl("start", "-d")
    kepler.wait_status("talk", "exited")


def test_logs_are_stored_with_timestamps_and_merged(kepler):
    _three_lines_config(kepler)
    logs_dir = os.path.join(kepler.inspect()["config"]["state_dir"], "logs")
    stdout = open(os.path.join(logs_dir, "talk.stdout.log")).read().splitlines()
    assert [line.split(" ", 1)[1] for line in stdout] == ["one", "three", "no newline at the end"]
    assert all(re.fullmatch(r"\d{13} .*", line) for line in stdout)
    lines = kepler.logs()
    assert sorted(lines) == sorted(["talk | one", "talk | two", "talk | three", "talk | no newline at the end"])


def test_logs_tail_head_and_timestamps(kepler):
    kepler.config("""
        services:
          count:
            command: ["sh", "-c", "for i in 1 2 3 4 5 6; do echo line $i; done"]
    """)
    kepler.ctl("start", "-d")
    kepler.wait_status("count", "exited")
    assert kepler.logs("--tail", "2") == ["count | line 5", "count | line 6"]
    assert kepler.logs("--head", "2") == ["count | line 1", "count | line 2"]
    stamped = kepler.logs("-t", "--head", "1")[0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z count \| line 1", stamped)


def test_logs_of_named_services_only(kepler):
    kepler.config("""
        services:
          a:
            command: ["echo", "from a"]
          b:
            command: ["echo", "from b"]
    """)
    kepler.ctl("start", "-d")
    kepler.wait_status("a", "exited")
    kepler.wait_status("b", "exited")
    assert kepler.logs("b") == ["b | from b"]
    unknown = kepler.ctl("logs", "nope", check=False)
    assert unknown.returncode == 1 and "no such service: nope" in unknown.stderr
