"""keplerctl export through the real daemon: bakes without starting, writes files, warns, --strict."""

import json
import os
import shutil
import subprocess

CONFIG = """
    services:
      db:
        command: ["/bin/sleep", "1000"]
        environment: {GREETING: "hello world", RATE: "100%"}
      web:
        command: ["sh", "-c", "exec sleep 1000"]
        depends_on: {db: {condition: service_started, restart: true}}
        restart:
          policy: always
          watch: ["*.py"]
"""


def _files(directory):
    return {name: open(os.path.join(directory, name)).read() for name in sorted(os.listdir(directory))}


def test_export_bakes_the_config_without_starting_it_and_writes_units(kepler):
    kepler.config(CONFIG)
    out = os.path.join(kepler.workdir, "units")
    result = kepler.ctl("export", "--format", "systemd", "--output", out, "--prefix", "shop")
    assert result.stdout.split() == [os.path.join(out, name) for name in
                                     ("shop-db.service", "shop-web.service", "shop.target")]
    assert "keplerctl: warning: services.web.restart.watch: no systemd equivalent, dropped" in result.stderr
    assert {row["status"] for row in kepler.ps().values()} == {"stopped"}
    files = _files(out)
    assert 'Environment="GREETING=hello world"' in files["shop-db.service"]
    assert 'Environment="RATE=100%%"' in files["shop-db.service"]
    assert "BindsTo=shop-db.service" in files["shop-web.service"]
    assert f"ExecStart={shutil.which('sh')} -c " in files["shop-web.service"]
    verified = subprocess.run(["systemd-analyze", "verify", "--man=no", *sorted(files)], cwd=out,
                              capture_output=True, text=True, timeout=120)
    assert verified.returncode == 0 and verified.stderr == "", verified.stderr


def test_export_is_deterministic_and_leaves_running_services_alone(kepler):
    kepler.config(CONFIG)
    kepler.ctl("start", "-d")
    pid = kepler.wait_status("db", "running")["pid"]
    first = os.path.join(kepler.workdir, "first")
    second = os.path.join(kepler.workdir, "second")
    kepler.ctl("export", "--format", "nomad", "--output", first)
    kepler.ctl("export", "--format", "nomad", "--output", second)
    assert _files(first) == _files(second)
    assert kepler.ps()["db"]["pid"] == pid and kepler.ps()["db"]["status"] == "running"


def test_strict_export_fails_naming_every_lost_setting_and_writes_nothing(kepler):
    kepler.config(CONFIG)
    out = os.path.join(kepler.workdir, "strict")
    result = kepler.ctl("export", "--format", "systemd", "--strict", "--output", out, check=False)
    assert result.returncode == 1
    assert "keplerctl: error: services.web.restart.watch: no systemd equivalent, dropped" in result.stderr
    assert "(--strict): nothing written" in result.stderr.splitlines()[-1]
    assert not os.path.exists(out)


def test_nomad_export_json_report_and_job(kepler):
    kepler.config(CONFIG)
    result = kepler.ctl("export", "--format", "nomad", "--json", "--output", "job")
    report = json.loads(result.stdout)
    prefix = os.path.basename(kepler.workdir)
    path = os.path.join("job", f"{prefix}.nomad.json")
    assert report["files"] == [path]
    assert "services.web.restart.watch: no Nomad equivalent, dropped" in report["warnings"]
    with open(os.path.join(kepler.workdir, path)) as stream:
        job = json.load(stream)["Job"]
    assert job["ID"] == prefix
    db = next(group for group in job["TaskGroups"] if group["Name"] == "db")["Tasks"][0]
    assert db["Config"] == {"command": "/bin/sleep", "args": ["1000"]}
    assert db["Env"] == {"GREETING": "hello world", "RATE": "100%"}


def test_export_of_an_invalid_config_fails_with_the_located_error(kepler):
    kepler.config("services:\n  web: {command: [/bin/true], restart: {policy: sometimes}}\n")
    result = kepler.ctl("export", "--format", "systemd", check=False)
    assert result.returncode == 1
    assert "services.web.restart.policy" in result.stderr
    assert not os.path.exists(os.path.join(kepler.workdir, "kepler-export"))
