-- Keep Kepler's Lua sandbox responsive while matching strings (SPEC §6).
--
-- Lua's pattern matcher runs in C, where no count hook fires: a short pattern
-- such as ('a'):rep(200):find('.-.-.-.-x') backtracks for minutes and would
-- freeze the daemon. The sandbox's find, match, gmatch and gsub therefore
-- estimate the worst-case work of each call first: cheap calls (nearly all of
-- them) go to C; the others run the Lua port in patterns.lua, where the CPU hook
-- keeps counting and the daemon keeps serving other clients.
--
-- Trusted code. Arguments: the tables of errors.lua and patterns.lua.
-- Returns the safe find, match, gmatch and gsub, and `cheap` (the estimate).

local errors, port = ...
local relocate, PROBLEM = errors.relocate, port.PROBLEM
local start_index, has_specials = port.start_index, port.has_specials
local native = {find = string.find, match = string.match, gmatch = string.gmatch, gsub = string.gsub}
local byte, tostring, tonumber, type, error, pcall = string.byte, tostring, tonumber, type, error, pcall
local tointeger, maxinteger = math.tointeger, math.maxinteger

-- Above this estimate (roughly 20 ms of C in the worst case) a call runs in Lua.
local BUDGET = 1e8
local L_ESC = 37

-- The cost estimate ----------------------------------------------------------

local function set_end(p, i)  -- index after the set '[...]' starting at i, or nil
  local plen = #p
  i = i + 1
  if byte(p, i) == 94 then i = i + 1 end
  repeat
    if i > plen then return nil end
    local c = byte(p, i)
    i = i + 1
    if c == L_ESC and i <= plen then i = i + 1 end
  until byte(p, i) == 93
  return i + 1
end

-- Count the items that make the matcher backtrack or scan ahead; nil if malformed.
local function backtracking_items(p, i)
  local plen, q = #p, 0
  while i <= plen do
    local c, d = byte(p, i, i + 1)
    local single = true
    if c == 40 or c == 41 then i, single = i + 1, false
    elseif c == L_ESC and d == nil then return nil
    elseif c == L_ESC and d == 98 then i, q, single = i + 4, q + 1, false
    elseif c == L_ESC and d == 102 then
      if byte(p, i + 2) ~= 91 then return nil end
      i, single = set_end(p, i + 2), false
      if i == nil then return nil end
    elseif c == L_ESC and d >= 48 and d <= 57 then i, q, single = i + 2, q + 1, false
    elseif c == L_ESC then i = i + 2
    elseif c == 91 then
      i = set_end(p, i)
      if i == nil then return nil end
    else i = i + 1
    end
    if single then
      local quantifier = byte(p, i)
      if quantifier == 42 or quantifier == 43 or quantifier == 45 or quantifier == 63 then i, q = i + 1, q + 1 end
    end
  end
  return q
end

-- Whether C can match pattern p against n subject bytes within the budget.
local function cheap(p, n, anchors)
  local anchored = anchors and byte(p, 1) == 94
  local q = backtracking_items(p, anchored and 2 or 1)
  if q == nil then return false end  -- malformed: the port raises the same error
  local cost = (anchored and 1 or n + 1) * (q + 1) * (#p + 1)
  for k = 1, q do
    cost = cost * (n + k) / k
    if cost > BUDGET then return false end
  end
  return cost <= BUDGET
end

-- The safe functions ---------------------------------------------------------

-- Re-raise an error of the port at the line of the user's call, others unchanged.
-- Called in tail position, so level 2 is the user's function.
local function finish(ok, ...)
  if ok then return ... end
  local problem = ...
  if type(problem) == "table" and problem[PROBLEM] then error(problem[PROBLEM], 2) end
  error(problem, 0)
end

local function text(value)
  local kind = type(value)
  if kind == "string" then return value end
  if kind == "number" then return tostring(value) end
  return nil
end

local function integer(value, default)
  if value == nil then return default end
  return tointeger(tonumber(value))
end

-- Arguments C would refuse go to C, which raises its usual error before matching.
local safe = {}

function safe.find(s, p, init, plain)
  local ss, pp, ii = text(s), text(p), integer(init, 1)
  if not (ss and pp and ii) then return relocate(pcall(native.find, s, p, init, plain)) end
  local n = #ss - start_index(ii, #ss) + 1
  local fits
  if plain or not has_specials(pp) then fits = n * #pp <= BUDGET else fits = cheap(pp, n, true) end
  if fits then return relocate(pcall(native.find, s, p, init, plain)) end
  return finish(pcall(port.find, ss, pp, ii, plain))
end

function safe.match(s, p, init)
  local ss, pp, ii = text(s), text(p), integer(init, 1)
  if not (ss and pp and ii) or cheap(pp, #ss - start_index(ii, #ss) + 1, true) then
    return relocate(pcall(native.match, s, p, init))
  end
  return finish(pcall(port.match, ss, pp, ii))
end

function safe.gmatch(s, p, init)
  local ss, pp, ii = text(s), text(p), integer(init, 1)
  if not (ss and pp and ii) or cheap(pp, #ss - start_index(ii, #ss) + 1, false) then
    return relocate(pcall(native.gmatch, s, p, init))
  end
  local step = port.gmatch(ss, pp, ii)
  return function() return finish(pcall(step)) end
end

function safe.gsub(s, p, repl, max_n)
  local ss, pp, nn = text(s), text(p), integer(max_n, maxinteger)
  local kind = type(repl)
  local usable = kind == "string" or kind == "number" or kind == "function" or kind == "table"
  if not (ss and pp and nn and usable) or cheap(pp, #ss, true) then
    return relocate(pcall(native.gsub, s, p, repl, max_n))
  end
  return finish(pcall(port.gsub, ss, pp, repl, max_n and nn))
end

return {find = safe.find, match = safe.match, gmatch = safe.gmatch, gsub = safe.gsub, cheap = cheap}
