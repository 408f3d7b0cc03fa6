"""Loading YAML safely: syntax errors, key rules, Lua markers."""

import pytest

from keplerd.config.errors import ConfigError
from keplerd.config.loader import LuaChunk, find_lua_chunks, load_yaml


def errors_of(text):
    with pytest.raises(ConfigError) as caught:
        load_yaml(text.encode(), "kepler.yaml")
    return caught.value.errors


def test_syntax_error_names_line_and_column():
    [error] = errors_of("services:\n  web:\n    command: a: b\n")
    assert error.startswith("kepler.yaml:3:")
    assert "mapping values are not allowed" in error


def test_bad_indentation_is_located():
    [error] = errors_of("services:\n  - a\n - b\n")
    assert error.startswith("kepler.yaml:3:2: ")


def test_duplicate_keys_are_errors_each_located():
    errors = errors_of("a: 1\nb: 2\na: 3\nb: 4\n")
    assert errors == ["kepler.yaml:3:1: duplicate key 'a'", "kepler.yaml:4:1: duplicate key 'b'"]


def test_merge_keys_may_be_overridden():
    tree = load_yaml(b"base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  x: 3\n", "kepler.yaml")
    assert tree["c"] == {"x": 3, "y": 2}


def test_mapping_keys_stay_text():
    assert load_yaml(b"on: 1\nno: 2\n8080: 3\n", "k") == {"on": 1, "no": 2, "8080": 3}


def test_python_tags_are_refused():
    [error] = errors_of("a: !!python/object/apply:os.system ['true']\n")
    assert error.startswith("kepler.yaml:1:4: ")


def test_lua_tags_load_as_markers_with_their_line():
    tree = load_yaml(b"a: 1\nb: !lua |\n  return 2\nc: [!lua_file x.lua]\n", "k")
    assert tree["b"] == LuaChunk(source="return 2\n", line=2)
    assert tree["c"] == [LuaChunk(path="x.lua", line=4)]
    assert [path for path, _ in find_lua_chunks(tree)] == [["b"], ["c", 0]]


def test_lua_tag_on_a_mapping_is_an_error():
    [error] = errors_of("a: !lua {x: 1}\n")
    assert error == "kepler.yaml:1:4: !lua must tag a string"


def test_several_documents_are_an_error():
    [error] = errors_of("a: 1\n---\nb: 2\n")
    assert error.startswith("kepler.yaml:2:1: ") and "single document" in error
