"""Lua templating through a real keplerd and keplerctl (SPEC §6)."""

import os
import subprocess

import psutil

from tests.integration.harness import KEPLERCTL, alive, wait_for

RANDOM_TOKEN = """\
    lua: |
      global.token = tostring(math.random(1, 1000000000)) .. "-" .. os.time()
    services:
      web:
        command: !lua return {"sleep", "1000"}
        environment:
          TOKEN: !lua return global.token .. "-" .. ctx.sys_env.GREETING
"""


def bake_workers(kepler):
    """The daemon's bake workers running now: forked by its warm zygote, or fresh interpreters."""
    workers = []
    for child in psutil.Process(kepler.daemon.pid).children():
        try:
            command = " ".join(child.cmdline())
            if "keplerd.config.zygote" in command:
                workers += [worker for worker in child.children() if worker.status() != psutil.STATUS_ZOMBIE]
            elif "keplerd.config.worker" in command and child.status() != psutil.STATUS_ZOMBIE:
                workers.append(child)
        except psutil.NoSuchProcess:
            pass
    return workers


def bake_zygote(kepler):
    """The daemon's warm bake worker."""
    def find():
        for child in psutil.Process(kepler.daemon.pid).children():
            try:
                if "keplerd.config.zygote" in " ".join(child.cmdline()):
                    return child
            except psutil.NoSuchProcess:
                pass
        return None
    return wait_for(find, message="the bake zygote")


def bake_worker_cpu(kepler):
    """CPU seconds spent by the daemon's bake workers that are running now."""
    total = 0.0
    for worker in bake_workers(kepler):
        try:
            times = worker.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def baked_env(kepler, name="web"):
    return kepler.inspect(name)["services"][name]["config"]["env"]


def test_services_run_with_values_computed_by_lua(kepler):
    kepler.write("ports.lua", "return {web = 8080}\n")
    kepler.config("""\
        lua: |
          ports = require("ports")
          function url(name) return "http://localhost:" .. ports[name] end
        services:
          web:
            command: !lua return {"sh", "-c", "echo serving " .. url("web") .. "; exec sleep 1000"}
            environment:
              NAME: !lua return ctx.service_name
    """)
    kepler.ctl("start", "-d")
    kepler.wait_status("web", "running")
    wait_for(lambda: "web | serving http://localhost:8080" in kepler.logs(), message="the computed command's output")
    assert baked_env(kepler)["NAME"] == "web"


def test_lua_runs_once_per_bake_and_recreate_runs_it_again(kepler):
    kepler.config(RANDOM_TOKEN)
    kepler.ctl("start", "-d", env=kepler.env(GREETING="hello"))
    first = kepler.wait_status("web", "running")
    token = baked_env(kepler)["TOKEN"]
    assert token.endswith("-hello")

    kepler.ctl("restart", "-d", env=kepler.env(GREETING="changed"))
    wait_for(lambda: kepler.ps()["web"]["pid"] not in (None, first["pid"]), message="web to restart")
    assert baked_env(kepler)["TOKEN"] == token, "a restart reuses the snapshot"

    kepler.stop_daemon()
    kepler.start_daemon()
    kepler.wait_status("web", "running")
    assert baked_env(kepler)["TOKEN"] == token, "a daemon restart reuses the snapshot"

    kepler.ctl("stop")
    kepler.ctl("recreate", env=kepler.env(GREETING="again"))
    fresh = baked_env(kepler)["TOKEN"]
    assert fresh != token and fresh.endswith("-again")


def test_an_endless_bake_fails_at_the_time_limit_while_the_daemon_serves_others(kepler):
    other = kepler.write("other/kepler.yaml", "services:\n  calm:\n    command: [sleep, '1000']\n")
    kepler.ctl("-f", other, "start", "-d")
    kepler.wait_status("calm", "running", "-f", other)
    spinning = kepler.write("spin/kepler.yaml", "services:\n  spin:\n    command: !lua while true do end\n")

    bake = subprocess.Popen([KEPLERCTL, "-f", spinning, "start", "-d"], env=kepler.env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    answers = []
    try:
        while bake.poll() is None:
            assert kepler.ps("-f", other)["calm"]["status"] == "running"
            answers.append(bake.poll() is None)  # answered while the bake still ran
        _, stderr = bake.communicate(timeout=30)
    finally:
        if bake.poll() is None:
            bake.kill()
            bake.wait()
    assert any(answers), "ps should have answered at least once during the bake"
    assert bake.returncode == 1
    assert "kepler.yaml: services.spin.command: Lua time limit exceeded (2s of CPU per bake)" in stderr
    assert kepler.ps("-f", other)["calm"]["status"] == "running"
    assert "spin" not in kepler.ctl("ps", "--all").stdout


def test_other_configs_start_and_bake_while_a_bake_computes(kepler):
    spinning = kepler.write("spin/kepler.yaml", "services:\n  spin:\n    command: !lua while true do end\n")
    loaded = kepler.write("loaded/kepler.yaml", "services:\n  one:\n    command: [sleep, '1000']\n")
    fresh = kepler.write("fresh/kepler.yaml", "services:\n  two:\n    command: !lua return {'sleep', '1000'}\n")
    kepler.ctl("-f", loaded, "start", "-d")
    kepler.ctl("-f", loaded, "stop")
    bake = subprocess.Popen([KEPLERCTL, "-f", spinning, "start", "-d"], env=kepler.env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # The bake has begun once its worker burns CPU in the Lua loop.
        wait_for(lambda: bake_worker_cpu(kepler) > 0.3, message="the spinning bake to begin")
        for path in (loaded, fresh):
            kepler.ctl("-f", path, "start", "-d")
            # Answered while the other bake still computes: it did not wait for it.
            assert bake.poll() is None, "the spinning bake should still be running"
    finally:
        bake.wait(timeout=30)
    assert bake.returncode == 1
    kepler.wait_status("one", "running", "-f", loaded)
    kepler.wait_status("two", "running", "-f", fresh)


def test_a_memory_bomb_fails_the_bake_and_the_daemon_carries_on(kepler):
    kepler.config("""\
        services:
          bomb:
            command: !lua |
              local t = {}
              for i = 1, 1e9 do t[i] = ("x"):rep(100) .. i end
    """)
    result = kepler.ctl("start", "-d", check=False)
    assert result.returncode == 1
    assert "kepler.yaml: services.bomb.command: Lua memory limit exceeded (64 MiB per bake)" in result.stderr
    assert kepler.ctl("daemon", "status").returncode == 0
    kepler.config("services:\n  fine:\n    command: !lua return {'sleep', '1000'}\n")
    kepler.ctl("start", "-d")
    kepler.wait_status("fine", "running")


def test_lua_errors_name_the_file_the_key_and_the_line(kepler):
    kepler.config("""\
        services:
          web:
            command: !lua |
              local settings = {}
              local name = "web"
              return {"serve", settings.http.port}
    """)
    expected = "kepler.yaml: services.web.command: lua:3: attempt to index a nil value (field 'http')"
    started = kepler.ctl("start", "-d", check=False)
    assert (started.returncode, started.stderr.strip()) == (1, f"keplerctl: {expected}")
    checked = kepler.ctl("config", "check", check=False)
    assert (checked.returncode, checked.stderr.strip()) == (1, f"keplerctl: {expected}")


def test_config_check_evaluates_lua_without_a_daemon(kepler_stopped):
    kepler_stopped.config("""\
        services:
          web:
            command: !lua return {"echo", 42}
    """)
    result = kepler_stopped.ctl("config", "check", check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == "keplerctl: kepler.yaml: services.web.command.1: Not a valid string."
    kepler_stopped.config("services:\n  web:\n    command: !lua return {'echo', tostring(42)}\n")
    assert kepler_stopped.ctl("config", "check").stdout.strip() == "kepler.yaml: ok"


def test_lua_generated_dependencies_watch_and_healthcheck_reach_the_snapshot(kepler):
    kepler.config("""\
        lua: |
          function healthy(...) return {condition = "service_healthy", timeout = "30s"} end
        services:
          db:
            command: [sleep, "1000"]
            healthcheck: !lua return {test = {"CMD", "true"}, interval = "1s", retries = 2}
          web:
            command: [sleep, "1000"]
            depends_on: !lua return {db = healthy()}
            restart: !lua return {policy = "always", watch = {"*.conf"}}
    """)
    kepler.ctl("start", "-d", "db")
    services = kepler.inspect()["services"]
    web, db = services["web"]["config"], services["db"]["config"]
    assert web["depends_on"]["db"]["condition"] == "service_healthy"
    assert web["depends_on"]["db"]["timeout"] == 30.0
    assert web["restart"]["policy"] == "always" and web["restart"]["watch"] == ["*.conf"]
    assert db["healthcheck"]["test"] == ["true"] or db["healthcheck"]["test"][-1] == "true"
    assert db["healthcheck"]["interval"] == 1.0 and db["healthcheck"]["retries"] == 2


def test_a_bake_whose_client_goes_away_leaves_no_worker(kepler_stopped):
    kepler = kepler_stopped
    with open(os.path.join(kepler.root, "keplerd.conf"), "w") as file:
        file.write(f"autostart_dir: {os.path.join(kepler.root, 'conf.d')}\nlua_time_limit: 120s\n")
    kepler.start_daemon()
    spinning = kepler.write("spin/kepler.yaml", "services:\n  spin:\n    command: !lua while true do end\n")
    client = subprocess.Popen([KEPLERCTL, "-f", spinning, "start", "-d"], env=kepler.env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: bake_worker_cpu(kepler) > 0.3, message="the spinning bake to begin")
    finally:
        client.kill()
        client.wait()
    # Well before the 120 s Lua limit: the worker goes with the request that waited for it.
    wait_for(lambda: not bake_workers(kepler), message="the bake worker to be gone")
    kepler.config("services:\n  fine:\n    command: [sleep, '1000']\n")
    kepler.ctl("start", "-d")
    kepler.wait_status("fine", "running")


def test_bakes_are_forked_by_a_warm_zygote_that_outlives_a_failed_bake(kepler):
    zygote = bake_zygote(kepler)
    bomb = kepler.write("bomb/kepler.yaml", "services:\n  bomb:\n    command: !lua error('boom')\n")
    result = kepler.ctl("-f", bomb, "start", "-d", check=False)
    assert result.returncode == 1 and "boom" in result.stderr
    kepler.config("services:\n  fine:\n    command: [sleep, '1000']\n")
    kepler.ctl("start", "-d")
    kepler.wait_status("fine", "running")
    assert bake_zygote(kepler).pid == zygote.pid, "one zygote serves every bake"
    assert "baking in a fresh interpreter" not in kepler.read_daemon_log()


def test_a_bake_after_the_zygote_died_still_works(kepler):
    zygote = bake_zygote(kepler)
    zygote.kill()
    wait_for(lambda: not alive(zygote), message="the zygote to die")
    kepler.config("services:\n  fine:\n    command: !lua return {'sleep', '1000'}\n")
    kepler.ctl("start", "-d")
    kepler.wait_status("fine", "running")
    assert bake_zygote(kepler).pid != zygote.pid, "a new zygote took over"


def test_the_daemon_never_leaves_its_bake_zygote_behind(kepler):
    zygote = bake_zygote(kepler)
    zygote.suspend()  # a zygote that cannot act on its socket closing: the daemon must end it itself
    kepler.stop_daemon()
    assert not alive(zygote), "the zygote outlived the daemon that started it"
