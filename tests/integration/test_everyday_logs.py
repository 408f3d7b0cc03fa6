"""Logs a daily user asks for (issue #16): by time, by pattern, hook logs by name."""

import os
import time
from datetime import UTC, datetime

from tests.integration.harness import wait_for
from tests.integration.test_logs import logs_dir, texts


def _plant_history(kepler):
    """Give web four stored lines, 3 h, 2 h, 1 h and 1 min old; return their stamps."""
    kepler.config("""
        services:
          web:
            command: ["sleep", "1000"]
    """)
    kepler.ctl("start", "-d", "--wait")
    now = int(time.time() * 1000)
    stamps = [now - hours * 3_600_000 for hours in (3, 2, 1)] + [now - 60_000]
    words = ["boot ok", "error: disk", "request ok", "error: net"]
    with open(os.path.join(logs_dir(kepler), "web.stdout.log"), "a") as file:
        file.writelines(f"{stamp} {word}\n" for stamp, word in zip(stamps, words))
    return stamps


def _iso(stamp_ms):
    return datetime.fromtimestamp(stamp_ms / 1000, tz=UTC).isoformat()


def test_logs_since_until_and_grep_are_filtered_in_the_daemon(kepler):
    stamps = _plant_history(kepler)
    assert texts(kepler.logs("--since", "90m")) == ["request ok", "error: net"]
    assert texts(kepler.logs("--since", _iso(stamps[1]))) == ["error: disk", "request ok", "error: net"]
    assert texts(kepler.logs("--until", _iso(stamps[1]))) == ["boot ok", "error: disk"]
    assert texts(kepler.logs("--since", "150m", "--until", "30m")) == ["error: disk", "request ok"]
    assert texts(kepler.logs("--grep", "^error")) == ["error: disk", "error: net"]
    assert texts(kepler.logs("--grep", "ok", "--tail", "1")) == ["request ok"]
    assert texts(kepler.logs("--grep", "error", "--head", "1")) == ["error: disk"]
    bad = kepler.ctl("logs", "--grep", "(", check=False)
    assert bad.returncode == 1 and "--grep: invalid regular expression" in bad.stderr
    assert kepler.ctl("logs", "--since", "yesterday", check=False).returncode == 1


def test_hook_logs_are_selected_by_name(kepler):
    kepler.config("""
        kepler:
          hooks:
            on_init: {run: "echo global init"}
        services:
          web:
            command: ["sh", "-c", "echo serving; exec sleep 1000"]
            hooks:
              pre_start: {run: "echo migrating"}
    """)
    kepler.ctl("start", "-d", "--wait")
    wait_for(lambda: "serving" in texts(kepler.logs("web")), message="web's first line")
    assert kepler.logs("web.pre_start") == ["web.pre_start | migrating"]
    assert kepler.logs("global.on_init") == ["global.on_init | global init"]
    unknown = kepler.ctl("logs", "web.post_stop", check=False)
    assert unknown.returncode == 1 and "no such service or hook log: web.post_stop" in unknown.stderr
