"""Every key of kepler.yaml(5) is either mapped or reported, in both exports; the units pass systemd-analyze.

FULL uses every key of the schema (checked against the marshmallow schemas, so a key
added to the schema fails here until it is added to FULL and to the exporters).
"""

import json

import pytest
from marshmallow import fields as ma

from keplerd.config import schema
from keplerd.export import Options, export
from tests.unit.export_support import (StubPrograms, bake_text, nomad_validation_errors, systemd_analyze_verify,
                                       write_units)

# Keys the bake resolves away, leaving nothing in the snapshot to export.
RESOLVED_AT_BAKE = {
    "services.db.healthcheck.disable": "`disable: false` leaves the check as it is",
}

FULL = """
kepler:
  sys_env: inherit
  timeout: 30s
  logs:
    max_size: 4M
    buffer_size: 4K
    store: {stdout: true, stderr: true}
    retention: {on_start: clear, on_stop: retain, on_restart: clear, on_exit: retain}
  hooks:
    on_init: {run: "echo init"}
    pre_start: {run: "echo pre_start"}
    post_start: {run: "echo post_start"}
    pre_stop: {run: "echo pre_stop"}
    post_stop: {run: "echo post_stop"}
    pre_restart: {run: "echo pre_restart"}
    post_restart: {run: "echo post_restart"}
    pre_cleanup: {run: "echo pre_cleanup"}
lua: |
  global.port = "8080"
services:
  migrate:
    command: ["/bin/true"]
  db:
    command: ["/bin/sleep", "1000"]
    healthcheck:
      test: ["CMD", "/bin/true"]
      interval: 2s
      timeout: 1s
      retries: 5
      start_period: 3s
      disable: false
  web:
    command: ["/bin/sh", "-c", "exec sleep 1000"]
    working_dir: /tmp
    depends_on:
      migrate: {condition: service_completed_successfully}
      db: {condition: service_healthy, timeout: 10s, restart: true, wait: true}
    environment:
      - PORT=8080
      - NAME=web
    env_file: web.env
    sys_env: clear
    restart: {policy: on-failure, watch: ["*.py"], backoff: 1s, max_backoff: 20s, max_retries: 4}
    user: daemon
    group: daemon
    limits: {memory: 1G, cpu_time: 1h, max_fds: 1024, memory_max: 512M, cpus: 1.5, pids_max: 100}
    logs:
      max_size: 1M
      buffer_size: 1K
      store: {stdout: false, stderr: true}
      retention: {on_start: retain, on_stop: clear, on_restart: retain, on_exit: clear}
    wait: true
    stop_signal: SIGINT
    stop_grace_period: 5s
    hooks:
      on_init: {command: ["/bin/echo", "init"]}
      pre_start:
        command: ["/bin/echo", "pre"]
        environment: ["EXTRA=1"]
        env_file: hook.env
      post_start: {run: "echo started", timeout: 5s}
      pre_stop: {command: ["/bin/echo", "stopping"], working_dir: /var}
      post_stop: {command: ["/bin/echo", "stopped"], user: bin, group: bin}
      pre_restart: {command: ["/bin/echo", "pre_restart"]}
      post_restart: {command: ["/bin/echo", "post_restart"]}
      post_exit: {command: ["/bin/echo", "exited"]}
      post_healthcheck_success: {command: ["/bin/echo", "healthy"]}
      post_healthcheck_fail: {command: ["/bin/echo", "unhealthy"]}
  worker:
    command: ["/bin/sleep", "1000"]
    depends_on:
      web: {condition: service_failed, exit_code: [1, "3:5"]}
  alert:
    command: ["/bin/true"]
    depends_on: {web: {condition: service_unhealthy}}
"""
FILES = {"web.env": "FROM_FILE=1\n", "hook.env": "HOOK_FILE=1\n"}


def full_tree():
    """Return FULL as data, with the keys other issues add (SPEC §17-§19) once the schema has them."""
    import yaml

    tree = yaml.safe_load(FULL)
    services = tree["services"]
    service_keys = schema.ServiceSchema().fields
    if "replicas" in service_keys:
        services["web"]["replicas"] = 2
    if "notify" in service_keys:
        services["worker"]["notify"] = True
    limit_keys = schema.LimitsSchema().fields
    for key, value in (("memory_max", "512M"), ("cpus", 0.5), ("pids_max", 100)):
        if key in limit_keys:
            services["web"]["limits"][key] = value
    health_keys = schema.HealthcheckSchema().fields
    if "http" in health_keys:
        services["probe_http"] = {"command": ["/bin/sleep", "1000"],
                                  "healthcheck": {"http": "http://127.0.0.1:8080/health", "interval": "1s"}}
    if "tcp" in health_keys:
        services["probe_tcp"] = {"command": ["/bin/sleep", "1000"], "healthcheck": {"tcp": "127.0.0.1:5432"}}
    if "on_unhealthy" in schema.RestartSchema().fields:
        services["db"]["restart"] = {"policy": "always", "on_unhealthy": True}
    return tree


def _schema_keys(schema_class):
    keys = set()
    for name, field in schema_class().fields.items():
        keys.add(name)
        nested = getattr(field, "nested", None) or getattr(field, "schema", None)
        if isinstance(field, (ma.Nested, schema.fields.OneOrSchema)) and isinstance(nested, type):
            keys |= _schema_keys(nested)
    return keys


def _key_paths(tree, path=()):
    """Yield the dotted path of every key of *tree* whose value is not a mapping (a leaf)."""
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            yield from _key_paths(value, (*path, key))
        else:
            yield ".".join((*path, str(key)))


def _all_key_names(tree):
    names = set()
    for key, value in tree.items():
        names.add(key)
        if isinstance(value, dict):
            names |= _all_key_names(value)
    return names


@pytest.fixture
def full(tmp_path):
    import yaml

    tree = full_tree()
    text = yaml.safe_dump(tree, sort_keys=False)
    return bake_text(tmp_path, text, files=FILES, sys_env={"HOME": "/root", "CALLER": "x"}), tree


def test_the_full_config_uses_every_key_of_the_schema():
    keys = set()
    for schema_class in (schema.TopSchema, schema.KeplerSchema, schema.ServiceSchema, schema.EdgeSchema):
        keys |= _schema_keys(schema_class)
    missing = keys - _all_key_names(full_tree())
    assert not missing, f"FULL does not use: {sorted(missing)}"


@pytest.mark.parametrize("target", ["systemd", "nomad"])
def test_every_key_is_mapped_or_reported(full, target):
    snapshot, tree = full
    result = export(snapshot, target, Options(prefix="full", systemd_version=254))
    warned = {path for path, _ in result.warnings}
    silent = [path for path in _key_paths(tree)
              if path not in result.mapped and path not in warned and path not in RESOLVED_AT_BAKE
              and not any(path.startswith(f"{where}.") for where in warned)]
    assert not silent, f"{target}: dropped without a warning: {silent}"


def test_what_each_export_reports_for_the_full_config(full):
    snapshot, _ = full
    systemd = {path for path, _ in export(snapshot, "systemd", Options(prefix="full")).warnings}
    nomad = {path for path, _ in export(snapshot, "nomad", Options(prefix="full")).warnings}
    both = {"services.web.restart.watch", "services.alert.depends_on.web", "kepler.hooks.on_init", "kepler.timeout",
            "services.web.logs.retention.on_stop", "services.web.hooks.post_exit", "services.web.hooks.pre_restart"}
    assert both <= systemd and both <= nomad
    assert {"services.web.depends_on.db.timeout", "services.web.depends_on.db.wait"} <= systemd
    assert "services.web.depends_on.db" in nomad  # Nomad does not order groups: the whole edge
    assert {"services.db.healthcheck", "services.web.hooks.on_init", "services.web.hooks.post_stop.user"} <= systemd
    assert {"services.web.limits.memory", "services.web.hooks.pre_stop", "services.web.group"} <= nomad


def test_every_unit_of_the_full_config_passes_systemd_analyze_verify(full, world_readable_dir):
    snapshot, _ = full
    result = export(snapshot, "systemd", Options(prefix="full", resolve=StubPrograms(world_readable_dir)))
    write_units(world_readable_dir, result.files)
    verified = systemd_analyze_verify(world_readable_dir, sorted(result.files))
    assert verified.returncode == 0 and verified.stderr == "", verified.stderr


def test_the_nomad_job_of_the_full_config_has_the_documented_shape(full):
    snapshot, _ = full
    job = json.loads(export(snapshot, "nomad", Options(prefix="full")).files["full.nomad.json"])["Job"]
    task_keys = {"Name", "Driver", "Config", "Env", "User", "Resources", "RestartPolicy", "KillSignal",
                 "KillTimeout", "LogConfig", "Lifecycle", "Services"}
    for group in job["TaskGroups"]:
        assert set(group) <= {"Name", "Count", "Tasks", "Networks", "ReschedulePolicy", "EphemeralDisk"}
        assert isinstance(group["Count"], int) and group["Count"] >= 1
        for task in group["Tasks"]:
            assert set(task) <= task_keys, set(task) - task_keys
            assert task["Driver"] == "exec" and isinstance(task["Config"]["command"], str)
            assert all(isinstance(arg, str) for arg in task["Config"]["args"])
            assert all(isinstance(value, str) for value in task["Env"].values())
            assert set(task["RestartPolicy"]) == {"Attempts", "Interval", "Delay", "Mode"}
            assert task["RestartPolicy"]["Mode"] in ("delay", "fail")
            assert task.get("Lifecycle", {}).get("Hook", "prestart") in ("prestart", "poststart", "poststop")
    assert nomad_validation_errors(job) == []
