"""Point 1 of #24: a service that daemonizes itself leaves nothing behind (SPEC §12).

The escaped grandchild is re-parented to keplerd (a subreaper), so it is no longer a
descendant of the service; it carries the service's mark in its environment.
"""

import psutil

from tests.integration.harness import pids_with_marker, wait_for

DAEMONIZING = """
    services:
      escaper:
        command: ["bash", "-c", "setsid bash -c '(exec -a {marker}-stray sleep 500333) &';
                  exec -a {marker}-main sleep 500222"]
        restart: {restart}
"""


def _stray(kepler, marker):
    """Return the pid of this daemon's escaped grandchild (by its mark: not a leftover of another run)."""
    def mine():
        return [pid for pid in pids_with_marker(f"{marker}-stray") if _state_dir(pid) == kepler.state_dir]
    return wait_for(mine, message="the daemonized grandchild")[0]


def _state_dir(pid):
    try:
        return psutil.Process(pid).environ().get("KEPLER_STATE_DIR")
    except psutil.Error:
        return None


def _gone(pid):
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_stop_kills_a_grandchild_that_daemonized_itself(kepler):
    marker = "kt-escape-stop"
    kepler.config(DAEMONIZING.format(marker=marker, restart="no"))
    kepler.ctl("start", "-d")
    stray = _stray(kepler, marker)
    assert psutil.Process(stray).ppid() == kepler.daemon.pid, "re-parented to the subreaper"
    kepler.ctl("stop")
    wait_for(lambda: _gone(stray), message="the stray to be killed at stop")
    # This daemon's only: another suite on the machine may run the same test meanwhile.
    assert [pid for pid in pids_with_marker(marker) if _state_dir(pid) == kepler.state_dir] == []


def test_a_grandchild_dies_with_a_main_process_that_exits_on_its_own(kepler):
    marker = "kt-escape-exit"
    kepler.config(DAEMONIZING.format(marker=marker, restart="no"))
    kepler.ctl("start", "-d")
    stray = _stray(kepler, marker)
    main = wait_for(lambda: pids_with_marker(f"{marker}-main"), message="the main process")[0]
    psutil.Process(main).kill()
    kepler.wait_status("escaper", "killed")
    wait_for(lambda: _gone(stray), message="the stray to be killed when its service ended")


def test_daemon_stop_leaves_no_stray(kepler):
    marker = "kt-escape-daemon"
    kepler.config(DAEMONIZING.format(marker=marker, restart="no"))
    kepler.ctl("start", "-d")
    stray = _stray(kepler, marker)
    kepler.ctl("daemon", "stop")
    kepler.daemon.wait(30)
    wait_for(lambda: _gone(stray), message=f"the stray {stray} to be killed at daemon shutdown: {_describe(stray)}")


def test_boot_kills_the_strays_of_a_crashed_daemon(kepler):
    marker = "kt-escape-crash"
    kepler.config(DAEMONIZING.format(marker=marker, restart="no"))
    kepler.ctl("start", "-d")
    stray = _stray(kepler, marker)
    kepler.kill_daemon()
    assert not _gone(stray), "a crash leaves it to init"
    kepler.start_daemon()
    wait_for(lambda: _gone(stray), message="the old stray to be killed at boot")
    kepler.wait_status("escaper", "running")
    assert [pid for pid in pids_with_marker(f"{marker}-stray") if _state_dir(pid) == kepler.state_dir
            and pid != stray] in ([], [_stray(kepler, marker)]), "only the new run's grandchild"


def _describe(pid):
    try:
        found = psutil.Process(pid)
        return f"{found.status()}, parent {found.ppid()}"
    except psutil.Error as error:
        return str(error)
