"""The Lua sandbox: only the listed globals, read-only ctx, no way out, memory and CPU caps (SPEC §6)."""

import inspect
import subprocess
import sys
import textwrap

import pytest

from keplerd.config.bake import bake, check
from keplerd.config.errors import ConfigError
from keplerd.config.luasandbox import GO_ON, OUT_OF_TIME, CpuBudget, Sandbox

MiB = 1024 * 1024


def evaluate(tmp_path, chunk, **options):
    """Return the command a chunk computes (it must return a list of strings), or the bake errors."""
    path = tmp_path / "kepler.yaml"
    path.write_text("services:\n  web:\n    command: !lua |\n" + textwrap.indent(textwrap.dedent(chunk), "      "))
    try:
        return bake(str(path), {"HOME": "/root"}, "/root", **options).snapshot["services"]["web"]["command"]
    except ConfigError as error:
        return error.errors


FORBIDDEN = ["io", "os.execute", "os.remove", "os.rename", "os.exit", "os.getenv", "os.tmpname", "debug",
             "loadfile", "dofile", "package", "string.dump", '("").dump', "collectgarbage", "python", "coroutine",
             "print", "loadstring", "_G", "module", "setfenv", "getfenv", "newproxy", "jit"]


@pytest.mark.parametrize("expression", FORBIDDEN)
def test_forbidden_globals_are_absent(tmp_path, expression):
    assert evaluate(tmp_path, f"return {{type({expression})}}") == ["nil"]


ALLOWED = ["string.format", "string.rep", "table.concat", "table.unpack", "unpack", "math.floor", "utf8.char",
           "tonumber", "tostring", "pairs", "ipairs", "next", "select", "type", "error", "assert", "pcall", "xpcall",
           "os.time", "os.date", "os.clock", "require", "load", "getmetatable", "setmetatable", "rawget", "rawset",
           "rawequal", "rawlen", "global", "ctx"]


@pytest.mark.parametrize("expression", ALLOWED)
def test_listed_globals_are_available(tmp_path, expression):
    assert evaluate(tmp_path, f"return {{type({expression})}}") != ["nil"]


def test_the_global_table_of_the_host_is_out_of_reach(tmp_path):
    result = evaluate(tmp_path, """\
        local reached = {}
        for _, f in ipairs({load("return _G"), load("return python"), load("return debug")}) do
          reached[#reached + 1] = type(f())
        end
        return reached
        """)
    assert result == ["nil", "nil", "nil"]


# -- read-only ctx ---------------------------------------------------------------------------


@pytest.mark.parametrize("write", [
    'ctx.env.NEW = "1"',
    'ctx.env.HOME = "/tmp"',
    'ctx.sys_env.HOME = nil',
    'ctx.env_file.X = "1"',
    'ctx.service_name = "db"',
    'ctx.env = {}',
    'rawset(ctx.env, "HOME", "/tmp")',
    'rawset(ctx, "env", {})',
])
def test_writes_to_ctx_raise(tmp_path, write):
    assert evaluate(tmp_path, write) == ["kepler.yaml: services.web.command: lua:1: ctx is read-only"]


def test_table_functions_cannot_write_to_ctx(tmp_path):
    errors = evaluate(tmp_path, 'table.insert(ctx.env, "x")')
    assert errors == ["kepler.yaml: services.web.command: ctx is read-only"]


def test_metatables_of_ctx_can_be_neither_read_nor_replaced(tmp_path):
    assert evaluate(tmp_path, "return {getmetatable(ctx), getmetatable(ctx.env)}") == ["read-only", "read-only"]
    assert evaluate(tmp_path, "setmetatable(ctx.env, {})") == [
        "kepler.yaml: services.web.command: lua:1: cannot change a protected metatable"]


def test_iterating_ctx_never_hands_out_the_table_behind_it(tmp_path):
    result = evaluate(tmp_path, """\
        local iterate, state = pairs(ctx.env)
        local ok = pcall(function() state.HOME = "/tmp" end)
        local count = 0
        for name, value in pairs(ctx.env) do count = count + 1 end
        return {tostring(ok), ctx.env.HOME, tostring(count), next(ctx.env), rawget(ctx.env, "HOME")}
        """)
    assert result == ["false", "/root", "1", "HOME", "/root"]


def test_a_ctx_table_can_be_returned_as_a_value(tmp_path):
    path = tmp_path / "kepler.yaml"
    path.write_text("services:\n  web:\n    command: [x]\n    environment: !lua return ctx.sys_env\n")
    assert bake(str(path), {"A": "1"}, "/root").snapshot["services"]["web"]["env"] == {"A": "1"}


# -- escapes ---------------------------------------------------------------------------------


def test_binary_chunks_cannot_be_loaded(tmp_path):
    result = evaluate(tmp_path, """\
        local binary = "\\27Lua\\84\\0"
        local by_mode, by_default = select(2, load(binary, "x", "b")), select(2, load(binary))
        return {tostring(load("return 1", "x", "b")), by_mode, by_default}
        """)
    assert result == ["nil", "load: only text chunks are allowed", "attempt to load a binary chunk (mode is 't')"]


def test_string_dump_is_gone_also_through_the_string_metatable(tmp_path):
    assert evaluate(tmp_path, 'return {type(("").dump), tostring(getmetatable(""))}') == ["nil", "false"]


def test_gc_metamethods_are_refused(tmp_path):
    assert evaluate(tmp_path, "setmetatable({}, {__gc = function() while true do end end})") == [
        "kepler.yaml: services.web.command: lua:1: setmetatable: __gc metamethods are not allowed"]


# -- limits ----------------------------------------------------------------------------------


TIME_LIMIT = ["kepler.yaml: services.web.command: Lua time limit exceeded (0.3s of CPU per bake)"]


@pytest.mark.parametrize("chunk", [
    "while true do end",
    "while true do pcall(function() while true do end end) end",
    "while true do xpcall(function() while true do end end, function() while true do end end) end",
    'string.gsub("abc", "b", function() while true do end end)',
    "local t = {} for i = 1, 10000 do t[i] = i end table.sort(t, function(a, b) while true do end end)",
    "local function f() return f() end return f()",
    'return {("a"):rep(200):find(".-.-.-.-x")}',  # minutes of backtracking in C
    'return {("a"):rep(300):gsub("a-a-a-a-b", "")}',
])
def test_endless_computations_end_at_the_time_limit(tmp_path, chunk):
    assert evaluate(tmp_path, chunk, lua_time_limit=0.3) == TIME_LIMIT  # a hang is pytest-timeout's to catch


def test_the_time_limit_is_for_the_whole_bake(tmp_path):
    path = tmp_path / "kepler.yaml"
    spin = "!lua 'local t = os.clock() while os.clock() - t < 0.2 do end return {\"x\"}'"
    path.write_text(f"services:\n  a:\n    command: {spin}\n  b:\n    command: {spin}\n  c:\n    command: {spin}\n")
    with pytest.raises(ConfigError) as caught:
        bake(str(path), {}, "/", lua_time_limit=0.5)
    assert caught.value.errors == ["kepler.yaml: services.c.command: Lua time limit exceeded (0.5s of CPU per bake)"]


@pytest.mark.parametrize("chunk", [
    'local t = {} for i = 1, 1e9 do t[i] = ("x"):rep(100) .. i end',
    'pcall(function() local t = {} for i = 1, 1e9 do t[i] = ("x"):rep(100) .. i end end) return {"survived"}',
    'return {("x"):rep(2^29)}',
    'local s = "x" while true do s = s .. s end',
])
def test_memory_bombs_end_at_the_memory_limit(tmp_path, chunk):
    assert evaluate(tmp_path, chunk, lua_memory_limit=16 * MiB) == [
        "kepler.yaml: services.web.command: Lua memory limit exceeded (16 MiB per bake)"]


def test_after_a_limit_no_other_chunk_runs(tmp_path):
    path = tmp_path / "kepler.yaml"
    path.write_text("services:\n  a:\n    command: !lua while true do end\n  b:\n    command: !lua error('b')\n"
                    "  c:\n    stop_signal: NOPE\n")
    with pytest.raises(ConfigError) as caught:
        bake(str(path), {}, "/", lua_time_limit=0.2)
    assert caught.value.errors == [
        "kepler.yaml: services.a.command: Lua time limit exceeded (0.2s of CPU per bake)",
        "kepler.yaml: services.c.command: required key missing",
        "kepler.yaml: services.c.stop_signal: invalid signal 'NOPE'",
    ]


@pytest.mark.parametrize("function", [bake, check])
def test_the_default_limits_are_64_mib_and_2_seconds(function):
    parameters = inspect.signature(function).parameters
    assert parameters["lua_memory_limit"].default == 64 * MiB
    assert parameters["lua_time_limit"].default == 2.0


def test_values_pushed_into_a_full_runtime_do_not_abort_the_process():
    # Without lifting the cap, lupa's unprotected push of the next ctx makes Lua panic (abort()).
    code = textwrap.dedent("""\
        from keplerd.config.luasandbox import Sandbox
        sandbox = Sandbox(8 << 20, 5.0, None)
        empty = {"env": {}, "sys_env": {}, "env_file": {}}
        fill = b"pcall(function() local i = 0 while true do i = i + 1; global[i] = ('x'):rep(64) .. i end end)"
        print(sandbox.run_global(fill, "=lua", empty)[0])
        big = {f"K{i}": "v" * 1000 for i in range(2000)}
        print(sandbox.run(b"return 1", "=lua", {"env": big, "sys_env": big, "env_file": {}})[0])
        """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout.split()) == (0, ["memory", "memory"]), result.stderr


# -- the CPU budget and interruptions --------------------------------------------------------


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_budget_counts_only_time_spent_in_lua():
    clock = FakeClock()
    budget = CpuBudget(1.0, clock=clock)
    budget.start()
    clock.now = 0.4
    budget.stop()
    clock.now = 5.0  # Python work between chunks does not count
    budget.start()
    clock.now = 5.5
    assert budget.tick() == GO_ON
    clock.now = 5.7
    assert budget.tick() == OUT_OF_TIME


class InterruptingClock(FakeClock):
    """A clock read once by an interruption, as Ctrl+C arrives inside the CPU hook."""

    def __init__(self, readings_before_interrupt):
        super().__init__()
        self.readings_left = readings_before_interrupt

    def __call__(self):
        self.readings_left -= 1
        if self.readings_left == -1:
            raise KeyboardInterrupt
        return self.now


def test_an_interruption_inside_the_hook_is_raised_once_lua_unwound():
    sandbox = Sandbox(64 * MiB, 5.0, None)
    sandbox.budget = CpuBudget(5.0, clock=InterruptingClock(readings_before_interrupt=3))
    ctx = {"env": {}, "sys_env": {}, "env_file": {}}
    with pytest.raises(KeyboardInterrupt):
        sandbox.run(b"while true do pcall(function() while true do end end) end", "=lua", ctx)
    assert sandbox.run(b"return 1", "=lua", ctx)[0] == "abort"
    sandbox.close()


def test_a_limit_too_small_for_the_sandbox_itself_is_a_memory_error(tmp_path):
    assert evaluate(tmp_path, 'return {"x"}', lua_memory_limit=50_000) == [
        "kepler.yaml: services.web.command: Lua memory limit exceeded (50000 bytes per bake)"]
