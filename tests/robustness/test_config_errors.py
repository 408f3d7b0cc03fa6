"""Points 5, 6 and 9 of #24: a bad config is one located line per problem, never a traceback.

``config check`` runs the whole bake (YAML, Lua, schema) in-process here.
"""

import os

import pytest

from keplerd.config.bake import check
from keplerd.config.errors import ConfigError
from keplerd.config.schema import MAX_SERVICE_NAME, SERVICE_HOOKS
from keplerd.logs.files import SEGMENT_SUFFIX, log_path


def errors_of(tmp_path, text, name="kepler.yaml"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ConfigError) as raised:
        check(str(path), {}, "/root")
    return raised.value.errors


def test_a_service_name_too_long_for_its_files_is_refused(tmp_path):
    name = "a" * 243
    errors = errors_of(tmp_path, f"services:\n  {name}:\n    command: [\"true\"]\n")
    assert errors == [f"kepler.yaml: services.{name}: service name of 243 characters: at most 128"]


def test_every_file_named_after_the_longest_name_fits():
    longest_hook = max(SERVICE_HOOKS, key=len)
    name = "n" * MAX_SERVICE_NAME
    for stream in ("stdout", "stderr"):
        path = log_path("/logs", f"{name}.{longest_hook}", stream) + SEGMENT_SUFFIX
        assert len(os.path.basename(path)) <= 255


@pytest.mark.parametrize("where, text, error", [
    ("a hook", "services:\n  web:\n    command: [\"true\"]\n    hooks: {pre_start: \"echo hi\"}\n",
     "kepler.yaml: services.web.hooks.pre_start: must be a mapping"),
    ("a global hook", "kepler:\n  hooks: {post_start: [1]}\nservices:\n  web:\n    command: [\"true\"]\n",
     "kepler.yaml: kepler.hooks.post_start: must be a mapping"),
    ("hooks", "services:\n  web:\n    command: [\"true\"]\n    hooks: [1]\n",
     "kepler.yaml: services.web.hooks: must be a mapping"),
    ("a healthcheck", "services:\n  web:\n    command: [\"true\"]\n    healthcheck: [x]\n",
     "kepler.yaml: services.web.healthcheck: must be a mapping"),
    ("an edge", "services:\n  web:\n    command: [\"true\"]\n    depends_on: {db: x}\n  db:\n    command: [\"true\"]\n",
     "kepler.yaml: services.web.depends_on.db: must be a mapping"),
    ("retention", "services:\n  web:\n    command: [\"true\"]\n    logs: {retention: 1}\n",
     "kepler.yaml: services.web.logs.retention: must be a mapping"),
    ("limits", "services:\n  web:\n    command: [\"true\"]\n    limits: x\n",
     "kepler.yaml: services.web.limits: must be a mapping"),
    ("kepler", "kepler: [1]\nservices:\n  web:\n    command: [\"true\"]\n", "kepler.yaml: kepler: must be a mapping"),
    ("a service", "services:\n  web: [1]\n", "kepler.yaml: services.web: must be a mapping"),
    ("a failed !lua hook", "services:\n  web:\n    command: [\"true\"]\n    hooks: {pre_start: !lua \"error('x')\"}\n",
     "kepler.yaml: services.web.hooks.pre_start: lua:1: x"),
])
def test_a_wrong_type_where_a_mapping_is_expected_is_located(tmp_path, where, text, error):
    assert errors_of(tmp_path, text) == [error]


def test_invalid_utf8_is_one_located_line(tmp_path):
    errors = errors_of(tmp_path, b"services:\n  web:\n    command: [\"caf\xe9\"]\n")
    assert errors == ["kepler.yaml:3:19: invalid UTF-8 (byte 0xe9)"]


def test_unknown_keys_come_in_document_order_whatever_the_hash_seed(tmp_path):
    keys = ("zeta", "alpha", "mid", "omega", "beta", "kappa")
    text = "services:\n  web:\n    command: [\"true\"]\n" + "".join(f"    {key}: 1\n" for key in keys)
    assert errors_of(tmp_path, text) == [f"kepler.yaml: services.web.{key}: unknown key" for key in keys]


def test_a_lua_error_with_a_table_says_where(tmp_path):
    errors = errors_of(tmp_path, "services:\n  web:\n    command: !lua |\n      local a = 1\n      error({})\n")
    assert errors == ["kepler.yaml: services.web.command: lua:2: (error object is a table value)"]


def test_a_key_holding_a_newline_is_reported_on_one_line(tmp_path):
    """Found by the property test: a YAML key "a\\nb" made a two-line problem."""
    errors = errors_of(tmp_path, 'kepler:\n  "a\\nb": 1\nservices:\n  web:\n    command: ["true"]\n')
    assert errors == ["kepler.yaml: kepler.a\\nb: unknown key"]
