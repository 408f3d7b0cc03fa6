"""Point 10 of #24: a SIGSTOPped service shows as paused, and a stop reaches it at once."""

import os
import signal

from tests.integration.harness import wait_for


def test_a_stopped_process_is_shown_paused_and_stopped_by_its_stop_signal(kepler):
    kepler.config("""
        services:
          frozen:
            command: ["sleep", "1000"]
            stop_grace_period: 20s
    """)
    kepler.ctl("start", "-d")
    pid = kepler.wait_status("frozen", "running")["pid"]
    os.kill(pid, signal.SIGSTOP)
    wait_for(lambda: kepler.ps()["frozen"].get("paused"), message="ps --json to say paused")
    assert "(paused)" in kepler.ctl("ps").stdout
    kepler.ctl("stop", "frozen")
    row = kepler.ps()["frozen"]
    assert row["status"] == "stopped"
    assert row["signal"] == "SIGTERM", "the stop signal, not the SIGKILL at the end of the grace period"


def test_a_paused_service_that_is_continued_is_no_longer_shown_paused(kepler):
    kepler.config("services:\n  frozen:\n    command: [sleep, '1000']\n")
    kepler.ctl("start", "-d")
    pid = kepler.wait_status("frozen", "running")["pid"]
    os.kill(pid, signal.SIGSTOP)
    wait_for(lambda: kepler.ps()["frozen"].get("paused"), message="ps --json to say paused")
    os.kill(pid, signal.SIGCONT)
    wait_for(lambda: not kepler.ps()["frozen"].get("paused"), message="ps --json to say running again")
    assert "(paused)" not in kepler.ctl("ps").stdout
    assert kepler.ps()["frozen"]["pid"] == pid
