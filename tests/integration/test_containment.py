"""Containment (SPEC §19): a cgroup per service instance, so nothing a service started survives it.

Through a real keplerd: escapes by setsid and double fork, fork loops, stops,
leftovers at boot, limits that need a controller, and the process-group fallback.
"""

import json
import os
import subprocess

import pytest

from tests.integration.harness import CGROUP_ROOTS, pids_with_marker, wait_for


def _cgroup_of(kepler, name="web"):
    inspected = kepler.inspect(name)["services"][name]
    if inspected["containment"] != "cgroup":
        pytest.skip(f"keplerd found no writable cgroup v2 here: {kepler.read_daemon_log()[-300:]}")
    return inspected["cgroup"]


def _root_controllers():
    for root in CGROUP_ROOTS:
        if os.path.isdir(root):
            return open(os.path.join(root, "cgroup.controllers")).read().split()
    return []


def _pids_in(cgroup):
    return [int(pid) for pid in open(os.path.join(cgroup, "cgroup.procs")).read().split()]


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def _escaping(marker):
    """A main process that leaves behind a double-forked, setsid'd child (a daemon)."""
    return json.dumps(["bash", "-c", f"setsid bash -c '(exec -a {marker}-escaped sleep 1000) &' ; "
                                     f"exec -a {marker}-main sleep 1000"])


def test_a_double_forked_setsid_child_lives_in_the_cgroup_and_dies_with_the_stop(kepler):
    marker = "kt-cgroup-escape"
    kepler.config(f"""
        services:
          web:
            command: {_escaping(marker)}
            stop_grace_period: 200ms
    """)
    kepler.ctl("start", "-d", "--wait")
    cgroup = _cgroup_of(kepler)
    escaped = wait_for(lambda: pids_with_marker(f"{marker}-escaped", kepler), message="the escaped child")
    main = kepler.ps()["web"]["pid"]
    assert os.getsid(escaped[0]) != os.getsid(main), "the child left the service's session"
    assert set(escaped + [main]) <= set(_pids_in(cgroup))
    assert os.stat(cgroup).st_mode & 0o777 == 0o755, "readable by its service, writable by root only"
    assert os.stat(cgroup).st_uid == 0
    kepler.ctl("stop", "web")
    assert pids_with_marker(marker, kepler) == []
    assert not os.path.exists(cgroup), "the cgroup of a stopped service is removed"


def test_what_an_exited_main_process_left_behind_is_killed_with_its_cgroup(kepler):
    marker = "kt-cgroup-left"
    kepler.config(f"""
        services:
          web:
            command: ["bash", "-c", "setsid bash -c '(exec -a {marker} sleep 1000) &'; sleep 0.5"]
    """)
    kepler.ctl("start", "-d")
    cgroup = _cgroup_of(kepler)
    kepler.wait_status("web", "exited")
    wait_for(lambda: not os.path.exists(cgroup), message="the cgroup to go")
    assert pids_with_marker(marker, kepler) == []


def test_a_fork_loop_still_forking_during_the_stop_leaves_nothing(kepler):
    marker = "kt-cgroup-forkloop"
    kepler.config(f"""
        services:
          web:
            command: ["bash", "-c", "while :; do setsid bash -c '(exec -a {marker} sleep 1000) &'; sleep 0.01; done"]
            stop_grace_period: 500ms
    """)
    kepler.ctl("start", "-d", "--wait")
    cgroup = _cgroup_of(kepler)
    wait_for(lambda: len(pids_with_marker(marker, kepler)) >= 10, message="the loop to fork")
    kepler.ctl("stop", "web")
    assert pids_with_marker(marker, kepler) == []
    assert not os.path.exists(cgroup)


def test_a_fork_loop_is_held_by_limits_pids_max_and_ends_with_the_stop(kepler):
    if "pids" not in _root_controllers():
        pytest.skip("the pids controller is not available to keplerd on this host (cgroup.controllers lacks it)")
    marker = "kt-cgroup-pidsmax"
    kepler.config(f"""
        services:
          web:
            command: ["bash", "-c", "while :; do (exec -a {marker} sleep 1000) & done"]
            limits:
              pids_max: 20
            stop_grace_period: 200ms
    """)
    kepler.ctl("start", "-d", "--wait")
    cgroup = _cgroup_of(kepler)
    wait_for(lambda: kepler.ps()["web"]["processes"] == 20, message="the loop to reach pids.max")
    assert open(os.path.join(cgroup, "pids.max")).read().strip() == "20"
    kepler.ctl("stop", "web")
    assert pids_with_marker(marker, kepler) == []


def test_memory_and_cpu_limits_are_written_to_the_controllers(kepler):
    missing = {"memory", "cpu"} - set(_root_controllers())
    if missing:
        pytest.skip(f"the {', '.join(sorted(missing))} controller(s) are not available to keplerd on this host")
    kepler.config("""
        services:
          web:
            command: ["sleep", "1000"]
            limits:
              memory_max: 64M
              cpus: 0.5
    """)
    kepler.ctl("start", "-d", "--wait")
    cgroup = _cgroup_of(kepler)
    assert open(os.path.join(cgroup, "memory.max")).read().strip() == str(64 << 20)
    assert open(os.path.join(cgroup, "cpu.max")).read().split() == ["50000", "100000"]


def test_a_limit_whose_controller_is_missing_fails_the_service_naming_it(kepler):
    if "memory" in _root_controllers():
        pytest.skip("the memory controller is available here: the failure path needs a host without it")
    kepler.config("""
        services:
          web:
            command: ["sleep", "1000"]
            limits:
              memory_max: 64M
    """)
    kepler.ctl("start", "-d")
    row = kepler.wait_status("web", "failed")
    assert "memory controller" in row["reason"]
    assert "limits.memory_max" in row["reason"]


def test_leftover_cgroups_are_killed_and_removed_at_boot(kepler):
    marker = "kt-cgroup-bootleft"
    kepler.config(f"""
        services:
          web:
            command: {_escaping(marker)}
    """)
    kepler.ctl("start", "-d", "--wait")
    cgroup = _cgroup_of(kepler)
    wait_for(lambda: pids_with_marker(f"{marker}-escaped", kepler), message="the escaped child")
    kepler.kill_daemon()
    state_path = os.path.join(kepler.inspect_path(), "state.json")
    state = json.load(open(state_path))
    state["services"]["web"]["desired"] = "down"  # should not run: its cgroup is a leftover
    json.dump(state, open(state_path, "w"))
    kepler.start_daemon()
    assert pids_with_marker(marker, kepler) == []
    assert not os.path.exists(cgroup)
    assert "killed leftover cgroup" in kepler.read_daemon_log()


def test_without_cgroups_the_daemon_says_process_group_and_limits_fail(kepler_stopped):
    kepler = kepler_stopped
    kepler.write("keplerd.conf", f"autostart_dir: {kepler.root}/conf.d\ncontainment: process-group\n",
                 directory=kepler.root)
    kepler.start_daemon()
    kepler.config("""
        services:
          web:
            command: ["sleep", "1000"]
          capped:
            command: ["sleep", "1000"]
            limits:
              pids_max: 10
    """)
    kepler.ctl("start", "-d")
    kepler.wait_status("web", "running")
    assert kepler.inspect("web")["services"]["web"]["containment"] == "process-group"
    assert kepler.inspect("web")["services"]["web"]["cgroup"] is None
    assert "containment: process-group" in kepler.read_daemon_log()
    row = kepler.wait_status("capped", "failed")
    assert "limits.pids_max needs the cgroup pids controller" in row["reason"]


def test_after_a_daemon_reexec_the_stop_still_kills_the_whole_cgroup(kepler):
    marker = "kt-cgroup-reexec"
    kepler.config(f"""
        services:
          web:
            command: {_escaping(marker)}
            stop_grace_period: 200ms
    """)
    kepler.ctl("start", "-d", "--wait")
    cgroup = _cgroup_of(kepler)
    wait_for(lambda: pids_with_marker(f"{marker}-escaped", kepler), message="the escaped child")
    before = kepler.ps()["web"]["pid"]
    kepler.ctl("daemon", "reexec")
    assert kepler.ps()["web"]["pid"] == before, "carried over, not restarted"
    assert kepler.inspect("web")["services"]["web"]["cgroup"] == cgroup
    kepler.ctl("stop", "web")
    assert pids_with_marker(marker, kepler) == []
    assert not os.path.exists(cgroup)


def test_a_renamed_instance_takes_its_processes_into_a_cgroup_of_its_new_name(kepler):
    marker = "kt-cgroup-rename"
    kepler.config(f"""
        services:
          web:
            command: {_escaping(marker)}
            stop_grace_period: 200ms
    """)
    kepler.ctl("start", "-d", "--wait")
    old = _cgroup_of(kepler)
    escaped = wait_for(lambda: pids_with_marker(f"{marker}-escaped", kepler), message="the escaped child")
    main = kepler.ps()["web"]["pid"]
    kepler.ctl("scale", "web=2")  # cgroup v2 cannot rename a directory: the processes move
    new = kepler.inspect("web.1")["services"]["web.1"]["cgroup"]
    assert kepler.ps()["web.1"]["pid"] == main and new == os.path.join(os.path.dirname(old), "web.1")
    assert set(escaped + [main]) <= set(_pids_in(new)), "the whole instance moved, its escaped child too"
    assert not os.path.exists(old)
    assert "frozen 0" in open(os.path.join(new, "cgroup.events")).read()
    instance = _pids_in(new)
    kepler.ctl("stop", "web.1")
    assert not [pid for pid in instance if _alive(pid)] and not os.path.exists(new)


def test_an_instance_whose_cgroup_cannot_take_its_new_name_stays_contained_in_the_old_one(kepler):
    marker = "kt-cgroup-norename"
    kepler.config(f"""
        services:
          web:
            command: {_escaping(marker)}
            stop_grace_period: 200ms
    """)
    kepler.ctl("start", "-d", "--wait")
    old = _cgroup_of(kepler)
    wait_for(lambda: pids_with_marker(f"{marker}-escaped", kepler), message="the escaped child")
    main = kepler.ps()["web"]["pid"]
    # Something already lives in a cgroup named web.1: the instance's processes cannot go there.
    squatter_cgroup = os.path.join(os.path.dirname(old), "web.1")
    os.mkdir(squatter_cgroup)
    squatter = subprocess.Popen(["sleep", "1000"])
    try:
        with open(os.path.join(squatter_cgroup, "cgroup.procs"), "w") as procs:
            procs.write(str(squatter.pid))
        kepler.ctl("scale", "web=2")
        assert kepler.ps()["web.1"]["pid"] == main
        assert kepler.inspect("web.1")["services"]["web.1"]["cgroup"] == old, "inspect says where it is"
        assert main in _pids_in(old) and "frozen 0" in open(os.path.join(old, "cgroup.events")).read()
        assert "cannot rename cgroup" in kepler.read_daemon_log()
        instance = _pids_in(old)
        kepler.ctl("stop", "web.1")
        assert not [pid for pid in instance if _alive(pid)] and not os.path.exists(old), "the stop ends all of it"
        assert squatter.poll() is None, "and nothing else"
    finally:
        squatter.kill()
        squatter.wait()
