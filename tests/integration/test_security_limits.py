"""Resource limits of services, their hooks and probes (SPEC §12)."""

import os

import pytest

from tests.integration.accounts import shared_dir
from tests.integration.harness import wait_for
from tests.integration.test_dependencies import config

CAP_SYS_RESOURCE = 24


@pytest.fixture
def kepler(accounts, kepler):
    """The daemon, started after the accounts exist and stopped before they are deleted."""
    return kepler


def read_when_written(path):
    wait_for(lambda: os.path.exists(path) and os.path.getsize(path) > 0, message=f"{path} to be written")
    with open(path) as file:
        return file.read().strip()


def open_fds(pid):
    return sorted(int(fd) for fd in os.listdir(f"/proc/{pid}/fd"))


def hard_limit(pid, label):
    with open(f"/proc/{pid}/limits") as limits:
        for line in limits:
            if line.startswith(label):
                return int(line[len(label):].split()[1])
    raise AssertionError(f"no {label} in /proc/{pid}/limits")


def test_max_fds_applies_to_the_service_its_hooks_and_its_probe(kepler):
    out = shared_dir(kepler.workdir)
    config(kepler, {"web": {
        "command": ["sh", "-c", f"echo $(ulimit -Sn) $(ulimit -Hn) > {out}/service; exec sleep 1000"],
        "limits": {"max_fds": 64},
        "hooks": {"pre_start": {"run": f"ulimit -n > {out}/hook"}},
        "healthcheck": {"test": f"ulimit -n > {out}/probe", "interval": "1s"},
    }})
    kepler.ctl("start", "-d")
    kepler.wait_status("web", "healthy")
    assert read_when_written(f"{out}/service") == "64 64"
    assert read_when_written(f"{out}/hook") == read_when_written(f"{out}/probe") == "64"


@pytest.mark.parametrize("limits", [{}, {"max_fds": 64}], ids=["fast-path", "with-limits"])
def test_no_daemon_file_descriptor_leaks_into_a_service(kepler, accounts, limits):
    config(kepler, {"web": {"command": ["sleep", "1000"], "user": accounts.user("fds"), "limits": limits}})
    kepler.ctl("start", "-d")
    pid = kepler.wait_status("web", "running")["pid"]
    assert open_fds(pid) == [0, 1, 2]


def has_capability(pid, bit):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> bit & 1)
    return False


def test_limits_may_exceed_the_daemons_own_hard_limit_for_an_unprivileged_user(kepler, accounts):
    # Only root may raise a hard limit: the child must set limits before dropping root.
    if not has_capability(kepler.daemon.pid, CAP_SYS_RESOURCE):
        pytest.skip("the daemon runs without CAP_SYS_RESOURCE (a container?): no one may raise a hard limit")
    wanted = hard_limit(kepler.daemon.pid, "Max open files") + 100
    with open("/proc/sys/fs/nr_open") as nr_open:
        if wanted > int(nr_open.read()):
            pytest.skip("the daemon's open files limit is already the system's maximum")
    out = shared_dir(kepler.workdir)
    config(kepler, {"web": {"command": ["sh", "-c", f"ulimit -n > {out}/fds; id -u > {out}/uid; exec sleep 1000"],
                            "user": accounts.user("big"), "limits": {"max_fds": wanted}}})
    kepler.ctl("start", "-d")
    kepler.wait_status("web", "running")
    assert int(read_when_written(f"{out}/fds")) == wanted
    assert read_when_written(f"{out}/uid") != "0"


def test_a_limit_the_kernel_refuses_fails_the_service_with_the_reason(kepler):
    with open("/proc/sys/fs/nr_open") as nr_open:
        too_many = int(nr_open.read()) + 1
    config(kepler, {"web": {"command": ["sleep", "1000"], "limits": {"max_fds": too_many}}})
    kepler.ctl("start", "-d")
    kepler.wait_status("web", "failed")
    reason = kepler.inspect("web")["services"]["web"]["state"]["reason"]
    assert reason.startswith(f"cannot apply limits.max_fds ({too_many}): ")
    assert kepler.ctl("daemon", "status").returncode == 0


def test_memory_limit_makes_a_large_allocation_fail(kepler, accounts):
    # dd allocates its block size at once: 256 MiB cannot fit under a 64 MiB address space.
    allocate = ["sh", "-c", "ulimit -v; exec dd if=/dev/zero of=/dev/null bs=256M count=1"]
    config(kepler, {
        "capped": {"command": allocate, "user": accounts.user("mem"), "limits": {"memory": "${CAP}"},
                   "environment": ["CAP=64M"]},
        "free": {"command": allocate},
    })
    kepler.ctl("start", "-d")
    assert kepler.wait_status("capped", "exited")["exit_code"] != 0
    assert kepler.wait_status("free", "exited")["exit_code"] == 0
    lines = kepler.logs("capped")
    assert "capped | 65536" in lines, lines  # ulimit -v counts KiB
    assert any("memory exhausted" in line for line in lines), lines


def test_cpu_time_kills_a_busy_loop(kepler, accounts):
    config(kepler, {"spin": {"command": ["sh", "-c", "while :; do :; done"], "user": accounts.user("cpu"),
                             "limits": {"cpu_time": "1s"}}})
    kepler.ctl("start", "-d")
    row = kepler.wait_status("spin", "killed", timeout=30)
    assert row["signal"] in ("SIGXCPU", "SIGKILL")
    table = kepler.ctl("ps").stdout
    assert f"Killed ({row['signal']})" in table, table
