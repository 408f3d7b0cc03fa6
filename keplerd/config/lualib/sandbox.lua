-- The trusted kernel of Kepler's Lua sandbox (SPEC §6), run once per bake in a
-- fresh runtime before any user code.
--
-- It builds the environment user chunks run in and returns the small API Python
-- drives. User code never reaches this file's locals (the sandbox has no
-- `debug`), so the Python callbacks, the real `load`, the hook and the data
-- behind read-only tables stay out of its reach. Everything used after user
-- code may have run is captured first: a chunk may replace the sandbox's
-- `string.format`, never these locals.
--
-- Arguments: tick() -> 0 to go on, 1 out of time, 2 interrupted (called every
-- HOOK_COUNT instructions); read_module(name) -> source, chunkname | nil, problem;
-- arm() re-applies the memory cap once inside protected code; errors, the table
-- of errors.lua; patterns, the safe find/match/gmatch/gsub; encode(value,
-- contents) -> json | nil, where, problem; hook_count.

local tick, read_module, arm, errors, patterns, encode, hook_count = ...

local error, type, next, pcall, xpcall, select, tostring = error, type, next, pcall, xpcall, select, tostring
local setmetatable, getmetatable = setmetatable, getmetatable
local rawget, rawset, rawequal, rawlen, load = rawget, rawset, rawequal, rawlen, load
local sethook, getinfo = debug.sethook, debug.getinfo
local find = string.find
local relocate = errors.relocate

local MEMORY, STOPPED = errors.MEMORY, errors.STOPPED
local VERDICTS = {[1] = "time", [2] = "abort"}

-- Why evaluation stopped for good: nil, "time", "memory", "abort" or "closed".
local stopped = nil

local function halt() error(STOPPED, 0) end

sethook(function()
  if stopped then halt() end
  local verdict = VERDICTS[tick()]
  if verdict then
    stopped = verdict
    halt()
  end
end, "", hook_count)

-- A user pcall must not swallow the end of evaluation: re-raise once it stopped.
local function checked(ok, ...)
  if stopped then halt() end
  if not ok and (...) == MEMORY then
    stopped = "memory"
    halt()
  end
  return ok, ...
end

-- Read-only tables: an empty proxy in front of the data, with a protected metatable.
local frozen = setmetatable({}, {__mode = "k"})

local function refuse() error("ctx is read-only", 2) end

local function freeze(data)
  local proxy = {}
  frozen[proxy] = data
  return setmetatable(proxy, {
    __index = data,
    __newindex = refuse,
    __len = function() return #data end,
    -- The iterator is a closure: handing out `next, data` would leak the data table.
    __pairs = function(t) return function(_, key) return next(data, key) end, t, nil end,
    __metatable = "read-only",
  })
end

local function contents(t) return frozen[t] or t end

-- The globals user code sees (SPEC §6), plus what reading and writing tables needs.
local base, loaded, LOADING = {}, {}, {}

local function copy(library, except)
  local result = {}
  for key, value in next, library do
    if not except[key] then result[key] = value end
  end
  return result
end

local sandbox_string = copy(string, {dump = true})
for _, name in next, {"find", "match", "gmatch", "gsub"} do
  sandbox_string[name] = patterns[name]
end
local string_metatable = getmetatable("")
string_metatable.__index = sandbox_string
string_metatable.__metatable = false

local native_sort, sort_limit = table.sort, 4096
local function less(a, b) return a < b end
local sandbox_table = copy(table, {})
-- Sorting runs in C: for a long list, compare in Lua so the hook keeps counting.
sandbox_table.sort = function(list, comparator)
  if comparator == nil and type(list) == "table" and #list > sort_limit then comparator = less end
  return relocate(pcall(native_sort, list, comparator))
end

local function sandbox_require(name)
  if type(name) ~= "string" then error("require: the module name must be a string", 2) end
  local value = loaded[name]
  if value == LOADING then error("require: module '" .. name .. "' requires itself", 2) end
  if value ~= nil then return value end
  local source, chunkname = read_module(name)
  arm()
  if source == nil then error("require: " .. chunkname, 2) end
  local chunk, problem = load(source, chunkname, "t", base)
  if not chunk then error(problem, 0) end
  loaded[name] = LOADING
  local ok, result = pcall(chunk, name)
  if stopped then halt() end
  if not ok then
    loaded[name] = nil
    error(result, 0)
  end
  if result == nil then result = true end
  loaded[name] = result
  return result
end

local function sandbox_load(chunk, chunkname, mode, ...)
  if mode ~= nil and (type(mode) ~= "string" or not find(mode, "t", 1, true)) then
    return nil, "load: only text chunks are allowed"
  end
  if select("#", ...) == 0 then return load(chunk, chunkname, "t", base) end
  return load(chunk, chunkname, "t", (...))
end

local function sandbox_setmetatable(t, metatable)
  if type(metatable) == "table" and rawget(metatable, "__gc") ~= nil then
    error("setmetatable: __gc metamethods are not allowed", 2)
  end
  return relocate(pcall(setmetatable, t, metatable))
end

local function fill_base()
  base.string, base.table = sandbox_string, sandbox_table
  base.math, base.utf8 = copy(math, {}), copy(utf8, {})
  base.os = {time = os.time, date = os.date, clock = os.clock}
  base.tonumber, base.tostring, base.type, base.select = tonumber, tostring, type, select
  base.pairs, base.ipairs, base.error, base.assert = pairs, ipairs, error, assert
  base.unpack = table.unpack
  base.next = function(t, key) return relocate(pcall(next, contents(t), key)) end
  base.pcall = function(f, ...) return checked(pcall(f, ...)) end
  -- Lua runs a message handler before unwinding, and still inside the hook when the
  -- hook raised the stop: with hooks off, a looping handler would never end.
  base.xpcall = function(f, handler, ...)
    local function guarded(problem)
      if stopped then return problem end
      return handler(problem)
    end
    return checked(xpcall(f, guarded, ...))
  end
  base.getmetatable, base.setmetatable = getmetatable, sandbox_setmetatable
  base.rawequal = rawequal
  base.rawget = function(t, key) return relocate(pcall(rawget, contents(t), key)) end
  base.rawlen = function(t) return relocate(pcall(rawlen, contents(t))) end
  base.rawset = function(t, key, value)
    if frozen[t] then error("ctx is read-only", 2) end
    return relocate(pcall(rawset, t, key, value))
  end
  base.require, base.load = sandbox_require, sandbox_load
  base.global = {}
end
fill_base()

-- Nothing outside the sandbox needs the host's global table any more.
for _, name in next, {"python", "io", "os", "debug", "package", "require", "dofile", "loadfile", "load",
                      "collectgarbage", "print", "coroutine"} do
  _G[name] = nil
end

local function describe(problem)
  local kind = type(problem)
  if kind == "string" or kind == "number" then return tostring(problem) end
  return "(error object is a " .. kind .. " value)"
end

-- xpcall handler: an error object that is not text (error({})) gets the place it was
-- raised, as error("text") would (`lua:3: ...`); text and the kernel's own sentinels pass.
local function locate(problem)
  local kind = type(problem)
  if kind == "string" or kind == "number" then return problem end
  for level = 2, 20 do
    local info = getinfo(level, "Sl")
    if not info then break end
    if info.what ~= "C" and info.currentline and info.currentline > 0 then
      return info.short_src .. ":" .. info.currentline .. ": " .. describe(problem)
    end
  end
  return describe(problem)
end

-- Run a chunk in *env*; return "ok", its value, or a failure: status, message.
local function call_chunk(source, chunkname, env)
  local chunk, problem = load(source, chunkname, "t", env)
  if not chunk then return "error", problem end
  local ok, value = xpcall(chunk, locate)
  if stopped then return stopped, "" end
  if ok then return "ok", value end
  if value == MEMORY then
    stopped = "memory"
    return "memory", ""
  end
  return "error", describe(value)
end

-- Return "ok", json | "absent", "" | "value", problem, where | a failure as call_chunk.
local function convert(value)
  if value == nil then return "absent", "" end
  local ok, json, where, problem = pcall(encode, value, contents)
  if stopped then return stopped, "" end
  if not ok then
    if json ~= MEMORY then return "error", "cannot convert the value: " .. describe(json) end
    stopped = "memory"
    return "memory", ""
  end
  if json == nil then return "value", problem, where end
  return "ok", json
end

local function make_ctx(env, sys_env, env_file, service_name, hook_name)
  return freeze({env = freeze(env), sys_env = freeze(sys_env), env_file = freeze(env_file),
                 service_name = service_name, hook_name = hook_name})
end

local api = {}

-- The top-level `lua:` block: runs in the shared environment itself.
function api.run_global(source, chunkname, env, sys_env, env_file)
  arm()
  if stopped then return stopped, "" end
  base.ctx = make_ctx(env, sys_env, env_file, nil, nil)
  local status, message = call_chunk(source, chunkname, base)
  if status == "ok" then return "ok", "" end  -- its value, if any, is not used
  return status, message
end

-- Any other chunk: its own globals, falling back to the shared ones.
function api.run(source, chunkname, env, sys_env, env_file, service_name, hook_name)
  arm()
  if stopped then return stopped, "" end
  -- Functions defined in `lua:` read the global `ctx` too: point it at this chunk's.
  base.ctx = make_ctx(env, sys_env, env_file, service_name, hook_name)
  local status, value = call_chunk(source, chunkname, setmetatable({}, {__index = base}))
  if status ~= "ok" then return status, value end
  return convert(value)
end

function api.close()
  stopped = stopped or "closed"
end

return api
