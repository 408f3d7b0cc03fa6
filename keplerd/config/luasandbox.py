"""A fresh Lua 5.4 runtime per bake, sandboxed and bounded in memory and CPU time (SPEC §6).

The Lua side lives in ``lualib/``: ``sandbox.lua`` (the trusted kernel: the user
environment, read-only ``ctx`` tables, ``require``, the CPU hook), ``guard.lua``
and ``patterns.lua`` (string matching the hook can interrupt), ``convert.lua``
(returned values to JSON) and ``errors.lua`` (error plumbing they share). This
module drives it:

* Data in, data out. User code only ever sees plain Lua tables and strings;
  values come back as JSON text. The kernel holds the three Python callbacks in
  locals no chunk can reach, and every Python attribute access from Lua is
  refused anyway.
* CPU time. A count hook calls :meth:`Sandbox.tick` every ``HOOK_COUNT`` VM
  instructions (tens of microseconds). It adds up the thread CPU time spent in
  Lua and ends evaluation past the limit. The daemon bakes in a worker process
  (``keplerd.bakery``), so a long bake never holds up its gevent loop.
* Memory. lupa's allocator enforces the cap; a failing allocation inside Lua is
  an ordinary Lua error. But lupa pushes call arguments and callback results
  outside protected mode, where a failing allocation aborts the whole process
  (Lua panic). So each crossing into Lua first lifts the cap above what is in use
  (:meth:`Sandbox._lift_cap`), and the kernel re-applies it (``arm``) once it runs
  protected.
"""

import os
import time

from keplerd.model import defaults

DEFAULT_MEMORY_LIMIT = defaults.LUA_MEMORY_LIMIT
DEFAULT_TIME_LIMIT = defaults.LUA_TIME_LIMIT
HOOK_COUNT = 10_000   # VM instructions between two checks of the CPU budget
HEADROOM = 256 * 1024  # bytes above the cap while Python pushes values into Lua

GO_ON, OUT_OF_TIME, INTERRUPTED = 0, 1, 2

LUALIB = os.path.join(os.path.dirname(__file__), "lualib")


class CpuBudget:
    """Count the CPU time spent in Lua against *limit* seconds.

    >>> budget = CpuBudget(2.0)
    >>> budget.start(); verdict = budget.tick(); budget.stop()
    >>> verdict == GO_ON and budget.used < 2.0
    True
    """

    def __init__(self, limit, clock=time.thread_time):
        self.limit = limit
        self.used = 0.0
        self._clock = clock
        self._since = 0.0

    def start(self):
        """Start counting: Lua is about to run."""
        self._since = self._clock()

    def stop(self):
        """Stop counting: Lua returned to Python."""
        self.used += self._clock() - self._since

    def tick(self):
        """Return GO_ON or OUT_OF_TIME."""
        now = self._clock()
        self.used += now - self._since
        self._since = now
        if self.used > self.limit:
            return OUT_OF_TIME
        return GO_ON


class OutOfMemory(Exception):
    """The memory limit is too small for the sandbox itself."""


class ModuleRefused(Exception):
    """``require`` cannot load that module; the message says why."""


def _refuse_attribute(*_args):
    raise AttributeError("Python objects are not accessible from Lua")


def _lualib(name):
    with open(os.path.join(LUALIB, name), "rb") as file:
        return file.read()


def lua_text(value):
    """Return the str *value* as the bytes Lua sees, whatever surrogates it carries.

    Undecodable bytes of the CLI's environment come back as they were; any other
    lone surrogate (a client may send one in JSON) becomes bytes that Lua keeps
    and that convert.lua refuses as invalid UTF-8 if they come back.
    """
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass")


class Sandbox:
    """One Lua runtime with the kernel loaded; ``run`` evaluates one chunk.

    *load_module(name)* returns ``(source bytes, chunk name)`` for ``require`` or
    raises :class:`ModuleRefused`. Raises ``lupa.LuaMemoryError`` when even the
    kernel does not fit in *memory_limit*.
    """

    def __init__(self, memory_limit, time_limit, load_module):
        from lupa import lua54

        self.memory_limit = memory_limit
        self.budget = CpuBudget(time_limit)
        self.interruption = None
        self._load_module = load_module
        self._runtime = lua54.LuaRuntime(
            encoding=None, register_eval=False, register_builtins=False, unpack_returned_tuples=True,
            max_memory=memory_limit, attribute_handlers=(_refuse_attribute, _refuse_attribute))
        self._lua_error = lua54.LuaError
        self._memory_error = lua54.LuaMemoryError
        try:
            errors = self._call(self._trusted("errors.lua"))
            patterns = self._call(self._trusted("guard.lua"), errors, self._call(self._trusted("patterns.lua")))
            encode = self._call(self._trusted("convert.lua"))
            self._lift_cap(0)
            self._api = self._call(self._trusted("sandbox.lua"), self.tick, self._read_module, self._arm,
                                   errors, patterns, encode, HOOK_COUNT)
        except self._memory_error:
            raise OutOfMemory("the Lua sandbox alone needs more memory than the limit") from None

    def run_global(self, source, chunkname, ctx):
        """Run the ``lua:`` block; return ``(status, message, where)`` as :meth:`run`."""
        return self._run(self._api.run_global, source, chunkname, ctx, with_names=False)

    def run(self, source, chunkname, ctx):
        """Evaluate one chunk; return ``(status, text, where)``.

        *status*: ``ok`` (*text* is the value as JSON), ``absent`` (nil), ``value``
        (the value cannot be a config value: *text* says why, *where* is the path
        inside it), ``error`` (a Lua error), ``time`` or ``memory`` (a limit).
        Re-raises an exception (GreenletExit, KeyboardInterrupt) that interrupted it.
        """
        return self._run(self._api.run, source, chunkname, ctx, with_names=True)

    def close(self):
        """End evaluation for good and drop the runtime."""
        if self._runtime is not None:
            try:
                self._call(self._api.close)
            except self._lua_error:
                pass  # only marks the kernel stopped; the runtime goes away regardless
            self._runtime = self._api = None

    def _run(self, function, source, chunkname, ctx, with_names):
        tables = [ctx.get(key) or {} for key in ("env", "sys_env", "env_file")]
        size = len(source) + sum(len(k) + len(v) + 96 for table in tables for k, v in table.items())
        args = [source, lua_text(chunkname)]
        if with_names:
            args += [lua_text(name) if name is not None else None
                     for name in (ctx.get("service_name"), ctx.get("hook_name"))]
        try:
            self._lift_cap(size)
            args[2:2] = [self._runtime.table_from({lua_text(k): lua_text(v) for k, v in table.items()})
                         for table in tables]
            status, text, *where = self._call(function, *args)
        except self._memory_error:
            return "memory", "", None
        except self._lua_error as error:  # not the user's Lua: the kernel could not even start the chunk
            return "error", f"Lua failed: {error}", None
        return status.decode(), text.decode("utf-8", "replace"), where[0].decode() if where and where[0] else None

    def _trusted(self, name):
        """Return the chunk of ``lualib/<name>``; its errors read ``kepler:<line>:``."""
        source = _lualib(name)
        self._lift_cap(len(source))
        result = self._runtime.globals().load(source, b"=kepler", b"t")
        if isinstance(result, tuple):  # nil, message
            raise self._lua_error(f"{name}: {result[1].decode()}")
        return result

    def _call(self, function, *args):
        """Call into Lua with the budget counting; re-raise what interrupted it."""
        self.budget.start()
        try:
            return function(*args)
        finally:
            self.budget.stop()
            if self._runtime is not None:
                self._arm()
            if self.interruption is not None:
                interruption, self.interruption = self.interruption, None
                raise interruption

    def tick(self):
        """Called by the Lua hook: GO_ON, OUT_OF_TIME or INTERRUPTED."""
        try:
            return self.budget.tick()
        except BaseException as error:  # KeyboardInterrupt (Ctrl+C): re-raised once Lua unwound
            self.interruption = error
            return INTERRUPTED

    def _read_module(self, name):
        """Called by ``require``: ``(source, chunk name)`` or ``(None, problem)``."""
        try:
            source, chunkname = self._load_module(name.decode("utf-8", "replace"))
        except ModuleRefused as problem:
            return None, str(problem).encode()
        self._lift_cap(len(source) + len(chunkname))
        return source, b"=" + lua_text(chunkname)

    def _lift_cap(self, size):
        used = self._runtime.get_memory_used() or 0
        self._runtime.set_max_memory(max(used, self.memory_limit) + 2 * size + HEADROOM)

    def _arm(self):
        self._runtime.set_max_memory(self.memory_limit)
