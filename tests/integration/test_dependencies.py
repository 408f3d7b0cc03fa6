"""Dependencies through a real daemon: order, conditions, timeouts, clusters, propagation."""

import json
import os

from tests.integration.test_attached_and_logs import Attached


def config(kepler, services, **kepler_settings):
    """Write a config from Python data (JSON is YAML) and return its path."""
    document = {"services": services}
    if kepler_settings:
        document["kepler"] = kepler_settings
    return kepler.config(json.dumps(document))


def ready_service(name, depends_on=None):
    """A service that records when it started and becomes healthy once it has."""
    service = {
        "command": ["sh", "-c", f"echo {name} >> order; touch {name}.ready; exec sleep 1000"],
        "healthcheck": {"test": ["test", "-f", f"{name}.ready"], "interval": "50ms"},
    }
    if depends_on:
        service["depends_on"] = {dep: {"condition": "service_healthy"} for dep in depends_on}
    return service


def start_order(kepler):
    with open(os.path.join(kepler.workdir, "order")) as file:
        return file.read().split()


def test_chain_starts_in_dependency_order(kepler):
    config(kepler, {"c": ready_service("c", ["b"]), "b": ready_service("b", ["a"]), "a": ready_service("a")})
    kepler.ctl("start", "-d")
    kepler.wait_status("c", "healthy")
    assert start_order(kepler) == ["a", "b", "c"]


def test_services_of_one_level_start_in_parallel(kepler):
    slow = ready_service("slow", ["a"])
    slow["healthcheck"]["start_period"] = "1h"  # never healthy while this test runs
    config(kepler, {"a": ready_service("a"), "slow": slow, "fast": ready_service("fast", ["a"]),
                    "last": ready_service("last", ["slow", "fast"])})
    kepler.ctl("start", "-d")
    kepler.wait_status("fast", "healthy")
    assert start_order(kepler)[0] == "a"
    assert set(start_order(kepler)) == {"a", "slow", "fast"}, "fast did not wait for its sibling"
    assert kepler.ps()["last"]["status"] == "starting"
    state = kepler.inspect("last")["services"]["last"]["state"]
    assert state["waiting_on"] == ["slow (service_healthy)"]


def test_stop_runs_in_reverse_dependency_order(kepler):
    def trapping(name, depends_on=None):
        service = {"command": ["sh", "-c", f"trap 'echo {name} >> stopped; exit 0' TERM; "
                                           f"while :; do sleep 0.05; done"]}
        if depends_on:
            service["depends_on"] = depends_on
        return service

    config(kepler, {"a": trapping("a"), "b": trapping("b", ["a"]), "c": trapping("c", ["b"])})
    kepler.ctl("start", "-d", "--wait")
    kepler.ctl("stop")
    with open(os.path.join(kepler.workdir, "stopped")) as file:
        assert file.read().split() == ["c", "b", "a"]


def _one_shot(code):
    return {"command": ["sh", "-c", f"exit {code}"]}


def _waiter(dependency, condition, **edge):
    return {"command": ["sleep", "1000"], "depends_on": {dependency: {"condition": condition, **edge}}}


def test_attached_mode_ends_when_a_dependent_can_never_start(kepler):
    config(kepler, {"migrate": _one_shot(1), "app": _waiter("migrate", "service_completed_successfully")})
    attached = Attached(kepler, "start")
    try:
        assert attached.finish() == 0
    finally:
        attached.kill()
    assert any("app: failed: dependency migrate" in line for line in attached.lines)


def test_wait_returns_while_deferred_services_still_wait(kepler):
    config(kepler, {"web": {"command": ["sleep", "1000"]},
                    "alerter": _waiter("web", "service_failed")})
    kepler.ctl("start", "-d", "--wait")
    services = kepler.ps()
    assert services["web"]["status"] == "running"
    assert services["alerter"]["status"] == "starting"
    inspected = kepler.inspect()["services"]
    assert inspected["web"]["effective_wait"] is True and inspected["alerter"]["effective_wait"] is False


def test_wait_reports_failed_startup_services(kepler):
    config(kepler, {"ok": {"command": ["sleep", "1000"]}, "broken": {"command": ["no-such-program-kt"],
                                                                   "hooks": {"pre_start": {"run": "true"}}},
                    "job": _one_shot(4), "needs_job": _waiter("job", "service_completed_successfully")})
    result = kepler.ctl("start", "-d", "--wait", check=False)
    assert result.returncode == 1
    # The wait fails at the first failure it sees, whichever of these it is.
    assert ("broken failed: program not found: no-such-program-kt" in result.stderr or
            "job exited with code 4 before it was running" in result.stderr or
            "needs_job failed: dependency job (service_completed_successfully) can never be satisfied"
            in result.stderr), result.stderr


def test_wait_timeout_names_what_is_still_starting(kepler):
    config(kepler, {"never": {"command": ["sleep", "1000"]},
                    "blocked": _waiter("never", "service_completed_successfully")})
    result = kepler.ctl("start", "-d", "--wait", "--timeout", "1s", check=False)
    assert result.returncode == 1
    assert "timed out after 1s waiting for: blocked" in result.stderr
    assert kepler.status("blocked") == "starting", "services keep starting after the timeout"


def test_wait_overrides_take_services_out_of_the_startup_cluster(kepler):
    blocked_service = _waiter("never", "service_completed_successfully")
    blocked_service["wait"] = False
    blocked_edge = _waiter("never", "service_completed_successfully", wait=False)
    config(kepler, {"never": {"command": ["sleep", "1000"]}, "blocked_service": blocked_service,
                    "blocked_edge": blocked_edge, "downstream": _waiter("blocked_edge", "service_started")})
    kepler.ctl("start", "-d", "--wait", "--timeout", "20s")
    inspected = kepler.inspect()["services"]
    assert [name for name, item in inspected.items() if not item["effective_wait"]] == [
        "blocked_service", "blocked_edge", "downstream"]


def test_manual_restart_propagates_to_restart_true_dependents(kepler):
    config(kepler, {"db": {"command": ["sleep", "1000"]},
                    "web": _waiter("db", "service_started", restart=True),
                    "batch": _waiter("db", "service_started")})
    kepler.ctl("start", "-d", "--wait")
    before = kepler.ps()
    kepler.ctl("restart", "-d", "--wait", "db")
    after = kepler.wait_status("web", "running")
    assert after["pid"] != before["web"]["pid"]
    assert kepler.ps()["batch"]["pid"] == before["batch"]["pid"]


def test_start_named_service_starts_its_dependencies(kepler):
    config(kepler, {"db": {"command": ["sleep", "1000"]}, "web": _waiter("db", "service_started"),
                    "other": {"command": ["sleep", "1000"]}})
    kepler.ctl("start", "-d", "--wait", "web")
    services = kepler.ps()
    assert services["db"]["status"] == "running" and services["web"]["status"] == "running"
    assert services["other"]["status"] == "stopped"


def test_no_deps_starts_only_the_named_service_without_waiting(kepler):
    config(kepler, {"db": {"command": ["sleep", "1000"]}, "web": _waiter("db", "service_healthy")})
    kepler.ctl("start", "-d", "--wait", "--no-deps", "web")
    services = kepler.ps()
    assert services["web"]["status"] == "running" and services["db"]["status"] == "stopped"


def test_cycles_are_rejected_before_anything_starts(kepler):
    config(kepler, {"a": _waiter("b", "service_started"), "b": _waiter("a", "service_started")})
    result = kepler.ctl("start", "-d", check=False)
    assert result.returncode == 1 and "dependency cycle: a -> b -> a" in result.stderr
    assert kepler.ps() == {}
