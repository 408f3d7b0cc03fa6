"""What a new user trips on at the command line (issue #16): ps words, error lines, flags, make run."""

import json
import os
import re

from tests.integration.harness import wait_for


def test_ps_shows_a_back_off_without_the_dead_pid(kepler):
    kepler.config("""
        services:
          crash:
            command: ["sh", "-c", "exit 3"]
            restart: {policy: on-failure, backoff: 5s}
    """)
    kepler.ctl("start", "-d")
    row = wait_for(lambda: kepler.ps()["crash"].get("backoff_until") and kepler.ps()["crash"],
                   message="crash to be in its back-off")
    assert row["status"] == "starting" and row["pid"] is None and row["retries"] >= 1
    line = [line for line in kepler.ctl("ps").stdout.splitlines() if line.startswith("crash")][0]
    assert re.search(r"Restarting in [1-5]s \(\d+ retr(y|ies)\)\s+-$", line), line


def test_ps_says_a_service_gave_up(kepler):
    kepler.config("""
        services:
          crash:
            command: ["sh", "-c", "exit 1"]
            restart: {policy: on-failure, backoff: 10ms, max_retries: 2}
    """)
    kepler.ctl("start", "-d")
    kepler.wait_status("crash", "exited")
    line = [line for line in kepler.ctl("ps").stdout.splitlines() if line.startswith("crash")][0]
    assert re.search(r"Exited \(1\) \d+s ago, gave up after 2 retries\s+-$", line), line


def test_ps_of_a_config_with_nothing_to_show_says_so(kepler):
    kepler.config("services:\n  web:\n    command: [sleep, '1000']\n")
    result = kepler.ctl("ps")
    assert result.stdout == "no services\n" and result.returncode == 0
    assert json.loads(kepler.ctl("ps", "--json").stdout) == []


def test_logs_dash_f_with_a_file_name_points_at_the_file_flag(kepler):
    result = kepler.ctl("logs", "-f", check=False)
    assert result.returncode == 1
    assert "keplerctl -f FILE logs" in result.stderr and "--file FILE" in result.stderr
    assert "(use -f FILE)" not in result.stderr
    kepler.config("services:\n  web:\n    command: [sleep, '1000']\n", name="other.yaml")
    result = kepler.ctl("logs", "-f", "other.yaml", check=False)
    assert result.returncode == 1 and "keplerctl -f other.yaml logs" in result.stderr, result.stderr


def test_every_line_of_a_rejected_bake_is_prefixed(kepler):
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
    lines = result.stderr.splitlines()
    assert result.returncode == 1 and len(lines) >= 2
    assert all(line.startswith("keplerctl: ") for line in lines), lines


def test_help_and_flags_say_what_they_do(kepler):
    help_text = " ".join(kepler.ctl("start", "--help").stdout.split())
    assert "implies -d" in help_text
    for command in (["prune"], ["daemon", "status"]):
        result = kepler.ctl(*command, "-f", "kepler.yaml", check=False)
        assert result.returncode == 1 and "unrecognized arguments" in result.stderr, command
        assert "--file" not in kepler.ctl(*command, "--help").stdout


def test_a_missing_program_is_a_located_bake_error_looked_up_in_the_services_path(kepler):
    tools = os.path.join(kepler.workdir, "tools")
    os.makedirs(tools)
    tool = kepler.write("mytool", "#!/bin/sh\nexec sleep 1000\n", directory=tools)
    os.chmod(tool, 0o755)
    kepler.config("""
        services:
          web:
            command: ["no-such-program-kt"]
          found:
            command: ["mytool"]
            environment: ["PATH=tools:/usr/bin:/bin"]
    """)
    error = "kepler.yaml: services.web.command: program not found: no-such-program-kt"
    result = kepler.ctl("start", "-d", check=False)
    assert result.returncode == 1 and f"keplerctl: {error}" in result.stderr, result.stderr
    assert "services.found" not in result.stderr, "found in its own PATH"
    check = kepler.ctl("config", "check", check=False)
    assert check.returncode == 1 and f"keplerctl: {error}" in check.stderr, check.stderr
    assert kepler.ctl("ps").stdout == "no services\n"
