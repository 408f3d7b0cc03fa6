"""Attached start and restart as a daily user drives them (issue #16): Ctrl+C never hangs or stops too much."""

import os
import signal

from tests.integration.harness import wait_for
from tests.integration.test_attached_and_logs import Attached

DB_AND_WEB = """
    services:
      db:
        command: ["sleep", "1000"]
      web:
        command: ["sh", "-c", "echo web up; exec sleep 1000"]
        depends_on: [db]
"""


def test_ctrl_c_of_an_attached_start_returns_when_its_dependency_already_ran(kepler):
    kepler.config(DB_AND_WEB)
    kepler.ctl("start", "-d", "--wait")
    kepler.ctl("stop", "web")
    attached = Attached(kepler, "start", "web")
    try:
        attached.wait_line(r"web \| web up")
        attached.process.send_signal(signal.SIGINT)
        assert attached.finish() == 130
    finally:
        attached.kill()
    assert not any("keep stopping" in line for line in attached.lines), attached.lines
    assert kepler.status("web") == "stopped"
    assert kepler.status("db") == "running", "db ran before this start: its Ctrl+C leaves it alone"


def test_ctrl_c_of_an_attached_start_stops_the_dependencies_it_started(kepler):
    kepler.config(DB_AND_WEB)
    attached = Attached(kepler, "start", "web")
    try:
        attached.wait_line(r"web \| web up")
        attached.process.send_signal(signal.SIGINT)
        assert attached.finish() == 130
    finally:
        attached.kill()
    assert kepler.status("web") == "stopped" and kepler.status("db") == "stopped"


def test_restart_shows_its_progress_and_returns_once_up(kepler):
    kepler.config("""
        services:
          web:
            command: ["sleep", "1000"]
          chatty:
            command: ["sh", "-c", "while :; do echo chatter; sleep 0.05; done"]
    """)
    kepler.ctl("start", "-d", "--wait")
    old_pid = kepler.ps()["web"]["pid"]
    result = kepler.ctl("restart", "web")
    web = kepler.ps()["web"]
    assert web["status"] == "running" and web["pid"] != old_pid, "restart returns once web is up again"
    lines = result.stdout.splitlines()
    assert not any("chatter" in line or "chatty" in line for line in lines), lines
    phases = [line for line in lines if line.startswith("[+] web:")]
    assert phases.index("[+] web: stopping") < phases.index("[+] web: starting"), phases
    assert phases[-1].startswith("[+] web: started (pid"), phases


def test_ctrl_c_during_a_restart_detaches_and_stops_nothing(kepler):
    gate = os.path.join(kepler.workdir, "go")
    open(gate, "w").close()
    kepler.config("""
        services:
          web:
            command: ["sleep", "1000"]
            hooks:
              pre_start: {run: "while [ ! -e go ]; do sleep 0.05; done"}
    """)
    kepler.ctl("start", "-d", "--wait")
    os.unlink(gate)
    attached = Attached(kepler, "restart", "web")
    try:
        attached.wait_line(r"\[\+\] web: starting")
        attached.process.send_signal(signal.SIGINT)
        assert attached.finish() == 130
    finally:
        attached.kill()
    open(gate, "w").close()
    wait_for(lambda: kepler.status("web") == "running", message="web to come back after the detached restart")
