"""Property: whatever a config holds, ``config check`` answers with located lines, never a traceback.

A config using most keys is mutated at random paths (wrong types, unknown keys,
deleted keys, odd text) and baked in-process; the bake must succeed or raise
``ConfigError`` whose every line names the file. Bounded in examples and time.
"""

import copy

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keplerd.config.bake import check
from keplerd.config.errors import ConfigError

BASE = {
    "kepler": {"sys_env": "clear", "timeout": "5s", "logs": {"max_size": "1M", "retention": {"on_stop": "clear"}},
               "hooks": {"pre_start": {"run": "true"}, "post_stop": {"command": ["true"], "timeout": "1s"}}},
    "services": {
        "web": {"command": ["sleep", "1"], "working_dir": ".", "environment": {"A": "1"},
                "depends_on": {"db": {"condition": "service_healthy", "timeout": "3s"}},
                "restart": {"policy": "always", "watch": ["*.py"], "backoff": "100ms", "max_retries": 3},
                "healthcheck": {"test": ["CMD", "true"], "interval": "1s", "retries": 2},
                "hooks": {"pre_start": {"run": "echo hi", "environment": ["B=2"]}},
                "limits": {"memory": "64M", "max_fds": 64},
                "logs": {"store": {"stdout": True}, "buffer_size": "4K"},
                "stop_signal": "SIGINT", "stop_grace_period": "2s"},
        "db": {"command": "sleep 1", "depends_on": ["cache"], "wait": False},
        "cache": {"command": ["sleep", "1"], "restart": "on-failure"},
    },
}

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=False),
                    st.text(max_size=20), st.sampled_from(["", "0", "-1s", "1e9", "SIGFOO", "service_started", "no",
                                                           "!lua", "${X}", "$$", "a" * 300]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=6)


def _paths(tree, prefix=()):
    yield prefix
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            yield from _paths(value, (*prefix, index))


PATHS = [path for path in _paths(BASE) if path]
MUTATION = st.tuples(st.sampled_from(PATHS), st.sampled_from(["replace", "delete", "add"]), VALUES,
                     st.text(min_size=1, max_size=10))


def _mutate(tree, mutation):
    path, action, value, new_key = mutation
    parent = tree
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    if action == "replace":
        parent[last] = value
    elif action == "delete" and isinstance(parent, dict):
        del parent[last]
    elif isinstance(parent[last], dict):
        parent[last][new_key] = value
    else:
        parent[last] = value


TRIED = []


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(MUTATION, min_size=1, max_size=4))
def test_a_mutated_config_gets_located_errors_or_bakes(tmp_path, mutations):
    tree = copy.deepcopy(BASE)
    for mutation in mutations:
        try:
            _mutate(tree, mutation)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or reshaped this path
    path = tmp_path / "kepler.yaml"
    path.write_text(yaml.safe_dump(tree, allow_unicode=True))
    TRIED.append(1)
    try:
        check(str(path), {"X": "1"}, "/root", lua_time_limit=0.5)
    except ConfigError as error:
        assert error.errors
        for line in error.errors:
            assert line.startswith("kepler.yaml"), line
            assert "\n" not in line and "Traceback" not in line, line


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300))
def test_any_bytes_as_a_config_get_located_errors(tmp_path, data):
    path = tmp_path / "kepler.yaml"
    path.write_bytes(data)
    TRIED.append(1)
    try:
        check(str(path), {}, "/root", lua_time_limit=0.5)
    except ConfigError as error:
        for line in error.errors:
            assert line.startswith("kepler.yaml") and "\n" not in line, line


LUA_CHUNKS = st.sampled_from([
    "error({})", "error(nil)", "error(setmetatable({}, {__tostring = function() error('x') end}))",
    "return {1, 2, {}}", "return function() end", "while true do end", "return ('x'):rep(1e9)",
    "local t = {} t[1] = t return t", "return 0/0", "return math.huge", "return coroutine", "return ctx",
    "return string.rep('a', 100)", "error('line\\nbreak')", "return nil", "return true",
])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(LUA_CHUNKS, st.sampled_from([("command",), ("environment",), ("hooks", "pre_start"), ("stop_signal",)]))
def test_hostile_lua_gets_located_errors(tmp_path, chunk, where):
    service = {"command": ["true"]}
    target = service
    for key in where[:-1]:
        target = target.setdefault(key, {})
    target[where[-1]] = "LUA"
    text = yaml.safe_dump({"services": {"web": service}}).replace("LUA", "!lua " + yaml.safe_dump(chunk).strip()
                                                                 .removesuffix("\n...").strip())
    path = tmp_path / "kepler.yaml"
    path.write_text(text)
    TRIED.append(1)
    try:
        check(str(path), {}, "/root", lua_time_limit=0.3, lua_memory_limit=16 << 20)
    except ConfigError as error:
        for line in error.errors:
            assert line.startswith("kepler.yaml") and "\n" not in line, line


WRONG_TYPES = ["text", 7, 2.5, True, [1, "x"], {"zz": 1}, None]


def test_every_key_of_the_schema_given_every_wrong_type_gets_located_errors(tmp_path):
    """The sweep: each path of a config using most keys, replaced by each JSON type in turn."""
    path = tmp_path / "kepler.yaml"
    for where in PATHS:
        for value in WRONG_TYPES:
            tree = copy.deepcopy(BASE)
            _mutate(tree, (where, "replace", value, ""))
            path.write_text(yaml.safe_dump(tree))
            TRIED.append(1)
            try:
                check(str(path), {}, "/root")
            except ConfigError as error:
                for line in error.errors:
                    assert line.startswith("kepler.yaml") and "\n" not in line, (where, value, line)
