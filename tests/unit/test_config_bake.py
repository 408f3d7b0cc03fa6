"""Baking a config into its snapshot: format, defaults, environments, stored files."""

import json
import os
import textwrap

import pytest

from keplerd.config.bake import bake, stored_name
from keplerd.config.errors import ConfigError

HOME = "/home/ann"
NO_LIMITS = {"memory": None, "cpu_time": None, "max_fds": None, "memory_max": None, "cpus": None,
             "pids_max": None}
DEFAULT_LOGS = {
    "max_size": None,
    "buffer_size": 0,
    "store": {"stdout": True, "stderr": True},
    "retention": {"on_start": "retain", "on_stop": "retain", "on_restart": "retain", "on_exit": "retain"},
}

REALISTIC = """\
kepler:
  sys_env: clear
  timeout: 1m
  logs: {max_size: 10M, retention: {on_stop: retain}}
  hooks:
    on_init: {run: "mkdir -p data"}
services:
  db:
    command: [postgres, -D, "${PGDATA}"]
    env_file: db.env
    environment: {PGDATA: "${DATA_ROOT}/pg", PGPORT: 5432}
    healthcheck: {test: ["CMD-SHELL", "pg_isready"], interval: 5s, retries: 5}
    stop_signal: SIGINT
    stop_grace_period: 30s
  api:
    command: [python, -m, api]
    working_dir: services/api
    depends_on:
      db: {condition: service_healthy, timeout: 20s, restart: true}
    sys_env: inherit
    restart: {policy: on-failure, watch: ["**/*.py"], backoff: 200ms, max_retries: 5}
    user: 1000
    group: staff
    limits: {memory: 512M, cpu_time: 1h, max_fds: 1024, memory_max: 256M, cpus: 1.5, pids_max: 100}
    logs: {store: {stderr: false}, buffer_size: 4K}
    hooks:
      pre_start: {command: [python, -m, api.migrate], environment: [MIGRATE=1], timeout: 2m}
      post_exit: {run: "echo bye", user: nobody}
  alarm:
    command: [notify-send, api died]
    depends_on:
      api: {condition: service_failed, exit_code: [1, "3:5"]}
    restart: no
"""


def edge(condition="service_started", timeout=None, restart=False, exit_code=None):
    """Return a baked dependency edge as the snapshot has it."""
    return dict(condition=condition, timeout=timeout, restart=restart, exit_code=exit_code, wait=None)


def write(tmp_path, text, files=None):
    for name, content in (files or {}).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content)
    path = tmp_path / "kepler.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


@pytest.fixture
def realistic(tmp_path):
    path = write(tmp_path, REALISTIC, {"db.env": "DATA_ROOT=/var/lib/app\nPGUSER=app\n"})
    return bake(path, {"PATH": "/usr/bin", "LANG": "C"}, HOME)


def test_snapshot_header(realistic, tmp_path):
    snapshot = realistic.snapshot
    assert snapshot["format"] == 1
    assert snapshot["source_path"] == str(tmp_path / "kepler.yaml")
    assert snapshot["config_dir"] == str(tmp_path)
    assert snapshot["display_name"] == "kepler.yaml"
    assert snapshot["sys_env"] == {"PATH": "/usr/bin", "LANG": "C"}
    assert snapshot["home"] == HOME
    assert snapshot["env_files"] == {str(tmp_path / "db.env"): "db.env"}
    assert snapshot["start_order"] == ["db", "api", "alarm"]
    assert list(snapshot["services"]) == ["db", "api", "alarm"]


def test_snapshot_is_json(realistic):
    assert json.loads(json.dumps(realistic.snapshot)) == realistic.snapshot


def test_bake_keeps_the_bytes_it_read(realistic, tmp_path):
    assert realistic.config_bytes == (tmp_path / "kepler.yaml").read_bytes()
    assert realistic.env_files == {"db.env": b"DATA_ROOT=/var/lib/app\nPGUSER=app\n"}


def test_global_settings_and_hooks(realistic, tmp_path):
    kepler = realistic.snapshot["kepler"]
    assert kepler["sys_env"] == "clear"
    assert kepler["timeout"] == 60.0
    assert kepler["logs"] == {**DEFAULT_LOGS, "max_size": 10 << 20,
                              "retention": {**DEFAULT_LOGS["retention"], "on_stop": "retain"}}
    assert kepler["hooks"] == {
        "on_init": {
            "command": ["/bin/sh", "-c", "mkdir -p data"], "run": "mkdir -p data",
            "user": None, "group": None, "working_dir": str(tmp_path), "env": {}, "limits": NO_LIMITS,
            "timeout": None,
        }
    }


def test_service_with_defaults_filled(realistic, tmp_path):
    db = realistic.snapshot["services"]["db"]
    assert db == {
        "command": ["postgres", "-D", "${PGDATA}"],
        "working_dir": str(tmp_path),
        "depends_on": {},
        "environment": {"PGDATA": "/var/lib/app/pg", "PGPORT": "5432"},
        "env_file": str(tmp_path / "db.env"),
        "sys_env": "clear",
        "env": {"DATA_ROOT": "/var/lib/app", "PGUSER": "app", "PGDATA": "/var/lib/app/pg", "PGPORT": "5432"},
        "restart": {"policy": "no", "watch": [], "backoff": 0.1, "max_backoff": 30.0, "max_retries": None,
                    "on_unhealthy": False},
        "healthcheck": {
            "test": ["/bin/sh", "-c", "pg_isready"], "http": None, "tcp": None, "interval": 5.0, "timeout": 30.0,
            "retries": 5, "start_period": 0.0,
        },
        "hooks": {},
        "user": None,
        "group": None,
        "limits": NO_LIMITS,
        "logs": realistic.snapshot["kepler"]["logs"],
        "wait": None,
        "effective_wait": True,
        "stop_signal": 2,
        "stop_grace_period": 30.0,
        "notify": False,
        "replicas": 1,
    }


def test_service_with_every_key(realistic, tmp_path):
    api = realistic.snapshot["services"]["api"]
    env = {"PATH": "/usr/bin", "LANG": "C"}
    assert api["working_dir"] == str(tmp_path / "services" / "api")
    assert api["depends_on"] == {
        "db": edge("service_healthy", timeout=20.0, restart=True),
    }
    assert api["env"] == env
    assert api["restart"] == {
        "policy": "on-failure", "watch": ["**/*.py"], "backoff": 0.2, "max_backoff": 30.0, "max_retries": 5,
        "on_unhealthy": False,
    }
    assert (api["user"], api["group"]) == ("1000", "staff")
    assert api["limits"] == {"memory": 512 << 20, "cpu_time": 3600, "max_fds": 1024, "memory_max": 256 << 20,
                             "cpus": 1.5, "pids_max": 100}
    assert api["logs"]["store"] == {"stdout": True, "stderr": False}
    assert api["logs"]["buffer_size"] == 4096
    assert api["logs"]["max_size"] == 10 << 20
    assert api["hooks"]["pre_start"] == {
        "command": ["python", "-m", "api.migrate"], "run": None, "user": "1000", "group": "staff",
        "working_dir": api["working_dir"], "env": {**env, "MIGRATE": "1"}, "limits": api["limits"],
        "timeout": 120.0,
    }


def test_hook_with_its_own_user_does_not_inherit_the_group(realistic):
    hook = realistic.snapshot["services"]["api"]["hooks"]["post_exit"]
    assert (hook["user"], hook["group"]) == ("nobody", None)


def test_deferred_service_and_edge_defaults(realistic):
    alarm = realistic.snapshot["services"]["alarm"]
    assert alarm["depends_on"]["api"] == edge("service_failed", timeout=60.0, exit_code=[[1, 1], [3, 5]])
    assert alarm["restart"]["policy"] == "no"
    assert alarm["effective_wait"] is False


def test_short_forms(tmp_path):
    path = write(tmp_path, """\
        services:
          db: {command: [x], restart: always}
          web: {command: [x], depends_on: [db], environment: [A=1, B=x=y], logs: {store: false}}
        """)
    services = bake(path, {}, HOME).snapshot["services"]
    assert services["db"]["restart"]["policy"] == "always"
    assert services["web"]["depends_on"] == {"db": edge()}
    assert services["web"]["environment"] == {"A": "1", "B": "x=y"}
    assert services["web"]["logs"]["store"] == {"stdout": False, "stderr": False}


@pytest.mark.parametrize(
    ("test", "argv"),
    [
        ('["CMD", "curl", "-f", "x"]', ["curl", "-f", "x"]),
        ('["CMD-SHELL", "curl x || exit 1"]', ["/bin/sh", "-c", "curl x || exit 1"]),
        ('"curl x"', ["/bin/sh", "-c", "curl x"]),
        ('["curl", "x"]', ["curl", "x"]),
    ],
)
def test_healthcheck_test_forms(tmp_path, test, argv):
    path = write(tmp_path, f"services:\n  web:\n    command: [x]\n    healthcheck: {{test: {test}}}\n")
    health = bake(path, {}, HOME).snapshot["services"]["web"]["healthcheck"]
    assert health == {"test": argv, "http": None, "tcp": None, "interval": 30.0, "timeout": 30.0, "retries": 3,
                      "start_period": 0.0}


@pytest.mark.parametrize("kind, target", [("http", "http://127.0.0.1:8080/health"), ("tcp", "localhost:5432")])
def test_http_and_tcp_checks_are_baked_as_written(tmp_path, kind, target):
    path = write(tmp_path, f"services:\n  web:\n    command: [x]\n    healthcheck: {{{kind}: '{target}', retries: 2}}\n"
                           f"    restart: {{policy: always, on_unhealthy: true}}\n    notify: true\n")
    web = bake(path, {}, HOME).snapshot["services"]["web"]
    assert web["healthcheck"] == {"test": None, "http": None, "tcp": None, kind: target, "interval": 30.0,
                                  "timeout": 30.0, "retries": 2, "start_period": 0.0}
    assert web["restart"]["on_unhealthy"] is True and web["notify"] is True


@pytest.mark.parametrize("healthcheck", ['{test: ["NONE"]}', "{test: x, disable: true}", "{disable: true}"])
def test_disabled_healthcheck_is_null(tmp_path, healthcheck):
    path = write(tmp_path, f"services:\n  web:\n    command: [x]\n    healthcheck: {healthcheck}\n")
    assert bake(path, {}, HOME).snapshot["services"]["web"]["healthcheck"] is None


ENV_CONFIG = """\
kepler: {sys_env: %s}
services:
  web:
    command: [x]
    env_file: app.env
    environment: [TOP=environment]
  own:
    command: [x]
    sys_env: %s
"""


def test_environment_beats_env_file_beats_inherited_system_env(tmp_path):
    path = write(tmp_path, ENV_CONFIG % ("inherit", "clear"), {"app.env": "TOP=file\nMID=file\n"})
    services = bake(path, {"TOP": "sys", "MID": "sys", "LOW": "sys"}, HOME).snapshot["services"]
    assert services["web"]["env"] == {"TOP": "environment", "MID": "file", "LOW": "sys"}
    assert services["web"]["sys_env"] == "inherit"
    assert services["own"]["env"] == {}


def test_clear_keeps_only_env_file_and_environment(tmp_path):
    path = write(tmp_path, ENV_CONFIG % ("clear", "inherit"), {"app.env": "TOP=file\nMID=file\n"})
    services = bake(path, {"TOP": "sys", "LOW": "sys"}, HOME).snapshot["services"]
    assert services["web"]["env"] == {"TOP": "environment", "MID": "file"}
    assert services["own"]["env"] == {"TOP": "sys", "LOW": "sys"}


def test_global_hook_gets_no_service_or_system_env(tmp_path):
    path = write(tmp_path, """\
        kepler:
          sys_env: inherit
          hooks: {pre_stop: {run: x, environment: {A: 1}}}
        services:
          web: {command: [x], environment: [B=2]}
        """)
    hook = bake(path, {"SYS": "1"}, HOME).snapshot["kepler"]["hooks"]["pre_stop"]
    assert hook["env"] == {"A": "1"}


def test_env_files_are_read_once_and_stored_under_safe_names(tmp_path):
    outside = tmp_path / "elsewhere"
    config_dir = tmp_path / "app"
    outside.mkdir()
    config_dir.mkdir()
    (outside / "shared.env").write_text("S=1\n")
    path = write(config_dir, f"""\
        services:
          a: {{command: [x], env_file: app.env}}
          b: {{command: [x], env_file: ./app.env}}
          c: {{command: [x], env_file: conf/app.env}}
          d: {{command: [x], env_file: {outside}/shared.env}}
        """, {"app.env": "A=1\n", "conf/app.env": "C=1\n"})
    baked = bake(path, {}, HOME)
    assert baked.snapshot["env_files"] == {
        str(config_dir / "app.env"): "app.env",
        str(config_dir / "conf" / "app.env"): "conf%2Fapp.env",
        str(outside / "shared.env"): stored_name(str(outside / "shared.env"), str(config_dir)),
    }
    assert set(baked.env_files) == set(baked.snapshot["env_files"].values())
    assert all("/" not in name for name in baked.env_files)


def test_stored_names_cannot_collide():
    config_dir = "/srv/app"
    paths = ["/srv/app/a/b.env", "/srv/app/a%2Fb.env", "/a/b.env", "/srv/app/%2Fa%2Fb.env", "/srv/a.env"]
    names = [stored_name(path, config_dir) for path in paths]
    assert len(set(names)) == len(names)
    assert all("/" not in name and name not in (".", "..") for name in names)


def test_missing_env_file_is_a_located_error(tmp_path):
    path = write(tmp_path, "services:\n  web: {command: [x], env_file: nope.env}\n")
    with pytest.raises(ConfigError) as caught:
        bake(path, {}, HOME)
    problem = f"cannot read env file {tmp_path}/nope.env: No such file or directory"
    assert caught.value.errors == [f"kepler.yaml: services.web.env_file: {problem}"]


def test_malformed_env_file_line_is_reported_relative_to_the_config(tmp_path):
    config = "services:\n  web: {command: [x], env_file: conf/app.env}\n"
    path = write(tmp_path, config, {"conf/app.env": "A=1\nB\n"})
    with pytest.raises(ConfigError) as caught:
        bake(path, {}, HOME)
    assert caught.value.errors == ["conf/app.env:2: invalid line: expected KEY=value"]


def test_source_path_is_the_real_path(tmp_path):
    real = write(tmp_path, "services:\n  web: {command: [x]}\n")
    link = tmp_path / "link"
    link.mkdir()
    os.symlink(real, link / "kepler.yaml")
    snapshot = bake(str(link / "kepler.yaml"), {}, HOME).snapshot
    assert snapshot["source_path"] == real
    assert snapshot["services"]["web"]["working_dir"] == str(tmp_path)


def test_default_stop_grace_period_comes_from_the_daemon(tmp_path):
    path = write(tmp_path, "services:\n  a: {command: [x]}\n  b: {command: [x], stop_grace_period: 1s}\n")
    services = bake(path, {}, HOME, default_stop_grace_period=3.0).snapshot["services"]
    assert (services["a"]["stop_grace_period"], services["b"]["stop_grace_period"]) == (3.0, 1.0)


def test_empty_keys_count_as_unset(tmp_path):
    path = write(tmp_path, """\
        services:
          web:
            command: [x]
            depends_on:
            environment:
            hooks:
            logs:
        """)
    web = bake(path, {}, HOME).snapshot["services"]["web"]
    assert (web["depends_on"], web["environment"], web["hooks"], web["logs"]) == ({}, {}, {}, DEFAULT_LOGS)


def test_wait_override_reaches_the_snapshot(tmp_path):
    path = write(tmp_path, """\
        services:
          db: {command: [x], wait: false}
          web: {command: [x], depends_on: {db: {wait: true}}}
        """)
    services = bake(path, {}, HOME).snapshot["services"]
    assert (services["db"]["wait"], services["db"]["effective_wait"]) == (False, False)
    assert services["web"]["effective_wait"] is False
