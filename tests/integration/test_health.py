"""Health probes through a real daemon (SPEC §8)."""

import os

import pytest

from tests.integration.harness import pids_with_marker
from tests.integration.test_dependencies import config


def probe_switch(kepler, **check):
    """A service whose probe passes while the file ``healthy`` exists; probes are counted."""
    return {
        "command": ["sleep", "1000"],
        "healthcheck": {"test": ["sh", "-c", "echo probe >> probes; test -f healthy"], "interval": "50ms",
                        **check},
    }


def probes(kepler):
    path = os.path.join(kepler.workdir, "probes")
    return open(path).read().count("probe") if os.path.exists(path) else 0


def test_a_passing_probe_makes_the_service_healthy(kepler):
    kepler.write("healthy", "")
    config(kepler, {"web": probe_switch(kepler)})
    kepler.ctl("start", "-d")
    row = kepler.wait_status("web", "healthy")
    assert row["health"] == "healthy"
    assert "(healthy)" in kepler.ctl("ps").stdout
    last = kepler.inspect("web")["services"]["web"]["state"]["last_probe"]
    assert last["passed"] is True and last["exit_code"] == 0 and last["at"] > 0


def test_probe_output_is_kept_truncated_in_inspect(kepler):
    config(kepler, {"web": {"command": ["sleep", "1000"], "healthcheck": {
        "test": ["sh", "-c", "echo checking the thing; head -c 10000 /dev/zero | tr '\\\\0' x; exit 1"],
        "interval": "50ms", "retries": 1}}})
    kepler.ctl("start", "-d")
    kepler.wait_status("web", "unhealthy")
    last = kepler.inspect("web")["services"]["web"]["state"]["last_probe"]
    assert last["output"].startswith("checking the thing\n") and len(last["output"]) <= 4096
    assert last["exit_code"] == 1 and last["passed"] is False


def test_a_probe_that_times_out_fails_and_is_killed(kepler):
    marker = "kt-probe-marker"
    config(kepler, {"web": {"command": ["sleep", "1000"], "healthcheck": {
        "test": ["bash", "-c", f"exec -a {marker} sleep 1000"], "interval": "50ms", "timeout": "200ms",
        "retries": 1}}})
    kepler.ctl("start", "-d")
    kepler.wait_status("web", "unhealthy")
    assert "timed out after 0.2s" in kepler.inspect("web")["services"]["web"]["state"]["last_probe"]["output"]
    kepler.ctl("stop")
    assert pids_with_marker(marker) == []


@pytest.mark.parametrize("test", [
    ["CMD", "test", "-f", "healthy"],
    ["CMD-SHELL", "test -f healthy && true"],
    "test -f healthy",
])
def test_docker_forms_of_the_probe(kepler, test):
    kepler.write("healthy", "")
    config(kepler, {"web": {"command": ["sleep", "1000"], "healthcheck": {"test": test, "interval": "50ms"}}})
    kepler.ctl("start", "-d")
    kepler.wait_status("web", "healthy")


@pytest.mark.parametrize("disabled", [{"test": ["NONE"]}, {"test": ["false"], "disable": True}])
def test_a_disabled_check_never_probes(kepler, disabled):
    config(kepler, {"web": {"command": ["sleep", "1000"], "healthcheck": disabled}})
    kepler.ctl("start", "-d")
    row = kepler.wait_status("web", "running")
    assert row["health"] is None
    assert kepler.inspect("web")["services"]["web"]["config"]["healthcheck"] is None


def test_probe_runs_with_the_service_environment_and_working_dir(kepler):
    os.makedirs(os.path.join(kepler.workdir, "site"))
    config(kepler, {"web": {"command": ["sleep", "1000"], "working_dir": "site", "environment": ["MODE=probe-env"],
                            "healthcheck": {"test": ["sh", "-c", "(echo $MODE; pwd) > seen.new; mv seen.new seen"],
                                            "interval": "50ms"}}})
    kepler.ctl("start", "-d")
    kepler.wait_status("web", "healthy")
    # Written whole and renamed: the next probe (every 50 ms) never shows a half-written file.
    seen = open(os.path.join(kepler.workdir, "site", "seen")).read().split()
    assert seen == ["probe-env", os.path.join(kepler.workdir, "site")]
