"""Dependency graph helpers (SPEC §7)."""

import graphlib

import pytest

from keplerd.model.graph import (
    dependencies_closure,
    effective_wait,
    find_cycle,
    find_cycles,
    is_startup_condition,
    topological_order,
)


def test_acyclic_graph_has_no_cycle():
    assert find_cycle({"a": [], "b": ["a"], "c": ["a", "b"]}) is None


def test_cycle_is_given_from_its_first_service_back_to_it():
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]


def test_self_dependency_is_a_cycle():
    assert find_cycle({"a": ["a"]}) == ["a", "a"]


def test_cycle_below_an_acyclic_entry_is_found_without_the_entry():
    assert find_cycle({"top": ["x"], "x": ["y"], "y": ["x"]}) == ["x", "y", "x"]


def test_undefined_dependencies_are_ignored():
    assert find_cycle({"a": ["missing"]}) is None


def test_find_cycles_reports_each_independent_cycle():
    edges = {"a": ["b"], "b": ["a"], "c": ["d"], "d": ["c"], "e": []}
    assert find_cycles(edges) == [["a", "b", "a"], ["c", "d", "c"]]


def test_topological_order_puts_dependencies_first():
    edges = {"web": ["api"], "api": ["db"], "db": []}
    assert topological_order(edges, edges) == ["db", "api", "web"]


def test_topological_order_is_stable_by_file_order_among_ready_services():
    services = ["z", "a", "m", "b"]
    edges = {"z": [], "a": ["b"], "m": [], "b": []}
    assert topological_order(services, edges) == ["z", "m", "b", "a"]


def test_topological_order_of_independent_services_is_file_order():
    services = ["c", "a", "b"]
    assert topological_order(services, {}) == services


def test_topological_order_rejects_cycles():
    with pytest.raises(graphlib.CycleError):
        topological_order(["a", "b"], {"a": ["b"], "b": ["a"]})


def service(wait=None, **deps):
    return {"wait": wait, "depends_on": {name: edge for name, edge in deps.items()}}


def edge(condition="service_started", wait=None):
    return {"condition": condition, "wait": wait}


def test_condition_kinds():
    assert is_startup_condition("service_healthy")
    assert is_startup_condition("service_completed_successfully")
    assert not is_startup_condition("service_failed")
    assert not is_startup_condition("service_unhealthy")


def test_services_without_dependencies_wait():
    assert effective_wait({"a": service()}) == {"a": True}


def test_startup_conditions_keep_waiting_and_deferred_ones_do_not():
    services = {
        "db": service(),
        "web": service(db=edge("service_healthy")),
        "alarm": service(web=edge("service_failed")),
    }
    assert effective_wait(services) == {"db": True, "web": True, "alarm": False}


def test_deferred_propagates_downstream():
    services = {
        "db": service(),
        "alarm": service(db=edge("service_stopped")),
        "mailer": service(alarm=edge("service_started")),
        "other": service(db=edge(), mailer=edge()),
    }
    assert effective_wait(services) == {"db": True, "alarm": False, "mailer": False, "other": False}


def test_edge_wait_overrides_condition_kind():
    services = {
        "db": service(),
        "late": service(db=edge("service_started", wait=False)),
        "eager": service(db=edge("service_failed", wait=True)),
    }
    assert effective_wait(services) == {"db": True, "late": False, "eager": True}


def test_service_wait_overrides_everything():
    services = {
        "db": service(wait=False),
        "api": service(db=edge()),
        "web": service(wait=True, api=edge("service_failed")),
    }
    assert effective_wait(services) == {"db": False, "api": False, "web": True}


def test_effective_wait_is_computed_in_dependency_order_regardless_of_file_order():
    services = {"web": service(db=edge()), "db": service(alarm=edge("service_failed")), "alarm": service()}
    assert effective_wait(services) == {"web": False, "db": False, "alarm": True}


def test_closure_includes_transitive_dependencies_only():
    edges = {"web": ["api"], "api": ["db", "cache"], "db": [], "cache": [], "other": ["db"]}
    assert dependencies_closure(["web"], edges) == {"web", "api", "db", "cache"}
    assert dependencies_closure(["db", "other"], edges) == {"db", "other"}


def test_closure_accepts_edge_maps():
    edges = {"web": {"db": {}}, "db": {}}
    assert dependencies_closure(["web"], edges) == {"web", "db"}
