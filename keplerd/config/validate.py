"""Validate an expanded config tree against the schema and the dependency graph.

Every problem is collected with its key path; marshmallow's nested error dicts are
flattened into dotted paths (``services.web.depends_on.db.condition``).
"""

from marshmallow import ValidationError

from ..model.graph import find_cycles
from .loader import find_lua_chunks
from .schema import KeplerSchema, ServiceSchema, TopSchema, service_name_problem

_MESSAGES = {
    "Missing data for required field.": "required key missing",
    "Field may not be null.": "must not be empty",
}


def flatten_errors(messages, path=(), data=None):
    """Yield ``(key path, message)`` for marshmallow's nested error *messages*.

    Known keys in the schema's order, then unknown ones in the order of *data* (the
    document's): marshmallow gathers unknown keys in a set, whose order changes
    from run to run.
    """
    if isinstance(messages, dict):
        for key, value in _stable(messages, data):
            inner = path if key == "_schema" else (*path, key)
            yield from flatten_errors(value, inner, data if key == "_schema" else _child(data, key))
    elif isinstance(messages, list):
        for item in messages:
            yield from flatten_errors(item, path, data)
    else:
        yield list(path), _MESSAGES.get(messages, messages)


def _stable(messages, data):
    known = [item for item in messages.items() if not _is_unknown(item[1])]
    unknown = [item for item in messages.items() if _is_unknown(item[1])]
    return known + sorted(unknown, key=lambda item: _document_order(data, item[0]))


def _is_unknown(value):
    return isinstance(value, list) and len(value) == 1 and str(value[0]).startswith("unknown key")


def _document_order(data, key):
    if key == "_schema":
        return (-1, "")
    keys = list(data) if isinstance(data, dict) else range(len(data)) if isinstance(data, list) else []
    position = next((index for index, each in enumerate(keys) if each == key or str(each) == str(key)), len(keys))
    return (position, str(key))


def _child(data, key):
    if isinstance(data, dict):
        return data.get(key)
    if isinstance(data, list) and isinstance(key, int) and 0 <= key < len(data):
        return data[key]
    return None


class Validator:
    """Validate one tree; problems under a failed Lua chunk are reported once, by the evaluator."""

    def __init__(self, problems):
        self.problems = problems
        self.lua_paths = []

    def validate(self, tree):
        """Return ``(kepler settings, {name: service})``, the parts that validated."""
        self._report_lua(tree)
        # The top schema only checks which keys exist; their values are validated below.
        self._load(TopSchema, dict.fromkeys(tree, "checked below"), [])
        raw_kepler = tree.get("kepler")
        kepler = self._load(KeplerSchema, {} if raw_kepler is None else raw_kepler, ["kepler"]) or {}
        raw_services = tree.get("services")
        if "services" in tree and (not isinstance(raw_services, dict) or not raw_services):
            self.report(["services"], "must be a non-empty mapping of service names to services")
            return kepler, {}
        services = {}
        for name, raw in (raw_services or {}).items():
            problem = service_name_problem(name)
            if problem:
                self.report(["services", name], problem)
            loaded = self._load(ServiceSchema, raw, ["services", name])
            if loaded is not None:
                services[name] = loaded
        self._check_graph(raw_services or {})
        return kepler, services

    def report(self, path, message):
        if not any(path[:len(lua)] == lua for lua in self.lua_paths):
            self.problems.add(path, message)

    def _report_lua(self, tree):
        """Keep quiet under markers whose chunk failed (it is reported); report any not evaluated."""
        sections = {key: tree[key] for key in ("kepler", "services") if key in tree}
        for path, chunk in find_lua_chunks(sections):
            if not chunk.failed:
                self.problems.add(path, "Lua value was not evaluated")
            self.lua_paths.append(path)

    def _load(self, schema, data, path):
        try:
            return _instance(schema).load(data)
        except ValidationError as error:
            for where, message in flatten_errors(error.messages, path, data):
                self.report(where, message)
            return None

    def _check_graph(self, raw_services):
        edges = {}
        for name, raw in raw_services.items():
            deps = _dependency_names(raw)
            for dep in deps:
                if dep not in raw_services:
                    self.report(["services", name, "depends_on", dep], f"undefined service '{dep}'")
            edges[name] = [dep for dep in deps if dep in raw_services]
        for cycle in find_cycles(edges):
            self.report(["services"], "dependency cycle: " + " -> ".join(cycle))


def _instance(schema):
    """Return the one instance of *schema* class: loading keeps no state in it.

    Making an instance deep-copies every declared field; one per service was two
    thirds of a 100-service bake. Made at import, so the bake zygote forks them ready.
    """
    return _INSTANCES.get(schema) or _INSTANCES.setdefault(schema, schema())


_INSTANCES = {schema: schema() for schema in (TopSchema, KeplerSchema, ServiceSchema)}


def _dependency_names(raw):
    """Return the dependency names written in the raw service *raw*, leniently."""
    deps = raw.get("depends_on") if isinstance(raw, dict) else None
    if isinstance(deps, dict):
        return [name for name in deps if isinstance(name, str)]
    if isinstance(deps, list):
        return list(dict.fromkeys(name for name in deps if isinstance(name, str)))
    return []
