"""Baking through the daemon: environment isolation, expansion, recreate, config check."""

import json
import os

from tests.integration.harness import wait_for


def _env_dump_config(kepler, extra="", name="kepler.yaml"):
    out = os.path.join(kepler.workdir, "env.out")
    kepler.config(f"""
        services:
          dump:
            command: ["sh", "-c", "env > {out}"]
{extra}
    """, name=name)
    return out


def _read_env(path):
    with open(path) as file:
        return dict(line.rstrip("\n").split("=", 1) for line in file if "=" in line)


def test_clear_sys_env_keeps_the_cli_environment_out(kepler):
    out = _env_dump_config(kepler)
    kepler.ctl("start", "-d", env=kepler.env(KT_SECRET="hunter2"))
    kepler.wait_status("dump", "exited")
    assert "KT_SECRET" not in _read_env(out)


def test_inherit_sys_env_passes_the_cli_environment(kepler):
    out = _env_dump_config(kepler, extra="            sys_env: inherit")
    kepler.ctl("start", "-d", env=kepler.env(KT_SECRET="hunter2"))
    kepler.wait_status("dump", "exited")
    assert _read_env(out)["KT_SECRET"] == "hunter2"


def test_daemon_environment_never_leaks_into_services(kepler):
    out = _env_dump_config(kepler, extra="            sys_env: inherit")
    kepler.ctl("start", "-d")
    kepler.wait_status("dump", "exited")
    assert "KEPLER_DAEMON_PATH" in _read_env(out)  # the CLI's own env, as sent with the request
    assert "INVOCATION_ID" not in _read_env(out) and "PYTEST_XDIST_WORKER" not in _read_env(out)


def test_environment_overrides_env_file_overrides_system(kepler):
    out = os.path.join(kepler.workdir, "env.out")
    kepler.write("app.env", "A=from-file\nB=from-file\n")
    kepler.config(f"""
        services:
          dump:
            command: ["sh", "-c", "env > {out}"]
            sys_env: inherit
            env_file: app.env
            environment:
              - A=from-environment
    """)
    kepler.ctl("start", "-d", env=kepler.env(A="from-system", B="from-system", C="from-system"))
    kepler.wait_status("dump", "exited")
    env = _read_env(out)
    assert (env["A"], env["B"], env["C"]) == ("from-environment", "from-file", "from-system")


def test_expansion_uses_the_cli_environment_at_bake(kepler):
    out = os.path.join(kepler.workdir, "env.out")
    kepler.config(f"""
        services:
          dump:
            command: ["sh", "-c", "env > {out}"]
            environment:
              - GREETING=hello ${{KT_NAME:-nobody}}
              - PRICE=$$5
    """)
    kepler.ctl("start", "-d", env=kepler.env(KT_NAME="world"))
    kepler.wait_status("dump", "exited")
    env = _read_env(out)
    assert env["GREETING"] == "hello world" and env["PRICE"] == "$5"


def test_command_is_never_expanded_by_kepler(kepler):
    out = os.path.join(kepler.workdir, "argv.out")
    kepler.config(f"""
        services:
          echo:
            command: ["sh", "-c", "printf '%s' \\"$1\\" > {out}", "sh", "${{HOME}}"]
    """)
    kepler.ctl("start", "-d")
    kepler.wait_status("echo", "exited")
    assert open(out).read() == "${HOME}"


def test_snapshot_is_used_until_recreate(kepler):
    out = os.path.join(kepler.workdir, "env.out")
    text = f"""
        services:
          dump:
            command: ["sh", "-c", "echo $VERSION > {out}"]
            environment: [VERSION=%s]
    """
    kepler.config(text % "one")
    kepler.ctl("start", "-d")
    kepler.wait_status("dump", "exited")
    kepler.config(text % "two")
    kepler.ctl("restart", "-d")
    kepler.wait_status("dump", "exited")
    assert open(out).read().strip() == "one", "the file changed but the snapshot did not"
    kepler.ctl("recreate")
    kepler.ctl("start", "-d")
    kepler.wait_status("dump", "exited")
    assert open(out).read().strip() == "two"


def test_recreate_refuses_while_a_service_runs(kepler):
    kepler.config("""
        services:
          web:
            command: ["sleep", "1000"]
    """)
    kepler.ctl("start", "-d")
    kepler.wait_status("web", "running")
    result = kepler.ctl("recreate", check=False)
    assert result.returncode == 1
    assert "web" in result.stderr and "stop" in result.stderr
    assert kepler.status("web") == "running"


def test_bake_copies_config_and_env_files_into_the_state_dir(kepler):
    kepler.write("app.env", "A=1\n")
    path = kepler.config("""
        services:
          one:
            command: ["true"]
            env_file: app.env
    """)
    kepler.ctl("start", "-d")
    kepler.wait_status("one", "exited")
    root = kepler.inspect()["config"]["state_dir"]
    assert open(os.path.join(root, "source_path")).read() == path
    assert open(os.path.join(root, "config.yaml")).read() == open(path).read()
    assert os.listdir(os.path.join(root, "env_files")) == ["app.env"]
    snapshot = json.load(open(os.path.join(root, "snapshot.json")))
    assert snapshot["services"]["one"]["env"] == {"A": "1"}
    # state.json is written at most every 150 ms: poll it.
    wait_for(lambda: json.load(open(os.path.join(root, "state.json")))["services"]["one"]["status"] == "exited",
             message="state.json to record the exit")


def test_invalid_config_is_reported_and_nothing_starts(kepler):
    kepler.config("""
        services:
          web:
            command: ["sleep", "1000"]
            healthcheck:
              interval: 10 seconds
          api:
            comand: ["true"]
    """)
    result = kepler.ctl("start", "-d", check=False)
    assert result.returncode == 1
    assert "kepler.yaml: services.web.healthcheck.interval: invalid duration '10 seconds'" in result.stderr
    assert "services.api.comand" in result.stderr
    assert kepler.ctl("ps").stdout.strip() == "no services"


def test_config_check_validates_without_a_daemon(kepler_stopped):
    kepler_stopped.config("""
        services:
          a:
            command: ["true"]
            depends_on: [b]
          b:
            command: ["true"]
            depends_on: [a]
    """)
    result = kepler_stopped.ctl("config", "check", check=False)
    assert result.returncode == 1
    assert "a -> b -> a" in result.stderr or "b -> a -> b" in result.stderr
    kepler_stopped.config("services:\n  a:\n    command: ['true']\n")
    assert kepler_stopped.ctl("config", "check").stdout.strip() == "kepler.yaml: ok"


def test_two_configs_are_independent(kepler):
    first = kepler.write("one/kepler.yaml", "services:\n  web:\n    command: [sh, -c, 'echo one; exec sleep 1000']\n")
    second = kepler.write("two/kepler.yaml", "services:\n  web:\n    command: [sh, -c, 'echo two; exec sleep 1000']\n")
    kepler.ctl("-f", first, "start", "-d")
    kepler.ctl("-f", second, "start", "-d")
    one = kepler.wait_status("web", "running", "-f", first)
    two = kepler.wait_status("web", "running", "-f", second)
    assert one["pid"] != two["pid"]
    kepler.ctl("-f", first, "stop")
    assert kepler.status("web", "-f", first) == "stopped"
    assert kepler.ps("-f", second)["web"]["pid"] == two["pid"]
    assert kepler.logs("--file", second) == ["web | two"]


def test_config_found_from_the_current_directory_or_with_file(kepler):
    kepler.write("sub/kepler.yml", "services:\n  web:\n    command: [sleep, '1000']\n")
    sub = os.path.join(kepler.workdir, "sub")
    kepler.ctl("start", "-d", cwd=sub)
    kepler.wait_status("web", "running", cwd=sub)
    assert "web" in kepler.ps("--file", "sub/kepler.yml")
    missing = kepler.ctl("ps", check=False)
    assert missing.returncode == 1 and "no kepler.yaml or kepler.yml" in missing.stderr
