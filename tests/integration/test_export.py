"""keplerctl export through the real daemon: bakes without starting, writes files, warns, --strict."""

import json
import os
import shutil
import subprocess

from tests.integration import test_security_owners as owners

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


def test_bad_export_options_are_one_line_errors(kepler):
    kepler.config(CONFIG)
    bad_prefix = kepler.ctl("export", "--format", "systemd", "--prefix", "my shop", check=False)
    assert bad_prefix.returncode == 1
    assert bad_prefix.stderr == "keplerctl: invalid --prefix 'my shop': use letters, digits, '_', '.' and '-'\n"
    bad_version = kepler.ctl("export", "--format", "systemd", "--systemd-version", "new", check=False)
    assert bad_version.returncode == 1 and "invalid version 'new'" in bad_version.stderr
    kepler.write("taken", "a file, not a directory")
    taken = kepler.ctl("export", "--format", "nomad", "--output", "taken", check=False)
    assert taken.returncode == 1 and taken.stderr.startswith("keplerctl: cannot write to taken: ")


members = owners.members  # the daemon with socket-group members alice and bob (SPEC §21)


def test_a_member_exports_its_own_config_and_not_another_members(members):
    path = owners.write_config(members, "alice", {"web": {"command": ["/bin/sleep", "100"]}})
    alice = owners.ctl(members, "alice", "export", "--format", "systemd", check=True)
    out = os.path.join(os.path.dirname(path), "kepler-export")
    assert os.stat(os.path.join(out, "alice-web.service")).st_uid == owners.uid(members.people["alice"])
    assert alice.stdout.split()[0] == "kepler-export/alice-web.service"
    bob = owners.ctl(members, "bob", "-f", path, "export", "--format", "systemd", "--output", "stolen")
    assert bob.returncode == 1 and "permission denied" in bob.stderr
    assert not os.path.exists(os.path.join(members.workdir, "bob", "stolen"))


def test_a_unit_of_a_removed_service_is_deleted_by_the_next_export(kepler):
    kepler.config(CONFIG)
    out = os.path.join(kepler.workdir, "units")
    kepler.write("units/mine.service", "[Service]\nExecStart=/bin/true\n")  # not ours: left alone
    kepler.ctl("export", "--format", "systemd", "--output", out, "--prefix", "shop")
    kepler.config("services:\n  db: {command: [/bin/sleep, '1000']}\n")
    kepler.ctl("recreate")
    kepler.ctl("export", "--format", "systemd", "--output", out, "--prefix", "shop")
    assert sorted(os.listdir(out)) == ["mine.service", "shop-db.service", "shop.target"]
