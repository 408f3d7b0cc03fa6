"""``keplerctl top`` (SPEC §19) in a real 80×24 terminal: tmux runs it, the test reads the screen.

tmux comes from the Debian package ``tmux`` (``make test-tools``).
"""

import os
import shlex
import shutil
import subprocess

import pytest

from tests.integration.harness import KEPLERCTL, wait_for

CONFIG = """
    services:
      busy:
        command: ["sh", "-c", "while :; do :; done"]
      alpha:
        command: ["sleep", "1000"]
      beta:
        command: ["sh", "-c", "echo beta-says-hello; exec sleep 1000"]
"""


class Terminal:
    """A detached tmux session of 80×24 running one shell command, on its own tmux server."""

    def __init__(self, root, env):
        self.socket = os.path.join(root, "tmux.sock")
        self.env = env

    def tmux(self, *args):
        return subprocess.run(["tmux", "-S", self.socket, *args], capture_output=True, text=True, check=True,
                              timeout=30).stdout

    def run(self, command):
        environment = [f"-e{key}={value}" for key, value in self.env.items()]
        self.tmux("new-session", "-d", "-x", "80", "-y", "24", "-s", "top", *environment,
                  # The shell survives the Ctrl+C sent to top (a trap, not an ignore: top must get it).
                  "sh", "-c", f"trap : INT; {command}; echo TOP-EXITED $?; stty -a; sleep 1000")

    def keys(self, *keys):
        self.tmux("send-keys", "-t", "top", *keys)

    def screen(self):
        return self.tmux("capture-pane", "-p", "-t", "top")

    def wait_screen(self, predicate, message):
        return wait_for(lambda: predicate(screen := self.screen()) and screen, message=message)

    def close(self):
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], capture_output=True, timeout=30)


@pytest.fixture
def terminal(kepler):
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (Debian package tmux; make test-tools installs it)")
    kepler.config(CONFIG)
    kepler.ctl("start", "-d", "--wait")
    session = Terminal(kepler.root, {**kepler.env(), "TERM": "xterm-256color", "LANG": "C.UTF-8"})
    try:
        yield session
    finally:
        session.close()


def _top(kepler, *flags):
    return f"cd {shlex.quote(kepler.workdir)} && {shlex.quote(KEPLERCTL)} top {' '.join(flags)}"


def _names(screen):
    return [line.split()[0] for line in screen.splitlines()[2:23] if line.strip()]  # line 24: the message


def _settled(terminal):
    """Wait until busy leads and the idle two follow by name (their first sample may show start-up CPU)."""
    terminal.wait_screen(lambda screen: _names(screen)[:3] == ["busy", "alpha", "beta"], "busy, alpha, beta")


def _exited(screen):
    """top exited 0 and ``stty -a`` printed the terminal's modes after it."""
    return "TOP-EXITED 0" in screen and "icanon" in screen.partition("TOP-EXITED 0")[2]


def _restored(screen):
    modes = screen.partition("TOP-EXITED 0")[2].split()
    return "icanon" in modes and "echo" in modes


def _row(screen, name):
    return next((line for line in screen.splitlines() if line.split()[:1] == [name]), None)


def test_top_shows_the_services_busiest_first_and_q_restores_the_terminal(kepler, terminal):
    terminal.run(_top(kepler))
    screen = terminal.wait_screen(lambda screen: "busy" in screen and "alpha" in screen and "beta" in screen,
                                  "the services on screen")
    lines = screen.splitlines()
    assert len(lines) <= 24 and all(len(line) <= 80 for line in lines)
    assert lines[0].startswith("kepler top: 3 service(s)")
    assert lines[1].split() == ["NAME", "STATUS", "CPU%", "MEM", "PROCS", "RESTARTS", "UPTIME"]
    screen = terminal.wait_screen(lambda screen: screen.splitlines()[2].startswith("busy"),
                                  "the busiest service first")
    assert float(_row(screen, "busy").split()[-5]) > 0
    terminal.keys("q")
    screen = terminal.wait_screen(_exited, "top to quit")
    assert _restored(screen), "the terminal is back in its normal mode"


def test_keys_select_stop_start_and_restart_the_service(kepler, terminal):
    terminal.run(_top(kepler))
    _settled(terminal)
    # Sorted by CPU: busy, then alpha and beta (idle, by name). From the top, two steps down is beta.
    terminal.keys("Up", "Up", "Down", "Down", "s")
    kepler.wait_status("beta", "stopped")
    assert kepler.status("alpha") == "running" and kepler.status("busy") == "running"
    terminal.wait_screen(lambda screen: "Stopped" in (_row(screen, "beta") or ""), "beta shown stopped")
    # Stopped and idle, beta is now last but still selected.
    terminal.keys("S")
    kepler.wait_status("beta", "running")
    before = kepler.ps()["beta"]["pid"]
    terminal.keys("r")
    wait_for(lambda: kepler.ps()["beta"]["pid"] not in (None, before), message="beta restarted")
    _settled(terminal)
    terminal.keys("Up", "Up", "Up", "s")  # the top row: busy
    kepler.wait_status("busy", "stopped")


def test_l_follows_the_logs_and_ctrl_c_comes_back_then_ctrl_c_quits(kepler, terminal):
    terminal.run(_top(kepler))
    _settled(terminal)
    terminal.keys("Up", "Up", "Down", "Down", "l")
    terminal.wait_screen(lambda screen: "beta-says-hello" in screen, "beta's logs")
    terminal.keys("C-c")
    terminal.wait_screen(lambda screen: screen.startswith("kepler top:"), "back in top")
    terminal.keys("C-c")
    screen = terminal.wait_screen(_exited, "top to end on Ctrl+C")
    assert _restored(screen), "the terminal is back in its normal mode"
    statuses = {name: row["status"] for name, row in kepler.ps().items()}
    assert statuses == {"busy": "running", "alpha": "running", "beta": "running"}, "Ctrl+C acted on nothing"


def test_all_shows_a_config_column(kepler, terminal):
    other = kepler.write("second/kepler.yaml", """
        services:
          gamma:
            command: ["sleep", "1000"]
    """)
    kepler.ctl("-f", other, "start", "-d", "--wait")
    terminal.run(_top(kepler, "--all"))
    screen = terminal.wait_screen(lambda screen: "gamma" in screen and "alpha" in screen, "both configs")
    assert screen.splitlines()[1].split()[:2] == ["CONFIG", "NAME"]
    assert any(line.split()[:2] == ["second", "gamma"] for line in screen.splitlines())
    terminal.keys("q")
    terminal.wait_screen(_exited, "top to quit")


def test_top_carries_on_after_a_daemon_reexec_and_ends_when_the_daemon_stops(kepler, terminal):
    terminal.run(_top(kepler))
    _settled(terminal)
    kepler.ctl("daemon", "reexec")
    kepler.ctl("stop", "beta")   # seen by the new image only: the screen shows it once top asks it
    terminal.wait_screen(lambda screen: "Stopped" in (_row(screen, "beta") or ""), "beta shown stopped")
    assert "TOP-EXITED" not in terminal.screen()
    kepler.stop_daemon()
    screen = terminal.wait_screen(lambda screen: "TOP-EXITED 2" in screen, "top to end with the daemon")
    assert "keplerctl: the daemon went away" in screen
