-- Turn the value a config chunk returned into JSON text for Python (SPEC §6).
--
-- Strings, numbers, booleans, list tables (keys 1..n) and map tables (string
-- keys) convert; an empty table is an empty list; map keys come out sorted,
-- since Lua tables have no order. Anything else is a problem located by its
-- path inside the value (list indexes from 0, as in every Kepler key path).
-- Reads tables raw: no user metamethod runs while converting.
--
-- Trusted code: returns encode(value, contents) -> json | nil, where, problem,
-- where contents(t) gives the data behind a read-only ctx table.

local type, next, rawget, error, pcall, tostring = type, next, rawget, error, pcall, tostring
local format, gsub, byte, find = string.format, string.gsub, string.byte, string.find
local mathtype, tointeger, huge = math.type, math.tointeger, math.huge
local concat, sort = table.concat, table.sort
local utf8len = utf8.len

local MAX_DEPTH = 100
local PROBLEM = {}
local ESCAPES = {['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f', ['\n'] = '\\n', ['\r'] = '\\r',
                 ['\t'] = '\\t'}

local function escape(c) return ESCAPES[c] or format("\\u%04x", byte(c)) end

return function(value, contents)
  local out, path, open = {}, {}, {}

  local function fail(message) error({[PROBLEM] = message}, 0) end

  local function put(piece) out[#out + 1] = piece end

  local function put_string(s)
    if not utf8len(s) then fail("Lua string is not valid UTF-8") end
    if find(s, "\0", 1, true) then fail("Lua string contains a NUL character") end
    put('"' .. gsub(s, '[%c"\\]', escape) .. '"')
  end

  local function put_number(n)
    if mathtype(n) == "integer" then return put(format("%d", n)) end
    if n ~= n or n == huge or n == -huge then fail("Lua number is not finite") end
    local whole = tointeger(n)
    put(whole and format("%d", whole) or format("%.17g", n))
  end

  local put_value

  -- Return "list" or "map" and the keys in output order.
  local function shape(t)
    local count, strings, largest = 0, {}, 0
    for key in next, t do
      count = count + 1
      if type(key) == "string" then
        strings[#strings + 1] = key
      elseif mathtype(key) == "integer" and key > 0 then
        if key > largest then largest = key end
      else
        fail(format("Lua table has the key %s (a list has keys 1..n, a map string keys)", tostring(key)))
      end
    end
    if count > 0 and #strings == count then
      sort(strings)
      return "map", strings
    end
    if #strings > 0 then fail("Lua table mixes list items and map keys") end
    if largest ~= count then fail("Lua list has holes (keys must be 1..n)") end
    return "list", count
  end

  local function put_table(t, depth)
    t = contents(t)
    if open[t] then fail("Lua table contains itself") end
    if depth > MAX_DEPTH then fail(format("Lua tables are nested more than %d deep", MAX_DEPTH)) end
    open[t] = true
    local kind, keys = shape(t)
    local n = #path + 1
    if kind == "list" then
      put("[")
      for i = 1, keys do
        if i > 1 then put(",") end
        path[n] = tostring(i - 1)
        put_value(rawget(t, i), depth)
      end
      put("]")
    else
      put("{")
      for i, key in next, keys do
        if i > 1 then put(",") end
        path[n] = key
        put_string(key)
        put(":")
        put_value(rawget(t, key), depth)
      end
      put("}")
    end
    path[n] = nil
    open[t] = nil
  end

  function put_value(v, depth)
    local kind = type(v)
    if kind == "string" then put_string(v)
    elseif kind == "number" then put_number(v)
    elseif kind == "boolean" then put(v and "true" or "false")
    elseif kind == "table" then put_table(v, depth + 1)
    else fail(format("a Lua %s cannot be a config value", kind))
    end
  end

  local ok, problem = pcall(put_value, value, 0)
  if ok then return concat(out) end
  if type(problem) == "table" and rawget(problem, PROBLEM) then return nil, concat(path, "."), problem[PROBLEM] end
  error(problem, 0)  -- the time or memory limit: not a problem of the value
end
