"""Point 1 of #24: a service that daemonizes itself leaves nothing behind (SPEC §12).

The escaped grandchild is re-parented to keplerd (a subreaper), so it is no longer a
descendant of the service; it carries the service's mark in its environment.
"""

import os

import psutil

from tests.integration.harness import pids_with_marker, wait_for

DAEMONIZING = """
    services:
      escaper:
        command: ["bash", "-c", "setsid bash -c '(exec -a {marker}-stray sleep 500333) &';
                  exec -a {marker}-main sleep 500222"]
        restart: {restart}
        stop_grace_period: 200ms  # the setsid'd stray never sees the SIGTERM: no 10 s wait for it
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


# A grandchild that clears its environment (env -i) and leaves its process group, from a subshell that
# exits at once: re-parented to keplerd, it carries no mark. {escape} is how far it leaves.
HIDING = """
    services:
      hider:
        command: ["bash", "-c", "(python3 -c \\"import os; {escape};
                  os.execve('/bin/sleep', ['{marker}-stray', '500444'], {{}})\\" &);
                  exec -a {marker}-main sleep 500555"]
        restart: "no"
"""
LEAVES_GROUP = "os.setpgid(0, 0)"
LEAVES_SESSION = "os.setsid()"


def _without_cgroups(kepler):
    """Start *kepler*'s daemon with process groups only: the strays fallback is all there is."""
    kepler.write("keplerd.conf", f"autostart_dir: {kepler.root}/conf.d\ncontainment: process-group\n",
                 directory=kepler.root)
    kepler.start_daemon()


def _hidden_stray(kepler, marker):
    """Return the pid of the unmarked grandchild, once keplerd has adopted it (it is killed at cleanup)."""
    def adopted():
        for pid in pids_with_marker(f"{marker}-stray"):
            try:
                if psutil.Process(pid).ppid() == kepler.daemon.pid:
                    return pid
            except psutil.Error:
                continue
        return None
    pid = wait_for(adopted, message="the hidden grandchild to be adopted by keplerd")
    kepler._remember(pid)
    stray = psutil.Process(pid)
    assert not any(key.startswith("KEPLER_") for key in stray.environ()), "no mark left"
    main = kepler.ps()["hider"]["pid"]
    assert os.getpgid(pid) != os.getpgid(main), "out of the service's process group"
    return pid


def test_stop_kills_a_grandchild_that_cleared_its_environment_and_left_its_group(kepler_stopped):
    kepler, marker = kepler_stopped, "kt-hide-stop"
    _without_cgroups(kepler)
    kepler.config(HIDING.format(marker=marker, escape=LEAVES_GROUP))
    kepler.ctl("start", "-d")
    stray = _hidden_stray(kepler, marker)
    kepler.ctl("stop")
    wait_for(lambda: _gone(stray), message=f"the hidden stray to be killed at stop: {_describe(stray)}")
    assert kepler.read_daemon_log().count(f"killing stray process {stray} ") == 1, "once: its zombie is not a stray"


def test_a_hidden_grandchild_dies_with_a_main_process_that_exits(kepler_stopped):
    kepler, marker = kepler_stopped, "kt-hide-exit"
    _without_cgroups(kepler)
    kepler.config(HIDING.format(marker=marker, escape=LEAVES_GROUP))
    kepler.ctl("start", "-d")
    stray = _hidden_stray(kepler, marker)
    psutil.Process(kepler.ps()["hider"]["pid"]).kill()
    kepler.wait_status("hider", "killed")
    wait_for(lambda: _gone(stray), message=f"the hidden stray to be killed when its service ended: {_describe(stray)}")


def test_daemon_stop_kills_a_grandchild_that_also_left_its_session(kepler_stopped):
    kepler, marker = kepler_stopped, "kt-hide-daemon"
    _without_cgroups(kepler)
    kepler.config(HIDING.format(marker=marker, escape=LEAVES_SESSION))
    kepler.ctl("start", "-d")
    stray = _hidden_stray(kepler, marker)
    assert os.getsid(stray) == stray, "in a session of its own"
    kepler.ctl("daemon", "stop")
    kepler.daemon.wait(30)
    wait_for(lambda: _gone(stray), message=f"the stray {stray} to be killed at daemon shutdown: {_describe(stray)}")
