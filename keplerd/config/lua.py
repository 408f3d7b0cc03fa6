"""Evaluate the Lua of a config at bake time (SPEC §6): the ``lua`` evaluator of the Stager.

:class:`LuaEvaluator` replaces each ``!lua`` / ``!lua_file`` marker with the value
its chunk returns, in the order the Stager asks (the ``lua:`` block, then per
service ``env_file``, ``environment``, the other fields in file order, hooks);
returned values are then expanded and validated like hand-written YAML.
Decisions where the spec is silent:

* One environment per bake. What the ``lua:`` block (or a required module)
  defines is visible to every later chunk; a field's chunk keeps its own globals
  to itself; ``global`` is shared by all. ``ctx`` always describes the chunk being
  evaluated, also inside functions defined in ``lua:``.
* ``getmetatable``, ``setmetatable`` (without ``__gc``), ``rawget``, ``rawset``,
  ``rawequal``, ``rawlen`` and text-only ``load`` are available too; none of them
  can change a read-only table.
* ``!lua_file`` paths are relative to the config dir (absolute ones allowed, as
  for ``env_file``); ``require("a.b")`` loads ``a/b.lua`` from inside the config dir
  only.
* After a limit is exceeded, or when the ``lua:`` block fails (the chunks after it
  would fail for that reason), no further chunk runs; the other problems of the
  config are still reported.
* A chunk under a YAML alias is evaluated once per field that uses it.

Lupa is imported on the first chunk: configs without Lua never load it.
"""

import dataclasses
import json
import os
import re

from ..sources import read_recorded
from .loader import ABSENT, LuaChunk, find_lua_chunks
from .luasandbox import DEFAULT_MEMORY_LIMIT, DEFAULT_TIME_LIMIT, ModuleRefused, OutOfMemory, Sandbox, lua_text

__all__ = ["DEFAULT_MEMORY_LIMIT", "DEFAULT_TIME_LIMIT", "LuaEvaluator"]

MODULE_NAME = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")
CHUNK_NAME = "=lua"  # errors read `lua:3: ...`; a file's read `gen/ports.lua:3: ...`


def format_size(size):
    """Return ``64 MiB`` for 67108864; plain bytes when not a whole KiB/MiB/GiB."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} bytes"


def format_seconds(seconds):
    """Return ``2s`` for 2.0 and ``1.5s`` for 1.5."""
    return f"{seconds:g}s"


def _one_line(text):
    return " ".join(line.strip() for line in text.splitlines() if line.strip()) or "unknown error"


class LuaEvaluator:
    """Evaluate the chunks of one bake; record every problem in *problems*.

    >>> lua = LuaEvaluator("/srv/app", Problems("kepler.yaml"))        # doctest: +SKIP
    >>> lua.resolve(LuaChunk(source="return {'a'}"), ["x"], ctx)        # doctest: +SKIP
    ['a']
    """

    def __init__(self, config_dir, problems, memory_limit=DEFAULT_MEMORY_LIMIT, time_limit=DEFAULT_TIME_LIMIT):
        if memory_limit <= 0 or time_limit <= 0:
            raise ValueError("the Lua memory and time limits must be positive")
        self.config_dir = config_dir
        self.problems = problems
        self.memory_limit = memory_limit
        self.time_limit = time_limit
        self._sandbox = None
        self._stopped = False
        self.records = {}  # Lua files read (``!lua_file``, ``require``): path -> keplerd.sources record

    def run_global(self, source, path, ctx):
        """Run the top-level ``lua:`` block *source* (text, or a ``!lua_file`` marker)."""
        if source is None:
            return
        if isinstance(source, str):
            source = LuaChunk(source=source)
        if not isinstance(source, LuaChunk):
            self.problems.add(path, "must be Lua source text")
            return
        outcome = self._evaluate(source, path, ctx, top=True)
        if isinstance(outcome, LuaChunk):
            self._stopped = True

    def resolve(self, node, path, ctx):
        """Return *node* with its Lua markers replaced by their values, or ABSENT.

        A chunk that fails stays in place as a failed marker, so validation
        reports nothing more under it.
        """
        if next(find_lua_chunks(node), None) is None:
            return node
        return self._resolve(node, list(path), ctx, {})

    def close(self):
        """Drop the Lua runtime of this bake."""
        if self._sandbox is not None:
            self._sandbox.close()
            self._sandbox = None

    def _resolve(self, node, path, ctx, seen):
        # Aliased YAML nodes are one object: resolve each once per field, so a YAML bomb stays cheap.
        if id(node) in seen:
            return seen[id(node)]
        if isinstance(node, LuaChunk):
            result = self._evaluate(node, path, ctx)
        elif isinstance(node, dict):
            pairs = ((key, self._resolve(child, path + [key], ctx, seen)) for key, child in node.items())
            result = {key: value for key, value in pairs if value is not ABSENT}
        elif isinstance(node, list):
            values = (self._resolve(child, path + [index], ctx, seen) for index, child in enumerate(node))
            result = [value for value in values if value is not ABSENT]
        else:
            return node
        seen[id(node)] = result
        return result

    def _evaluate(self, chunk, path, ctx, top=False):
        """Return the value of *chunk* (ABSENT for nil), or the chunk marked failed."""
        if chunk.failed:
            return chunk
        failed = dataclasses.replace(chunk, failed=True)
        if self._stopped:
            return failed
        loaded = self._read_chunk(chunk, path)
        sandbox = self._get_sandbox(path) if loaded else None
        if sandbox is None:
            return failed
        source, chunkname = loaded
        run = sandbox.run_global if top else sandbox.run
        status, text, where = run(source, chunkname, ctx)
        if status == "ok":
            return json.loads(text) if text else None
        if status == "absent":
            return ABSENT
        self._report(status, text, path + [where] if where else path)
        return failed

    def _report(self, status, text, path):
        if status == "time":
            self.problems.add(path, f"Lua time limit exceeded ({format_seconds(self.time_limit)} of CPU per bake)")
        elif status == "memory":
            self.problems.add(path, f"Lua memory limit exceeded ({format_size(self.memory_limit)} per bake)")
        else:
            self.problems.add(path, _one_line(text))
        self._stopped = self._stopped or status in ("time", "memory")

    def _read_chunk(self, chunk, path):
        """Return ``(source bytes, chunk name)``; None after reporting a problem."""
        if chunk.source is not None:
            return lua_text(chunk.source), CHUNK_NAME
        file_path = os.path.normpath(os.path.join(self.config_dir, chunk.path))
        try:
            data, self.records[file_path] = read_recorded(file_path)
            return data, "=" + self._display_name(file_path)
        except OSError as error:
            self.problems.add(path, f"cannot read Lua file {chunk.path}: {error.strerror}")
            return None

    def _get_sandbox(self, path):
        if self._sandbox is None:
            try:
                self._sandbox = Sandbox(self.memory_limit, self.time_limit, self._load_module)
            except OutOfMemory:
                self._report("memory", "", path)
                return None
        return self._sandbox

    def _load_module(self, name):
        """Return ``(source, chunk name)`` of module *name* for ``require``; raise ModuleRefused."""
        if not MODULE_NAME.fullmatch(name):
            raise ModuleRefused(f"invalid module name '{name}' "
                                f"(modules are files of the config directory: 'util' loads util.lua)")
        relative = name.replace(".", "/") + ".lua"
        root = os.path.realpath(self.config_dir)
        real = os.path.realpath(os.path.join(root, relative))
        if os.path.commonpath([real, root]) != root:
            raise ModuleRefused(f"module '{name}' is outside the config directory")
        try:
            data, self.records[real] = read_recorded(real)
            return data, relative
        except OSError as error:
            raise ModuleRefused(f"cannot read module '{name}' ({relative}): {error.strerror}") from None

    def _display_name(self, path):
        relative = os.path.relpath(path, self.config_dir)
        return path if relative.startswith("..") else relative
