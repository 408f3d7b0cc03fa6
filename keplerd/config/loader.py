"""Read a config file's YAML into plain Python data, safely.

Only safe loading is used (the C parser when libyaml is present). Two things
differ from a plain ``yaml.safe_load``:

* ``!lua`` and ``!lua_file`` on a scalar load as a :class:`LuaChunk` marker, left
  for the Lua evaluator to replace at its stage (SPEC §6);
* mapping keys are always the text written in the file (``on:`` stays ``"on"``, not
  ``True``; ``8080:`` stays ``"8080"``), and a key repeated in one mapping is an
  error instead of silently replacing the first.
"""

import dataclasses
# Imported now, in the warm zygote that still runs as root: a member's bake drops to the
# member before it decodes the file, and the standard library may not be readable then.
import encodings.utf_8_sig  # noqa: F401

import yaml

from .errors import ConfigError

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

#: Returned by a Lua evaluator for a chunk whose value is ``nil``: drop the key.
ABSENT = object()


@dataclasses.dataclass(frozen=True)
class LuaChunk:
    """A ``!lua`` (``source``) or ``!lua_file`` (``path``) value, at 1-based *line*.

    ``failed`` marks a chunk whose evaluation failed (the problem is already
    reported): it stays in the tree so validation says nothing more under it.
    """

    source: str | None = None
    path: str | None = None
    line: int = 0
    failed: bool = False


class _Loader(_BaseLoader):
    """The safe loader with Kepler's key rules; collects duplicate keys in ``problems``."""

    def __init__(self, stream):
        super().__init__(stream)
        self.problems = []

    def construct_mapping(self, node, deep=False):
        if not isinstance(node, yaml.MappingNode):
            raise yaml.constructor.ConstructorError(
                None, None, f"expected a mapping, found {node.id}", node.start_mark
            )
        own = sum(1 for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge")
        self.flatten_mapping(node)
        merged = len(node.value) - own  # `<<: *anchor` pairs come first and may be overridden
        mapping, own_keys = {}, set()
        for index, (key_node, value_node) in enumerate(node.value):
            if not isinstance(key_node, yaml.ScalarNode):
                raise yaml.constructor.ConstructorError(
                    None, None, "mapping keys must be plain scalars", key_node.start_mark
                )
            key = key_node.value
            if index >= merged:
                if key in own_keys:
                    self.problems.append((key_node.start_mark, f"duplicate key '{key}'"))
                own_keys.add(key)
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping


def _construct_lua(loader, node):
    return LuaChunk(source=_lua_scalar(loader, node), line=node.start_mark.line + 1)


def _construct_lua_file(loader, node):
    return LuaChunk(path=_lua_scalar(loader, node), line=node.start_mark.line + 1)


def _lua_scalar(loader, node):
    if not isinstance(node, yaml.ScalarNode):
        raise yaml.constructor.ConstructorError(
            None, None, f"{node.tag} must tag a string", node.start_mark
        )
    return loader.construct_scalar(node)


_Loader.add_constructor("!lua", _construct_lua)
_Loader.add_constructor("!lua_file", _construct_lua_file)


def _located(display_name, mark, problem):
    return f"{display_name}:{mark.line + 1}:{mark.column + 1}: {problem}"


def _decoded(data, display_name):
    """Return *data* as text; invalid UTF-8 is one located error (YAML's own says only a byte offset)."""
    try:
        # "utf-8", not "utf-8-sig": a bake worker running as a member cannot import a codec
        # not loaded yet; YAML skips a byte order mark itself.
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        offset = error.start
        line = data.count(b"\n", 0, offset) + 1
        column = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
        raise ConfigError([f"{display_name}:{line}:{column}: invalid UTF-8 "
                           f"(byte 0x{data[offset]:02x})"]) from None


def load_yaml(data, display_name):
    """Return the data of the YAML document *data* (bytes or str).

    Raises ConfigError with ``<file>:<line>:<column>: <problem>`` messages.
    """
    if isinstance(data, bytes):
        data = _decoded(data, display_name)
    loader = _Loader(data)
    try:
        tree = loader.get_single_data()
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        problem = ", ".join(part for part in (error.context, error.problem) if part) or "invalid YAML"
        if mark is None:
            raise ConfigError([f"{display_name}: {problem}"]) from None
        raise ConfigError([_located(display_name, mark, problem)]) from None
    except yaml.YAMLError as error:
        raise ConfigError([f"{display_name}: " + " ".join(str(error).split())]) from None
    finally:
        loader.dispose()
    if loader.problems:
        raise ConfigError([_located(display_name, mark, text) for mark, text in loader.problems])
    return tree


def find_lua_chunks(tree, path=()):
    """Yield ``(key path, LuaChunk)`` for every marker left in *tree*, in document order."""
    seen = set()
    stack = [(tuple(path), tree)]
    while stack:
        where, node = stack.pop()
        if isinstance(node, LuaChunk):
            yield list(where), node
        elif isinstance(node, (dict, list)):
            # Aliases share objects: visit each container once, so a YAML bomb stays cheap.
            if id(node) in seen:
                continue
            seen.add(id(node))
            items = node.items() if isinstance(node, dict) else enumerate(node)
            stack.extend(reversed([(where + (key,), child) for key, child in items]))
