"""What ``keplerctl apply`` would change (SPEC §16): baked definitions compared field by field.

Pure functions over snapshots. A service's baked definition already holds what it
inherits (global ``sys_env``, ``timeout``, ``logs``, env files after expansion and
Lua), so comparing baked values is enough for a global default or an env file to
count for exactly the services it reaches.

What counts as a change is what the process (or its supervision) would see:

* ``env`` is the environment the process gets; it is shown as ``environment.KEY``.
  ``environment``, ``env_file`` and ``sys_env`` are how it was written and are not
  compared on their own (moving a variable into an env file changes nothing);
* ``wait`` and ``effective_wait`` (derived from it and the graph) only say what a
  start waits for, not how the service runs: taken without a restart;
* every other field counts, dicts one level deep (``restart.policy``, ``hooks.pre_stop``);
* ``replicas`` alone changed is a scale, not a restart: the entry carries
  ``replicas: [running count, new count]`` and restarts no dependent.

>>> old = {"web": {"command": ["a"], "env": {"X": "1"}}}
>>> new = {"web": {"command": ["b"], "env": {"X": "2"}}}
>>> plan_line(plan(old, new, up={"web"})[0])
'web  changed: command, environment.X -> restart'
"""

from keplerd.model import graph

UNCHANGED, CHANGED, ADDED, REMOVED = "unchanged", "changed", "added", "removed"
NOTHING, RESTART, START, STOP, STORE, SCALE = "none", "restart", "start", "stop", "store", "scale"

NOT_COMPARED = frozenset({"environment", "env_file", "sys_env", "wait", "effective_wait"})
LABELS = {"env": "environment"}
NESTED = frozenset({"env", "depends_on", "restart", "limits", "logs", "hooks", "healthcheck"})
INHERITED_BY_HOOKS = frozenset({"user", "group", "working_dir", "limits"})
INHERITED = "(inherited)"
_MISSING = object()


class PlanError(ValueError):
    """The apply asked for cannot be done (an unknown service, a dependency left out)."""


def changed_fields(old, new):
    """Return the labels of the fields that differ between two baked service definitions.

    >>> changed_fields({"command": ["a"], "restart": {"policy": "no"}},
    ...                {"command": ["a"], "restart": {"policy": "always"}})
    ['restart.policy']
    """
    fields = []
    for key in [*new, *(key for key in old if key not in new)]:
        before, after = old.get(key, _MISSING), new.get(key, _MISSING)
        if key == "hooks" and isinstance(before, dict) and isinstance(after, dict):
            # A hook inherits the service's env, user, working dir...: count only its own changes.
            before, after = _own_hooks(before, old), _own_hooks(after, new)
        if key in NOT_COMPARED or before == after:
            continue
        label = LABELS.get(key, key)
        if key in NESTED and isinstance(before, dict) and isinstance(after, dict):
            subkeys = [*after, *(sub for sub in before if sub not in after)]
            fields.extend(f"{label}.{sub}" for sub in subkeys
                          if before.get(sub, _MISSING) != after.get(sub, _MISSING))
        else:
            fields.append(label)
    return fields


def _own_hooks(hooks, service):
    """Return *hooks* with what each inherits from *service* replaced by a marker."""
    return {name: _own_hook(hook, service) for name, hook in hooks.items()}


def _own_hook(hook, service):
    own = {key: INHERITED if key in INHERITED_BY_HOOKS and value == service.get(key) else value
           for key, value in hook.items()}
    if isinstance(hook.get("env"), dict):
        inherited = service.get("env") or {}
        own["env"] = {key: value for key, value in hook["env"].items() if inherited.get(key, _MISSING) != value}
    return own


def plan(old, new, up, names=()):
    """Return one plan entry per service: what apply does to it.

    *old* and *new* map service names to baked definitions (running and freshly
    baked); *up* holds the names the user wants up (not stopped by the user).
    *names* limits the plan to those services (and their ``restart: true``
    dependents). Entries are dicts ``{service, change, fields, action, because}``,
    in the new config's order, removed services last.
    """
    unknown = [name for name in names if name not in old and name not in new]
    if unknown:
        raise PlanError(f"no such service: {', '.join(unknown)}")
    chosen = set(names) if names else set(old) | set(new)
    # A config stopped as a whole stays stopped: what it gains is stored for its next start.
    running = bool(up) or not old
    entries = {}
    for name in [*new, *(name for name in old if name not in new)]:
        if name in chosen:
            entries[name] = _entry(name, old.get(name), new.get(name), name in up if name in old else running)
    _add_dependents(entries, old, new, up)
    return list(entries.values())


def _entry(name, before, after, up):
    if before is None:
        return _make(name, ADDED, [], START if up else STORE)
    if after is None:
        return _make(name, REMOVED, [], STOP)
    fields = changed_fields(before, after)
    if not fields:
        return _make(name, UNCHANGED, [], NOTHING)
    entry = _make(name, CHANGED, fields, (SCALE if fields == ["replicas"] else RESTART) if up else STORE)
    if "replicas" in fields:
        entry["replicas"] = [before.get("replicas", 1), after.get("replicas", 1)]
    return entry


def _make(name, change, fields, action, because=()):
    return {"service": name, "change": change, "fields": fields, "action": action, "because": list(because)}


def _add_dependents(entries, old, new, up):
    """Plan a restart for unchanged, up services with ``restart: true`` on an edge to a restarted one."""
    restarted = [name for name, entry in entries.items() if entry["action"] == RESTART]
    while restarted:
        dependency = restarted.pop()
        for name, spec in new.items():
            edge = spec["depends_on"].get(dependency)
            if not (edge and edge.get("restart")) or name not in up or name not in old:
                continue
            entry = entries.get(name)
            if entry is None or entry["action"] == NOTHING:
                entries[name] = _make(name, UNCHANGED, [], RESTART, because=[dependency])
                restarted.append(name)
            elif entry["because"] and dependency not in entry["because"]:
                entry["because"].append(dependency)


def plan_line(entry):
    """Return how ``apply`` prints one plan entry (SPEC §16).

    >>> plan_line({"service": "cache", "change": "added", "fields": [], "action": "start", "because": []})
    'cache  added -> start'
    >>> plan_line({"service": "web", "change": "changed", "fields": ["replicas"], "action": "scale",
    ...            "because": [], "replicas": [1, 3]})
    'web  changed: replicas -> scale 1 → 3'
    """
    name, change, action = entry["service"], entry["change"], entry["action"]
    if action == STORE:
        return f"{name}  {change} (stopped): stored"
    text = f"{name}  {change}"
    if entry["fields"]:
        text += ": " + ", ".join(entry["fields"])
    if action != NOTHING:
        text += f" -> {action}"
    counts = entry.get("replicas")
    if counts and (action == SCALE or counts[0] != counts[1]):
        text += f"{'' if action == SCALE else ', scale'} {counts[0]} → {counts[1]}"
    if entry["because"]:
        text += f" (depends on {', '.join(entry['because'])})"
    return text


def merge(old_snapshot, new_snapshot, entries, names=()):
    """Return the snapshot the daemon keeps once the plan *entries* are accepted.

    Applying every service takes the new snapshot whole. Applying *names* only
    takes those services' new definitions (added, removed, changed) and keeps the
    rest of the old snapshot, global settings and file records included, so that
    ``ps`` still says the file holds more than was applied.
    """
    if not names:
        return new_snapshot
    services = dict(old_snapshot["services"])
    for entry in entries:
        name = entry["service"]
        if entry["change"] == REMOVED:
            services.pop(name, None)
        elif entry["change"] in (ADDED, CHANGED):
            services[name] = new_snapshot["services"][name]
    order = [name for name in new_snapshot["services"] if name in services]
    services = {name: dict(services[name]) for name in order + [name for name in services if name not in order]}
    _check_graph(services)
    for name, wait in graph.effective_wait(services).items():
        services[name]["effective_wait"] = wait
    edges = {name: service["depends_on"] for name, service in services.items()}
    return {**old_snapshot, "services": services, "start_order": graph.topological_order(services, edges)}


def _check_graph(services):
    """Refuse a partial apply that leaves a dependency undefined or makes a cycle."""
    for name, service in services.items():
        missing = [dep for dep in service["depends_on"] if dep not in services]
        if missing:
            raise PlanError(f"{name} would depend on {', '.join(missing)}, which this apply does not add: "
                            f"name {'it' if len(missing) == 1 else 'them'} too")
    cycle = graph.find_cycle({name: list(service["depends_on"]) for name, service in services.items()})
    if cycle:
        raise PlanError(f"this apply would make a dependency cycle: {' -> '.join(cycle)}")


def global_changes(old_snapshot, new_snapshot):
    """Return the labels of the global hooks that differ (they restart nothing: stored)."""
    before = old_snapshot.get("kepler", {}).get("hooks", {})
    after = new_snapshot.get("kepler", {}).get("hooks", {})
    return [f"hooks.{name}" for name in [*after, *(name for name in before if name not in after)]
            if before.get(name) != after.get(name)]
