"""Dependency graph arithmetic shared by the config baker and the daemon (SPEC §7).

Pure functions over *edges*: a mapping ``name -> iterable of the names it depends
on`` in file order (a snapshot's ``{name: service["depends_on"]}`` is one, since
iterating a dict gives its keys). Names that are not keys of *edges* are ignored
here; the config validator reports them as undefined.

>>> edges = {"db": [], "api": ["db"], "web": ["api"]}
>>> topological_order(edges, edges)
['db', 'api', 'web']
>>> find_cycle({"a": ["b"], "b": ["a"]})
['a', 'b', 'a']
"""

import graphlib
import heapq

STARTUP_CONDITIONS = ("service_started", "service_healthy", "service_completed_successfully")
DEFERRED_CONDITIONS = ("service_unhealthy", "service_failed", "service_stopped")
CONDITIONS = STARTUP_CONDITIONS + DEFERRED_CONDITIONS
EXIT_CODE_CONDITIONS = ("service_failed", "service_stopped")


def is_startup_condition(condition):
    """Return whether waiting for *condition* belongs to the startup of a config."""
    return condition in STARTUP_CONDITIONS


def find_cycle(edges):
    """Return one dependency cycle as ``['a', 'b', 'a']`` (a depends on b ...), or None."""
    visiting, done = [], set()

    def visit(name):
        visiting.append(name)
        for dep in edges[name]:
            if dep not in edges or dep in done:
                continue
            if dep in visiting:
                return visiting[visiting.index(dep):] + [dep]
            cycle = visit(dep)
            if cycle:
                return cycle
        visiting.pop()
        done.add(name)
        return None

    for name in edges:
        if name not in done:
            cycle = visit(name)
            if cycle:
                return cycle
    return None


def find_cycles(edges):
    """Return distinct cycles of *edges*, each as find_cycle gives it (empty when acyclic)."""
    cycles, remaining = [], dict(edges)
    while (cycle := find_cycle(remaining)) is not None:
        cycles.append(cycle)
        remaining = {name: deps for name, deps in remaining.items() if name not in cycle}
    return cycles


def topological_order(services, edges):
    """Return *services* dependencies first; among ready ones, in the order of *services*.

    Raises graphlib.CycleError when *edges* has a cycle.
    """
    rank = {name: index for index, name in enumerate(services)}
    sorter = graphlib.TopologicalSorter()
    for name in services:
        sorter.add(name, *(dep for dep in edges.get(name, ()) if dep in rank))
    sorter.prepare()
    ready, order = [], []
    while sorter.is_active():
        for name in sorter.get_ready():
            heapq.heappush(ready, (rank[name], name))
        _, name = heapq.heappop(ready)
        order.append(name)
        sorter.done(name)
    return order


def effective_wait(services):
    """Return ``{name: bool}``: whether each service belongs to the startup cluster.

    *services* maps names to dicts with ``wait`` (bool or None) and ``depends_on``
    (``{dep: {"condition": ..., "wait": bool or None}}``), as in a snapshot. A
    service's own ``wait`` wins; without dependencies it is True; otherwise it is
    the AND over its edges of (the dependency's value AND the edge's wait), where
    an edge's wait defaults to whether its condition is of startup kind.
    """
    edges = {name: service["depends_on"] for name, service in services.items()}
    result = {}
    for name in topological_order(services, edges):
        service = services[name]
        if service.get("wait") is not None:
            result[name] = bool(service["wait"])
            continue
        result[name] = all(
            result.get(dep, True) and _edge_wait(edge) for dep, edge in service["depends_on"].items()
        )
    return {name: result[name] for name in services}


def _edge_wait(edge):
    if edge.get("wait") is not None:
        return bool(edge["wait"])
    return is_startup_condition(edge.get("condition", "service_started"))


def dependencies_closure(names, edges):
    """Return the set of *names* plus everything they depend on, transitively."""
    closure, pending = set(), list(names)
    while pending:
        name = pending.pop()
        if name in closure:
            continue
        closure.add(name)
        pending.extend(edges.get(name, ()))
    return closure
