"""Accounting per service instance (SPEC §19): ``ps --json`` fields and the ``ps --stats`` columns.

Both ways of counting are exercised: from the cgroup, and summed over the
process tree when the daemon runs with ``containment: process-group``.
"""

import pytest

from tests.integration.harness import wait_for

CONFIG = """
    services:
      busy:
        command: ["bash", "-c", "sleep 1000 & sleep 1000 & while :; do :; done"]
      idle:
        command: ["sleep", "1000"]
      never:
        command: ["sleep", "1000"]
"""


@pytest.fixture(params=["auto", "process-group"])
def counting(request, kepler_stopped):
    kepler = kepler_stopped
    kepler.write("keplerd.conf", f"autostart_dir: {kepler.root}/conf.d\ncontainment: {request.param}\n",
                 directory=kepler.root)
    kepler.start_daemon()
    return kepler


def test_ps_json_carries_cpu_memory_processes_restarts_and_start(counting):
    kepler = counting
    kepler.config(CONFIG)
    kepler.ctl("start", "-d", "--wait", "busy", "idle")
    busy = wait_for(lambda: (row := kepler.ps()["busy"])["processes"] == 3 and row["cpu_seconds"] > 0.2 and row,
                    message="the busy service to use CPU")
    assert busy["memory_bytes"] > 100_000
    assert busy["cpu_percent"] > 0
    assert busy["restarts"] == 0 and busy["started_at"] > 0
    idle = kepler.ps()["idle"]
    assert idle["processes"] == 1 and idle["cpu_percent"] < 50
    never = kepler.ps()["never"]
    assert (never["processes"], never["memory_bytes"], never["cpu_seconds"], never["cpu_percent"]) == (0, 0, 0.0, 0.0)
    kepler.ctl("stop", "busy")
    assert kepler.ps()["busy"]["processes"] == 0


def test_ps_stats_shows_the_columns(kepler):
    kepler.config(CONFIG)
    kepler.ctl("start", "-d", "--wait", "idle")
    lines = kepler.ctl("ps", "--stats").stdout.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "PID", "CPU%", "MEM", "PROCS", "RESTARTS", "UPTIME"]
    idle = next(line for line in lines if line.startswith("idle"))
    assert idle.split()[-3:-1] == ["1", "0"], "one process, no restart"
    never = next(line for line in lines if line.startswith("never"))
    assert never.split()[-5:] == ["0.0", "0B", "0", "0", "-"]
