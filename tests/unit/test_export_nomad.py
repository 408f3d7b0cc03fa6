"""Export to a Nomad JSON job, field by field, against Nomad's documented JSON job specification."""

import json

from keplerd.export import Options, export
from tests.unit.export_support import bake_text, nomad_validation_errors

SECOND = 1_000_000_000


def nomad(snapshot, **options):
    result = export(snapshot, "nomad", Options(prefix="shop", **options))
    return json.loads(result.files["shop.nomad.json"])["Job"], result


def group(job, name):
    return next(item for item in job["TaskGroups"] if item["Name"] == name)


def task(job, group_name, task_name=None):
    return next(item for item in group(job, group_name)["Tasks"] if item["Name"] == (task_name or group_name))


def warned(result):
    return {path for path, _ in result.warnings}


def test_one_job_one_group_per_service_with_its_task(tmp_path):
    snapshot = bake_text(tmp_path, """
        services:
          web:
            command: [/bin/echo, "two words", "${X}"]
            environment: {B: "2", A: "1"}
            user: www-data
            stop_signal: SIGINT
            stop_grace_period: 3s
    """)
    job, result = nomad(snapshot)
    assert list(json.loads(result.files["shop.nomad.json"])) == ["Job"]
    assert (job["ID"], job["Name"], job["Type"], job["Datacenters"]) == ("shop", "shop", "service", ["*"])
    assert [item["Name"] for item in job["TaskGroups"]] == ["web"]
    web = task(job, "web")
    assert group(job, "web")["Count"] == 1
    assert web["Driver"] == "exec"
    assert web["Config"] == {"command": "/bin/echo", "args": ["two words", "${X}"]}
    assert web["Env"] == {"A": "1", "B": "2"}
    assert web["User"] == "www-data"
    assert web["KillSignal"] == "SIGINT"
    assert web["KillTimeout"] == 3 * SECOND
    assert web["Resources"] == {"CPU": 100, "MemoryMB": 300}
    assert "services.web.command" in warned(result)  # Nomad interpolates ${X}
    assert "services.web.working_dir" in warned(result)  # exec has no work_dir


def test_raw_exec_has_a_working_dir_and_a_bare_program_is_resolved(tmp_path):
    snapshot = bake_text(tmp_path, "services:\n  web: {command: [sh, -c, 'true'], working_dir: /srv}\n")
    job, result = nomad(snapshot, driver="raw_exec", resolve=lambda name, path: f"/usr/bin/{name}")
    web = task(job, "web")
    assert web["Driver"] == "raw_exec"
    assert web["Config"] == {"command": "/usr/bin/sh", "args": ["-c", "true"], "work_dir": "/srv"}
    assert not warned(result) & {"services.web.working_dir", "services.web.command"}


def test_an_unresolved_bare_program_is_a_warning(tmp_path):
    snapshot = bake_text(tmp_path, "services:\n  web: {command: [no-such-program]}\n")
    job, result = nomad(snapshot, resolve=lambda name, path: None)
    assert task(job, "web")["Config"]["command"] == "no-such-program"
    assert "services.web.command" in warned(result)


def test_restart_policies(tmp_path):
    snapshot = bake_text(tmp_path, """
        services:
          once: {command: [/bin/true]}
          always: {command: [/bin/true], restart: {policy: always, backoff: 0}}
          capped: {command: [/bin/true], restart: {policy: on-failure, backoff: 2s, max_backoff: 2s, max_retries: 3}}
    """)
    job, result = nomad(snapshot)
    assert task(job, "once")["RestartPolicy"] == {"Attempts": 0, "Interval": 10 * SECOND, "Delay": 0, "Mode": "fail"}
    assert group(job, "once")["ReschedulePolicy"] == {"Attempts": 0, "Unlimited": False}
    assert task(job, "always")["RestartPolicy"] == {"Attempts": 10, "Interval": 10 * 40 * SECOND, "Delay": 0,
                                                    "Mode": "delay"}
    assert "ReschedulePolicy" not in group(job, "always")
    assert task(job, "capped")["RestartPolicy"] == {"Attempts": 3, "Interval": 3 * 12 * SECOND,
                                                    "Delay": 2 * SECOND, "Mode": "fail"}
    assert "services.capped.restart.policy" in warned(result)  # on-failure: exit 0 restarts too
    assert "services.always.restart.max_backoff" not in warned(result)  # no back-off: nothing lost


def test_script_check_and_its_service(tmp_path):
    snapshot = bake_text(tmp_path, """
        services:
          db:
            command: [/bin/sleep, "100"]
            healthcheck: {test: ["CMD", "/bin/true", "-x"], interval: 2s, timeout: 1s, retries: 5}
    """)
    job, result = nomad(snapshot)
    service, = task(job, "db")["Services"]
    assert service["Name"] == "db" and service["Provider"] == "consul"
    assert service["Checks"] == [{"Name": "db-health", "Type": "script", "Command": "/bin/true", "Args": ["-x"],
                                  "Interval": 2 * SECOND, "Timeout": SECOND}]
    assert "services.db.healthcheck.retries" in warned(result)  # Consul counts failures of tcp/http checks only
    assert nomad_validation_errors(job) == []


def test_http_and_tcp_checks_use_a_static_port(tmp_path):
    snapshot = bake_text(tmp_path, "services:\n  web_app: {command: [/bin/true]}\n  db: {command: [/bin/true]}\n")
    health = {"interval": 1.0, "timeout": 1.0, "retries": 2, "start_period": 0.0}
    snapshot["services"]["web_app"]["healthcheck"] = {**health, "http": "http://127.0.0.1:8080/health?full=1"}
    snapshot["services"]["db"]["healthcheck"] = {**health, "tcp": "10.0.0.5:5432"}
    snapshot["services"]["db"]["restart"].update(policy="always", on_unhealthy=True)
    job, result = nomad(snapshot)
    web, = task(job, "web_app")["Services"]
    assert web["Name"] == "web-app" and web["PortLabel"] == "health"
    assert web["Checks"][0]["Type"] == "http"
    assert web["Checks"][0]["Path"] == "/health?full=1" and web["Checks"][0]["Protocol"] == "http"
    assert group(job, "web_app")["Networks"] == [{"ReservedPorts": [{"Label": "health", "Value": 8080}]}]
    assert "services.web_app.healthcheck.http" in warned(result)  # loopback: checked on the node's address
    db, = task(job, "db")["Services"]
    assert db["Checks"][0]["Type"] == "tcp" and db["Checks"][0]["FailuresBeforeCritical"] == 2
    assert db["Checks"][0]["CheckRestart"] == {"Limit": 1, "Grace": 0, "IgnoreWarnings": False}
    assert group(job, "db")["Networks"] == [{"ReservedPorts": [{"Label": "health", "Value": 5432}]}]
    assert "services.db.healthcheck.tcp" not in warned(result)


def test_restart_on_unhealthy_is_a_check_restart_after_start_period(tmp_path):
    snapshot = bake_text(tmp_path, """
        services:
          db:
            command: [/bin/sleep, "100"]
            restart: always
            healthcheck: {test: [/bin/true], start_period: 5s}
    """)
    snapshot["services"]["db"]["restart"]["on_unhealthy"] = True
    job, result = nomad(snapshot)
    check, = task(job, "db")["Services"][0]["Checks"]
    assert check["CheckRestart"] == {"Limit": 3, "Grace": 5 * SECOND, "IgnoreWarnings": False}  # script: retries
    assert {"services.db.restart.on_unhealthy", "services.db.healthcheck.start_period",
            "services.db.healthcheck.retries"} <= result.mapped
    assert not warned(result) & {"services.db.healthcheck.retries", "services.db.healthcheck.start_period"}


def test_replicas_are_the_group_count_and_limits_the_resources(tmp_path):
    snapshot = bake_text(tmp_path, "services:\n  web: {command: [/bin/true], limits: {memory: 1G}}\n")
    web = snapshot["services"]["web"]
    web["replicas"] = 3
    web["limits"].update(memory_max=(256 << 20) + 1, cpus=2, pids_max=10)
    job, result = nomad(snapshot)
    assert group(job, "web")["Count"] == 3
    assert task(job, "web")["Env"]["KEPLER_REPLICAS"] == "3"
    assert "services.web.replicas" in warned(result)
    assert task(job, "web")["Resources"] == {"CPU": 100, "MemoryMB": 257}
    assert {"services.web.limits.memory", "services.web.limits.cpus", "services.web.limits.pids_max"} <= warned(result)


def test_a_one_shot_awaited_only_by_one_service_becomes_its_prestart_task(tmp_path):
    snapshot = bake_text(tmp_path, """
        services:
          migrate: {command: [/bin/true]}
          db: {command: [/bin/sleep, "100"]}
          web:
            command: [/bin/sleep, "100"]
            depends_on:
              migrate: {condition: service_completed_successfully}
              db: {condition: service_started}
    """)
    job, result = nomad(snapshot)
    assert sorted(item["Name"] for item in job["TaskGroups"]) == ["db", "web"]
    assert [item["Name"] for item in group(job, "web")["Tasks"]] == ["migrate", "web"]
    assert task(job, "web", "migrate")["Lifecycle"] == {"Hook": "prestart", "Sidecar": False}
    assert "Lifecycle" not in task(job, "web")
    assert "services.web.depends_on.migrate" in result.mapped
    assert "services.web.depends_on.db" in warned(result)  # no ordering between groups


def test_hooks_become_lifecycle_tasks(tmp_path):
    snapshot = bake_text(tmp_path, """
        services:
          web:
            command: [/bin/sleep, "100"]
            environment: {A: "1"}
            hooks:
              pre_start: {command: [/bin/echo, pre], environment: {B: "2"}}
              post_start: {command: [/bin/echo, post]}
              post_stop: {command: [/bin/echo, stopped]}
              pre_stop: {command: [/bin/echo, stopping]}
    """)
    job, result = nomad(snapshot)
    names = [item["Name"] for item in group(job, "web")["Tasks"]]
    assert names == ["web-post-start", "web-post-stop", "web-pre-start", "web"]
    pre = task(job, "web", "web-pre-start")
    assert pre["Lifecycle"] == {"Hook": "prestart", "Sidecar": False}
    assert pre["Env"] == {"A": "1", "B": "2"}
    assert pre["Config"] == {"command": "/bin/echo", "args": ["pre"]}
    assert task(job, "web", "web-post-start")["Lifecycle"]["Hook"] == "poststart"
    assert task(job, "web", "web-post-stop")["Lifecycle"]["Hook"] == "poststop"
    assert "services.web.hooks.pre_stop" in warned(result)


def test_log_bound_becomes_log_config(tmp_path):
    snapshot = bake_text(tmp_path, "services:\n  web: {command: [/bin/true], logs: {max_size: 20M}}\n")
    job, result = nomad(snapshot)
    assert task(job, "web")["LogConfig"] == {"MaxFiles": 2, "MaxFileSizeMB": 10}
    assert "services.web.logs.max_size" in result.mapped


def test_export_is_deterministic(tmp_path):
    text = "services:\n  b: {command: [/bin/true], environment: {Z: '1', A: '2'}}\n  a: {command: [/bin/true]}\n"
    first = export(bake_text(tmp_path, text), "nomad", Options(prefix="shop"))
    second = export(bake_text(tmp_path, text), "nomad", Options(prefix="shop"))
    assert first.files == second.files


def test_the_local_systemd_version_is_read_from_systemctl():
    import shutil
    import subprocess

    from keplerd.cli.export import local_systemd_version

    systemctl = shutil.which("systemctl")
    assert systemctl, "systemctl is missing: `make test-tools` installs it (Debian package systemd)"
    first_line = subprocess.run([systemctl, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    assert local_systemd_version() == int(first_line.split()[1])


def test_keplerctl_export_imports_no_heavy_module():
    import subprocess
    import sys

    code = ("import sys; from keplerd.cli import main, export; import keplerd.export.systemd, keplerd.export.nomad; "
            "print(','.join(m for m in ('gevent', 'lupa', 'marshmallow', 'yaml', 'psutil') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_values_nomad_would_reject_are_raised_to_its_minimums_with_a_warning(tmp_path):
    snapshot = bake_text(tmp_path, """
        services:
          web:
            command: [/bin/true]
            restart: {policy: on-failure, backoff: 1m, max_backoff: 2s, max_retries: 3}
            logs: {max_size: 1G}
          db:
            command: [/bin/true]
            healthcheck: {test: [/bin/true], interval: 200ms, timeout: 100ms, retries: 1}
            restart: {policy: always, backoff: 0}
    """)
    snapshot["services"]["web"]["limits"]["memory_max"] = 1 << 20
    job, result = nomad(snapshot)
    assert nomad_validation_errors(job) == []
    assert task(job, "web")["Resources"]["MemoryMB"] == 10
    assert group(job, "web")["EphemeralDisk"] == {"SizeMB": 1025}
    check, = task(job, "db")["Services"][0]["Checks"]
    assert (check["Interval"], check["Timeout"]) == (SECOND, SECOND)
    assert {"services.web.limits.memory_max", "services.db.healthcheck.interval",
            "services.db.healthcheck.timeout"} <= warned(result)
    assert "services.db.healthcheck.retries" in result.mapped
