"""Starting a daemon of one's own (issue #16): make run, private state dirs, warnings one can see."""

import os
import signal
import subprocess

import pytest

from tests.integration.harness import BIN, wait_for
from tests.integration.test_system_service import stop_pid

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KEPLERD = os.path.join(BIN, "keplerd")


@pytest.fixture
def daemon_pids():
    """Pids of daemons a test put in the background; stopped at the end."""
    pids = []
    yield pids
    for pid in pids:
        stop_pid(pid)


def _pid(kepler):
    with open(os.path.join(kepler.state_dir, "kepler.pid")) as file:
        return int(file.read())


def test_a_private_state_dir_reads_no_autostart_dir(kepler_stopped):
    kepler_stopped.write("keplerd.conf", "log_level: info\n", directory=kepler_stopped.root)
    kepler_stopped.start_daemon()
    assert "no autostart dir is read" in kepler_stopped.read_daemon_log()


def test_daemonize_shows_start_up_warnings_to_its_caller(kepler_stopped, daemon_pids):
    conf = kepler_stopped.isolation_args()[1]
    result = subprocess.run([KEPLERD, "--config", conf, "--socket-group", "kt-no-such-group", "--daemonize"],
                            env=kepler_stopped.env(), capture_output=True, text=True, timeout=60)
    daemon_pids.append(_pid(kepler_stopped))
    assert result.returncode == 0, result.stderr
    assert "keplerd: warning: group 'kt-no-such-group' does not exist" in result.stderr, result.stderr


def test_ctrl_c_of_make_run_ends_with_how_to_stop_the_daemon(kepler_stopped, daemon_pids):
    example = kepler_stopped.config("services:\n  web:\n    command: [sh, -c, 'echo up; exec sleep 1000']\n")
    # -o: the venv running this test is the one make run would install; never reinstall it here.
    make = subprocess.Popen(["make", "--no-print-directory", "-o", ".venv/bin/.installed", "run",
                             f"STATE={kepler_stopped.state_dir}",
                             f"EXAMPLE={example}"], cwd=REPO, env={**kepler_stopped.env(), "MAKEFLAGS": ""},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        wait_for(lambda: os.path.exists(os.path.join(kepler_stopped.state_dir, "kepler.pid")) and
                 kepler_stopped.status("web") == "running", timeout=60, message="make run to start web")
        daemon_pids.append(_pid(kepler_stopped))
        os.killpg(make.pid, signal.SIGINT)  # what Ctrl+C in the terminal does
        output, _ = make.communicate(timeout=60)
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait()
    last = output.strip().splitlines()[-1]
    assert "Interrupt" not in output, output
    assert "still running" in last and "make stop" in last, output
    assert kepler_stopped.status("web") == "stopped"
