"""Point 4 of #24: a full disk, then a crash, leaves no duplicate process.

The state dir is a small tmpfs filled to the last byte: a restarted service's pid
must still reach ``state.json`` (the daemon's reserve), and after a ``kill -9`` the
next daemon must recognise the old process (pid, then the environment mark) and
start exactly one.
"""

import json
import os
import subprocess

import psutil
import pytest

from tests.integration.harness import Kepler, pids_with_marker, wait_for

MARKER = "kt-diskfull"


@pytest.fixture
def small_disk(kepler_root):
    """A 4 MiB tmpfs as the state dir; skipped where tmpfs cannot be mounted."""
    state = os.path.join(kepler_root, "state")
    os.makedirs(state)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0770", "tmpfs", state],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs for a full disk: {mounted.stderr.strip()}")
    kepler = Kepler(kepler_root)
    try:
        yield kepler
    finally:
        kepler.cleanup()
        for process in psutil.process_iter():
            try:
                if process.environ().get("KEPLER_STATE_DIR") == state:
                    process.kill()
            except psutil.Error:
                continue
        subprocess.run(["umount", "-l", state], check=True)


def _fill(path):
    """Write to *path* until the file system is full."""
    with open(path, "wb", buffering=0) as filler:
        try:
            while True:
                filler.write(b"\0" * 65536)
        except OSError:
            pass
        try:
            while True:
                filler.write(b"\0")
        except OSError:
            pass


def _recorded_pid(kepler):
    try:
        with open(os.path.join(kepler.inspect_path(), "state.json")) as file:
            return json.load(file)["services"]["victim"]["pid"]
    except (OSError, ValueError, KeyError):
        return None


def test_a_pid_reaches_state_json_on_a_full_disk_and_a_crash_leaves_no_duplicate(small_disk):
    kepler = small_disk
    kepler.start_daemon()
    kepler.config(f"""
        services:
          victim:
            command: ["bash", "-c", "exec -a {MARKER} sleep 1000"]
            restart: always
    """)
    kepler.ctl("start", "-d")
    first = kepler.wait_status("victim", "running")["pid"]
    filler = os.path.join(kepler.state_dir, "filler")
    _fill(filler)
    os.kill(first, 9)
    second = wait_for(lambda: (row := kepler.ps()["victim"])["status"] == "running" and row["pid"] != first
                      and row["pid"], message="the restarted process")
    wait_for(lambda: _recorded_pid(kepler) == second, message=f"state.json to record pid {second}")
    kepler.kill_daemon()
    os.unlink(filler)
    kepler.start_daemon()
    third = kepler.wait_status("victim", "running")["pid"]
    mine = [pid for pid in pids_with_marker(MARKER)
            if psutil.Process(pid).environ().get("KEPLER_STATE_DIR") == kepler.state_dir]
    assert mine == [third], f"one process only, the new daemon's (the crashed one's was {second})"


def test_writing_state_json_resumes_when_the_disk_frees(small_disk):
    kepler = small_disk
    kepler.start_daemon()
    os.unlink(os.path.join(kepler.state_dir, "reserve"))  # no reserve: the write itself must fail
    kepler.config("""
        services:
          victim:
            command: ["sleep", "1000"]
            restart: always
    """)
    kepler.ctl("start", "-d")
    first = kepler.wait_status("victim", "running")["pid"]
    filler = os.path.join(kepler.state_dir, "filler")
    _fill(filler)
    os.kill(first, 9)
    second = wait_for(lambda: (row := kepler.ps()["victim"])["status"] == "running" and row["pid"] != first
                      and row["pid"], message="the restarted process")
    wait_for(lambda: "cannot write state.json" in kepler.read_daemon_log(), message="the failed write logged")
    os.unlink(filler)
    wait_for(lambda: _recorded_pid(kepler) == second, message=f"state.json to record pid {second}")
    # Logged right after the write that succeeded: a reader of state.json can be quicker than the log.
    wait_for(lambda: "state.json written again" in kepler.read_daemon_log(), message="the resumed write logged")
