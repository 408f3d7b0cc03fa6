"""keplerctl apply through a real daemon (SPEC §16), and ps saying the config changed (SPEC §13)."""

import json
import os
import subprocess

import psutil

from tests.integration import test_security_owners as owners
from tests.integration.harness import KEPLERCTL, alive, pids_with_marker, wait_for
from tests.integration.test_dependencies import config
from tests.integration.test_hooks import record
from tests.integration.test_security_owners import members as members  # the fixture, for the owner test
from tests.integration.test_security_owners import write_config


def hooks(kepler, owner, names):
    """Hooks that append ``<owner>.<hook>`` to the work dir's ``record`` file."""
    path = os.path.join(kepler.workdir, "record")
    return {name: {"run": f"echo {owner}.{name} >> {path}"} for name in names}


def sleeper(**extra):
    return {"command": ["sleep", "1000"], **extra}


def environ(pid):
    """Return the environment of process *pid*, as the kernel shows it."""
    with open(f"/proc/{pid}/environ", "rb") as file:
        pairs = [item.split(b"=", 1) for item in file.read().split(b"\0") if b"=" in item]
    return {key.decode(): value.decode() for key, value in pairs}


def on_disk(kepler):
    """Return the config's snapshot.json as the next daemon would load it."""
    with open(os.path.join(kepler.inspect_path(), "snapshot.json")) as file:
        return json.load(file)


def pids(kepler):
    return {name: row["pid"] for name, row in kepler.ps().items()}


def up(kepler, *names):
    for name in names:
        kepler.wait_status(name, "running")


def test_apply_restarts_only_what_changed_and_runs_the_right_hooks(kepler):
    stages = ["pre_start", "post_start", "pre_stop", "post_stop", "pre_restart", "post_restart", "on_init"]
    config(kepler, {
        "db": sleeper(),
        "web": sleeper(environment=["LOG_LEVEL=info", "HOOKS=old"], depends_on=["db"],
                       hooks=hooks(kepler, "web-old", stages)),
        "api": sleeper(depends_on={"web": {"restart": True}}),
        "old": {"command": ["sh", "-c", "echo hello; exec sleep 1000"],
                "hooks": hooks(kepler, "old", ["pre_stop", "post_stop"])},
    })
    kepler.ctl("start", "-d", "--wait")
    up(kepler, "db", "web", "api", "old")
    wait_for(lambda: "old | hello" in kepler.logs("old"), message="old's output in its log")
    before = pids(kepler)
    os.unlink(os.path.join(kepler.workdir, "record"))
    config(kepler, {
        "db": sleeper(),
        "web": sleeper(environment=["LOG_LEVEL=debug", "HOOKS=old"], depends_on=["db"],
                       hooks=hooks(kepler, "web-new", stages)),
        "api": sleeper(depends_on={"web": {"restart": True}}),
        "cache": sleeper(depends_on=["db"], hooks=hooks(kepler, "cache", ["on_init", "pre_start"])),
    })
    result = kepler.ctl("apply")
    lines = result.stdout.splitlines()
    assert "db  unchanged" in lines
    assert "cache  added -> start" in lines
    assert "old  removed -> stop" in lines
    assert "api  unchanged -> restart (depends on web)" in lines
    web_line = next(line for line in lines if line.startswith("web  "))
    assert web_line.startswith("web  changed: environment.LOG_LEVEL, hooks.")
    assert web_line.endswith(" -> restart")
    after = pids(kepler)
    assert after["db"] == before["db"]
    assert after["web"] != before["web"] and after["api"] != before["api"]
    assert "old" not in after and after["cache"]
    assert environ(after["web"])["LOG_LEVEL"] == "debug"
    done = record(kepler)
    # The stop half runs the old definition's hooks, the start half the new one's; no on_init again.
    assert [hook for hook in done if hook.startswith("web-")] == [
        "web-old.pre_restart", "web-old.pre_stop", "web-old.post_stop",
        "web-new.pre_start", "web-new.post_start", "web-new.post_restart"]
    assert "old.pre_stop" in done and "old.post_stop" in done
    assert done.index("cache.on_init") < done.index("cache.pre_start")
    logs_dir = os.path.join(kepler.inspect_path(), "logs")
    assert not [name for name in os.listdir(logs_dir) if name.startswith("old.")]
    assert kepler.inspect("web")["services"]["web"]["config"]["env"]["LOG_LEVEL"] == "debug"


def test_a_service_stopped_by_the_user_stays_stopped_with_its_new_definition(kepler):
    config(kepler, {"web": sleeper(), "worker": sleeper(environment=["N=1"])})
    kepler.ctl("start", "-d", "--wait")
    kepler.ctl("stop", "worker")
    web = pids(kepler)["web"]
    config(kepler, {"web": sleeper(), "worker": sleeper(environment=["N=2"])})
    assert "worker  changed (stopped): stored" in kepler.ctl("apply").stdout.splitlines()
    assert kepler.status("worker") == "stopped" and pids(kepler)["web"] == web
    kepler.ctl("start", "-d", "--wait", "worker")
    assert environ(kepler.wait_status("worker", "running")["pid"])["N"] == "2"


def test_dry_run_and_json_print_the_plan_and_change_nothing(kepler):
    config(kepler, {"web": sleeper(environment=["A=1"]), "db": sleeper()})
    kepler.ctl("start", "-d", "--wait")
    before = pids(kepler)
    config(kepler, {"web": sleeper(environment=["A=2"]), "db": sleeper()})
    dry = kepler.ctl("apply", "--dry-run").stdout.splitlines()
    assert dry == ["web  changed: environment.A -> restart", "db  unchanged"]
    data = json.loads(kepler.ctl("apply", "--dry-run", "--json").stdout)
    assert data["dry_run"] is True
    assert data["plan"][0] == {"service": "web", "change": "changed", "fields": ["environment.A"],
                               "action": "restart", "because": []}
    assert pids(kepler) == before
    assert kepler.inspect("web")["services"]["web"]["config"]["env"] == {"A": "1"}
    assert on_disk(kepler)["services"]["web"]["env"] == {"A": "1"}
    assert json.loads(kepler.ctl("ps", "--json").stdout)[0]["config_changed"] is True


def test_a_bake_error_changes_nothing_and_says_where(kepler):
    config(kepler, {"web": sleeper()})
    kepler.ctl("start", "-d", "--wait")
    before = pids(kepler)
    kepler.config('{"services": {"web": {"command": ["sleep", "1000"], "restart": "sometimes"}}}')
    result = kepler.ctl("apply", check=False)
    assert result.returncode == 1
    assert "kepler.yaml: services.web.restart" in result.stderr
    assert pids(kepler) == before
    assert on_disk(kepler)["services"]["web"]["restart"]["policy"] == "no"


def test_naming_services_limits_the_apply_to_them(kepler):
    config(kepler, {"a": sleeper(environment=["V=1"]), "b": sleeper(environment=["V=1"])})
    kepler.ctl("start", "-d", "--wait")
    before = pids(kepler)
    config(kepler, {"a": sleeper(environment=["V=2"]), "b": sleeper(environment=["V=2"])})
    output = kepler.ctl("apply", "a").stdout.splitlines()
    # The plan first, then the progress of what it restarts (as `restart` shows it).
    assert output[0] == "a  changed: environment.V -> restart"
    assert [line for line in output if not line.startswith(("[+] a: ", "a  running"))] == output[:1]
    assert any(line.startswith("[+] a: started (pid ") for line in output)
    after = pids(kepler)
    assert after["b"] == before["b"] and after["a"] != before["a"]
    assert environ(after["a"])["V"] == "2" and environ(after["b"])["V"] == "1"
    # b's part of the file is not applied yet: ps still says so.
    assert "changed since it was baked" in kepler.ctl("ps").stderr


def test_ps_says_when_the_config_an_env_file_or_a_lua_file_changed(kepler):
    kepler.write("app.env", "A=1\n")
    kepler.write("lib/ports.lua", "return {base = 8000}\n")
    kepler.write("name.lua", "return 'sleep'\n")
    kepler.config("""
        lua: |
          ports = require("lib.ports")
        services:
          web:
            command: [!lua_file name.lua, "1000"]
            env_file: app.env
            environment:
              PORT: !lua return tostring(ports.base)
    """)
    kepler.ctl("start", "-d", "--wait")

    def changed():
        result = kepler.ctl("ps")
        flagged = json.loads(kepler.ctl("ps", "--json").stdout)[0]["config_changed"]
        assert flagged == ("kepler.yaml changed since it was baked: keplerctl apply" in result.stderr)
        return flagged

    assert not changed()
    for name, text in (("app.env", "A=2\n"), ("lib/ports.lua", "return {base = 9000}\n"),
                       ("name.lua", "return 'sleep' -- same\n")):
        path = os.path.join(kepler.workdir, name)
        original = open(path).read()
        os.utime(path, (0, 0))  # a touch alone is no change
        assert not changed(), name
        kepler.write(name, text)
        assert changed(), name
        kepler.write(name, original)
        assert not changed(), name
    kepler.write("app.env", "A=2\n")
    kepler.ctl("apply")
    assert not changed()
    assert environ(kepler.wait_status("web", "running")["pid"])["A"] == "2"


def test_a_daemon_killed_during_an_apply_boots_with_one_definition_per_service(kepler):
    marker = os.path.join(kepler.workdir, "stopping")
    old = {
        "a": sleeper(environment=["V=old", "W=old"]),
        "b": sleeper(environment=["V=old", "W=old"],
                     hooks={"pre_stop": {"run": f"touch {marker}; exec sleep 1000"}}),
        "c": sleeper(environment=["V=old"]),
    }
    config(kepler, old)
    kepler.ctl("start", "-d", "--wait")
    before = {name: psutil.Process(pid) for name, pid in pids(kepler).items()}
    new = {
        "a": sleeper(environment=["V=new", "W=new"]),
        "b": sleeper(environment=["V=new", "W=new"], depends_on=["a"]),
        "d": sleeper(environment=["V=new"]),
    }
    config(kepler, new)
    # The apply hangs in b's old pre_stop: the daemon dies in the middle of it.
    applying = subprocess.Popen([KEPLERCTL, "apply", "-d"], cwd=kepler.workdir, env=kepler.env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: os.path.exists(marker), message="b's old pre_stop to run")
        kepler.kill_daemon()
        applying.wait(30)
    finally:
        applying.kill()
        applying.wait()
    kepler.start_daemon()
    for name in ("a", "b", "d"):
        row = kepler.wait_status(name, "running")
        env = environ(row["pid"])
        stored = kepler.inspect(name)["services"][name]["config"]["env"]
        assert stored == {key: env[key] for key in stored}, name
        assert set(stored.values()) in ({"old"}, {"new"}), name
    assert "c" not in kepler.ps()
    # No process of the old definitions survived the crash (a leftover is killed at boot).
    assert not [name for name, process in before.items() if alive(process)]


def test_apply_fails_naming_a_changed_service_that_cannot_start(kepler):
    config(kepler, {"web": sleeper(), "db": sleeper()})
    kepler.ctl("start", "-d", "--wait")
    db = pids(kepler)["db"]
    # With a healthcheck, the wait catches a crash before the service is healthy (SPEC §13).
    config(kepler, {"web": {"command": ["sh", "-c", "echo broken; exit 3"],
                            "healthcheck": {"test": ["true"], "interval": "1s", "start_period": "1s"}},
                    "db": sleeper()})
    result = kepler.ctl("apply", check=False)
    assert result.returncode == 1
    assert "web  changed: command, healthcheck -> restart" in result.stdout
    assert "web exited with code 3 before it was healthy" in result.stderr
    assert kepler.status("web") == "exited" and pids(kepler)["db"] == db


def test_apply_needs_a_loaded_config(kepler):
    config(kepler, {"web": sleeper()})
    result = kepler.ctl("apply", check=False)
    assert result.returncode == 1
    assert "config not loaded" in result.stderr


def test_apply_goes_through_the_owner_checks(members):  # noqa: F811 (the fixture imported above)
    alice = members.people["alice"]
    services = {"a": sleeper(environment=["V=1"]), "b": sleeper(environment=["V=1"])}
    path = write_config(members, "alice", services)
    owners.ctl(members, "alice", "start", "-d", "--wait", check=True)
    services = {"a": sleeper(environment=["V=2"]), "b": sleeper(environment=["V=2"])}
    write_config(members, "alice", services)
    refused = owners.ctl(members, "bob", "-f", path, "apply")
    assert refused.returncode == 1 and f"permission denied: {path} belongs to {alice}" in refused.stderr
    named = owners.ctl(members, "root", "apply", "a")
    assert named.returncode == 1 and f"only {alice} (who owns this config) may apply some" in named.stderr
    owners.ctl(members, "alice", "apply", "a", check=True)
    row = owners.wait_running(members, "alice", "a")
    assert environ(row["pid"])["V"] == "2"
    assert psutil.Process(row["pid"]).uids().real == owners.uid(alice)


def test_a_changed_replicated_service_rolls_one_instance_at_a_time_and_replicas_alone_scale(kepler):
    config(kepler, {"web": sleeper(replicas=2, environment=["MODE=old"]), "db": sleeper()})
    kepler.ctl("start", "-d", "--wait")
    before = pids(kepler)
    config(kepler, {"web": sleeper(replicas=2, environment=["MODE=new"]), "db": sleeper()})
    kepler.ctl("apply")
    after = pids(kepler)
    assert after["db"] == before["db"], "an unchanged service keeps its process"
    for name in ("web.1", "web.2"):
        assert after[name] != before[name] and environ(after[name])["MODE"] == "new"
        assert environ(after[name])["KEPLER_REPLICA"] == name[-1]
    services = kepler.inspect("web")["services"]
    assert [services[name]["state"]["restart_reason"] for name in ("web.1", "web.2")] == ["apply", "apply"]
    # Only the count changed: the new instance starts, the others are not touched.
    config(kepler, {"web": sleeper(replicas=3, environment=["MODE=new"]), "db": sleeper()})
    kepler.ctl("apply")
    up(kepler, "web.3")
    scaled = pids(kepler)
    assert {name: scaled[name] for name in after} == after


def test_replicated_services_are_added_and_removed_instance_by_instance(kepler):
    config(kepler, {"web": sleeper(), "old": sleeper(replicas=2)})
    kepler.ctl("start", "-d", "--wait")
    gone = [psutil.Process(pid) for name, pid in pids(kepler).items() if name.startswith("old.")]
    config(kepler, {"web": sleeper(), "workers": sleeper(replicas=2)})
    kepler.ctl("apply")
    up(kepler, "workers.1", "workers.2")
    assert sorted(kepler.ps()) == ["web", "workers.1", "workers.2"]
    assert not any(alive(process) for process in gone)


def counted(kepler, count, marker="kt-renamed"):
    """A service of *count* instances whose hooks record ``<instance number>.<hook>`` (empty number: plain)."""
    path = os.path.join(kepler.workdir, "record")
    return {"command": ["bash", "-c", f'echo "started as [$KEPLER_REPLICA]"; exec -a {marker} sleep 1000'],
            "replicas": count,
            "hooks": {name: {"run": f"echo $KEPLER_REPLICA.{name} >> {path}"}
                      for name in ("pre_start", "post_start", "pre_stop", "post_stop", "pre_restart")}}


def cgroup_line(pid):
    with open(f"/proc/{pid}/cgroup") as file:
        return next(line.strip() for line in file if line.startswith("0::"))


def test_apply_between_one_instance_and_more_renames_it_and_keeps_its_process(kepler):
    config(kepler, {"web": counted(kepler, 1)})
    kepler.ctl("start", "-d", "--wait")
    pid = pids(kepler)["web"]
    wait_for(lambda: any("started as []" in line for line in kepler.logs("web")), message="web's output")
    wait_for(lambda: ".post_start" in record(kepler), message="web's post_start")
    os.unlink(os.path.join(kepler.workdir, "record"))
    config(kepler, {"web": counted(kepler, 3)})
    planned = kepler.ctl("apply", "--dry-run")
    assert planned.stdout.splitlines() == ["web  changed: replicas -> scale 1 → 3"]
    assert pids(kepler) == {"web": pid}
    kepler.ctl("apply")
    up(kepler, "web.1", "web.2", "web.3")
    rows = kepler.ps()
    assert sorted(rows) == ["web.1", "web.2", "web.3"] and rows["web.1"]["pid"] == pid
    assert any("started as []" in line for line in kepler.logs("web.1")), "web.1 keeps web's logs"
    started = ["2.post_start", "2.pre_start", "3.post_start", "3.pre_start"]
    wait_for(lambda: sorted(record(kepler)) == started, message=f"only {started} in {record(kepler)}")
    inspected = kepler.inspect("web.1")["services"]["web.1"]
    if inspected["containment"] == "cgroup":
        assert inspected["cgroup"].endswith("/web.1") and cgroup_line(pid).endswith("/web.1")
        assert pid in [int(line) for line in open(os.path.join(inspected["cgroup"], "cgroup.procs"))]
    others = [psutil.Process(rows[name]["pid"]) for name in ("web.2", "web.3")]
    os.unlink(os.path.join(kepler.workdir, "record"))
    config(kepler, {"web": counted(kepler, 1)})
    kepler.ctl("apply")
    rows = kepler.ps()
    assert sorted(rows) == ["web"] and rows["web"]["pid"] == pid
    assert not any(alive(process) for process in others)
    stopped = ["2.post_stop", "2.pre_stop", "3.post_stop", "3.pre_stop"]
    wait_for(lambda: sorted(record(kepler)) == stopped, message=f"only {stopped} in {record(kepler)}")
    assert any("started as []" in line for line in kepler.logs("web")), "and back: web keeps the history"
    if inspected["containment"] == "cgroup":
        assert cgroup_line(pid).endswith("/web")


def test_a_daemon_killed_in_an_apply_from_one_instance_to_more_boots_without_a_duplicate(kepler):
    marker = os.path.join(kepler.workdir, "blocked")

    def web(count):
        # web.2's first pre_start hangs: the daemon dies after web became web.1, before web.2 started.
        hang = f'if [ "$KEPLER_REPLICA" = 2 ] && [ ! -e {marker} ]; then touch {marker}; exec sleep 1000; fi'
        return {**counted(kepler, count, marker="kt-renamed-crash"), "hooks": {"pre_start": {"run": hang}}}

    config(kepler, {"web": web(1)})
    kepler.ctl("start", "-d", "--wait")
    old = psutil.Process(pids(kepler)["web"])
    config(kepler, {"web": web(3)})
    applying = subprocess.Popen([KEPLERCTL, "apply", "-d"], cwd=kepler.workdir, env=kepler.env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: os.path.exists(marker), message="web.2's pre_start to hang")
        kepler.kill_daemon()
        applying.wait(30)
    finally:
        applying.kill()
        applying.wait()
    kepler.start_daemon()
    up(kepler, "web.1", "web.2", "web.3")
    assert sorted(kepler.ps()) == ["web.1", "web.2", "web.3"]
    assert not alive(old), "the renamed instance's old process was found by its pid and start time"
    assert len(pids_with_marker("kt-renamed-crash")) == 3, "one process per instance"


def test_a_replicated_restart_true_dependent_rolls_after_its_dependency_restarted(kepler):
    config(kepler, {"db": sleeper(environment=["V=1"]),
                    "web": sleeper(replicas=2, depends_on={"db": {"restart": True}})})
    kepler.ctl("start", "-d", "--wait")
    before = pids(kepler)
    config(kepler, {"db": sleeper(environment=["V=2"]),
                    "web": sleeper(replicas=2, depends_on={"db": {"restart": True}})})
    result = kepler.ctl("apply")
    assert "web  unchanged -> restart (depends on db)" in result.stdout
    after = pids(kepler)
    assert all(after[name] != before[name] for name in ("db", "web.1", "web.2"))
    services = kepler.inspect("web")["services"]
    assert [services[name]["state"]["restart_reason"] for name in ("web.1", "web.2")] == ["dependency"] * 2
