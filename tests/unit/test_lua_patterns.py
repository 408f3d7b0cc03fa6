"""The Lua port of the pattern matcher agrees with C, and only calls that may be slow use it (SPEC §6)."""

import os
import random

import pytest
from lupa import lua54

import keplerd.config

LUALIB = os.path.join(os.path.dirname(keplerd.config.__file__), "lualib")

# Run `f` (C or the port) and describe its results (or its error, without position) as one string.
COMPARE = b"""
local port, fname = ...
local function text(ok, ...)
  local parts = {tostring(ok), tostring(select("#", ...))}
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    if type(v) == "table" then local _, message = next(v); v = message end
    if type(v) == "string" and not ok then v = v:gsub("^.-:%d+: ", "") end
    parts[#parts + 1] = tostring(v)
  end
  return table.concat(parts, " ; ")
end
local function run(f, ...)
  if fname ~= "gmatch" then return text(pcall(f, ...)) end
  return text(pcall(function(...)
    local out = {}
    for a, b in f(...) do
      out[#out + 1] = tostring(a) .. "|" .. tostring(b)
      if #out > 20 then break end
    end
    return table.concat(out, ",")
  end, ...))
end
return function(...) return run(string[fname], ...), run(port[fname], ...) end
"""

PATTERNS = ["^%s*(.-)%s*$", "(%w+)=(%w+)", "%bxy", "%b()", "%f[%w]%w+", "()a()", "(a)%1", "[^%s]+", "[a-c%d]*",
            "%", "[a", "(()", "%g", "a-b", "^$", "$", "a$b", "[]]", "[^]]", "((a)(b))", "%0", "%1", "x*", "",
            "[%a_][%w_]*", "%d+%.?%d*", "^(%w+):(.*)$", "%f[%a]"]
SUBJECTS = ["", "a", "hello world", "  trim me  ", "k=v x=y", "(a(b)c)", "aab", "THE (quick) fox", "a$b",
            "]]", "x\0y", "\xe9t\xe9", "1.5 and 22"]
TOKENS = ["a", "b", "%a", "%d", "%S", "%W", ".", "[a-c]", "[^%d]", "[%a_]", "(", ")", "()", "*", "+", "-", "?",
          "^", "$", "%b()", "%f[%a]", "%f[%A]", "%1", "%2", "[]", "x", "1", "%.", "%"]


@pytest.fixture(scope="module")
def lua():
    runtime = lua54.LuaRuntime(encoding=None, register_eval=False, register_builtins=False,
                               unpack_returned_tuples=True)
    errors = runtime.execute(read("errors.lua"))
    port = runtime.execute(read("patterns.lua"))
    return runtime, port, runtime.execute(read("guard.lua"), errors, port)


def read(name):
    with open(os.path.join(LUALIB, name), "rb") as file:
        return file.read()


def comparer(lua, fname):
    runtime, port, _ = lua
    return runtime.execute(COMPARE, port, fname.encode())


def as_lua(value):
    return value.encode("latin-1") if isinstance(value, str) else value


@pytest.mark.parametrize("fname", ["find", "match", "gmatch"])
def test_port_matches_c_on_chosen_patterns(lua, fname):
    compare = comparer(lua, fname)
    for pattern in PATTERNS:
        for subject in SUBJECTS:
            for init in (None, 1, 2, -3, 0, 100):
                native, port = compare(as_lua(subject), as_lua(pattern), init)
                assert native == port, (fname, subject, pattern, init)


def test_port_find_plain_matches_c(lua):
    compare = comparer(lua, "find")
    for pattern in PATTERNS + ["o w", "a"]:
        for subject in SUBJECTS:
            for init in (None, 1, 3, -2, 40):
                native, port = compare(as_lua(subject), as_lua(pattern), init, True)
                assert native == port, (subject, pattern, init)


def test_port_gsub_matches_c_with_every_kind_of_replacement(lua):
    runtime = lua[0]
    compare = comparer(lua, "gsub")
    function = runtime.eval(b"function(a, b) if a == 'a' then return nil end return '[' .. a .. tostring(b) .. ']' end")
    replacements = [b"<%0>", b"%1-%1", b"%%", b"%2", b"x%", 7, runtime.table_from({b"a": b"A", b"b": False}), function]
    for pattern in PATTERNS:
        for subject in SUBJECTS:
            for replacement in replacements:
                for limit in (None, 1):
                    native, port = compare(as_lua(subject), as_lua(pattern), replacement, limit)
                    assert native == port, (subject, pattern, replacement, limit)


@pytest.mark.parametrize("fname", ["find", "match", "gmatch", "gsub"])
def test_port_matches_c_on_random_patterns(lua, fname):
    compare = comparer(lua, fname)
    rng = random.Random(fname)
    for _ in range(3000):
        pattern = "".join(rng.choice(TOKENS) for _ in range(rng.randint(0, 6)))
        subject = "".join(rng.choice("abc12() _Z.\xe9") for _ in range(rng.randint(0, 12)))
        extra = rng.choice([b"<%0>", b"%1", b"z"]) if fname == "gsub" else rng.choice([None, 1, 3, -2, 20])
        native, port = compare(as_lua(subject), as_lua(pattern), extra)
        assert native == port, (subject, pattern, extra)


@pytest.mark.parametrize("pattern, length, cheap", [
    ("(%w+)=(%w+)", 100, True),
    ("^%s*(.-)%s*$", 100, True),
    ("[^:]+", 2000, True),
    ("^%s*(.-)%s*$", 5000, False),
    (".-.-.-.-x", 200, False),
    ("[", 10, False),  # malformed: the port raises C's error
])
def test_only_calls_that_may_be_slow_in_c_use_the_port(lua, pattern, length, cheap):
    guard = lua[2]
    assert guard[b"cheap"](pattern.encode(), length, True) is cheap


def test_safe_functions_return_what_c_returns(lua):
    runtime, _, guard = lua
    check = runtime.execute(b"""
        local safe = ...
        local long = ("ab "):rep(3000)
        assert(select(2, safe.gsub(long, "%s*(.-)%s*", "%1")) == select(2, string.gsub(long, "%s*(.-)%s*", "%1")))
        assert(safe.find(long, "ab ab", 100, true) == string.find(long, "ab ab", 100, true))
        local n = 0
        for word in safe.gmatch(long, "a.-b") do n = n + 1 end
        return n, safe.match("key = value", "^(%w+)%s*=%s*(%w+)$")
    """, guard)
    assert check == (3000, b"key", b"value")
