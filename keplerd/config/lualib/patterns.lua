-- Lua's string matching, ported from lstrlib.c (Lua 5.4) to Lua (SPEC §6).
--
-- Same results and errors as string.find/match/gmatch/gsub, but running as Lua
-- code, where the sandbox's count hook fires: guard.lua sends the calls that
-- could backtrack for long in C here. Errors are raised as {[PROBLEM] = message}
-- so the caller can re-raise them at the user's line.
--
-- Trusted code: returns {find, match, gmatch, gsub} and helpers for guard.lua.

local byte, sub, char, upper = string.byte, string.sub, string.char, string.upper
local native = {find = string.find, match = string.match, gmatch = string.gmatch, gsub = string.gsub}
local format, tostring, type, error = string.format, tostring, type, error
local concat, unpack = table.concat, table.unpack

local L_ESC, MAXCAPTURES, MAXCCALLS = 37, 32, 200
local CAP_UNFINISHED, CAP_POSITION = -1, -2

-- Errors carry this key, so the caller can re-raise them at the user's line.
local PROBLEM = {}
local function perror(message) error({[PROBLEM] = message}, 0) end

-- %a, %d, ... as byte sets, asked from C once so the port follows the same locale.
local CLASSES = {}
for letter in native.gmatch("acdglpsuwx", ".") do
  local lower, negated = {}, {}
  for c = 0, 255 do
    local inside = native.find(char(c), "^%" .. letter) ~= nil
    lower[c], negated[c] = inside, not inside
  end
  CLASSES[byte(letter)], CLASSES[byte(upper(letter))] = lower, negated
end

local function match_class(c, cl)
  local set = CLASSES[cl]
  if set then return set[c] end
  return cl == c
end

local function class_end(ms, p)
  local pat, plen = ms.p, ms.plen
  local c = byte(pat, p)
  p = p + 1
  if c == L_ESC then
    if p > plen then perror("malformed pattern (ends with '%')") end
    return p + 1
  elseif c == 91 then  -- '['
    if byte(pat, p) == 94 then p = p + 1 end
    repeat
      if p > plen then perror("malformed pattern (missing ']')") end
      local cc = byte(pat, p)
      p = p + 1
      if cc == L_ESC and p <= plen then p = p + 1 end
    until byte(pat, p) == 93
    return p + 1
  end
  return p
end

local function match_bracket_class(pat, c, p, ec)
  local sig = true
  if byte(pat, p + 1) == 94 then sig, p = false, p + 1 end
  p = p + 1
  while p < ec do
    local pc = byte(pat, p)
    if pc == L_ESC then
      p = p + 1
      if match_class(c, byte(pat, p)) then return sig end
    elseif byte(pat, p + 1) == 45 and p + 2 < ec then  -- a range 'x-y'
      p = p + 2
      if byte(pat, p - 2) <= c and c <= byte(pat, p) then return sig end
    elseif pc == c then
      return sig
    end
    p = p + 1
  end
  return not sig
end

local function single_match(ms, s, p, ep)
  if s > ms.slen then return false end
  local c, pc = byte(ms.s, s), byte(ms.p, p)
  if pc == 46 then return true
  elseif pc == L_ESC then return match_class(c, byte(ms.p, p + 1))
  elseif pc == 91 then return match_bracket_class(ms.p, c, p, ep - 1)
  end
  return pc == c
end

local match  -- match(ms, s, p): index after the match of pattern[p..] at subject[s..], or nil

local function max_expand(ms, s, p, ep)
  local i = 0
  while single_match(ms, s + i, p, ep) do i = i + 1 end
  while i >= 0 do
    local res = match(ms, s + i, ep + 1)
    if res then return res end
    i = i - 1
  end
  return nil
end

local function min_expand(ms, s, p, ep)
  while true do
    local res = match(ms, s, ep + 1)
    if res then return res end
    if not single_match(ms, s, p, ep) then return nil end
    s = s + 1
  end
end

local function start_capture(ms, s, p, what)
  local level = ms.level
  if level >= MAXCAPTURES then perror("too many captures") end
  ms.cinit[level + 1], ms.clen[level + 1] = s, what
  ms.level = level + 1
  local res = match(ms, s, p)
  if res == nil then ms.level = ms.level - 1 end
  return res
end

local function end_capture(ms, s, p)
  local l = ms.level
  while l >= 1 and ms.clen[l] ~= CAP_UNFINISHED do l = l - 1 end
  if l < 1 then perror("invalid pattern capture") end
  ms.clen[l] = s - ms.cinit[l]
  local res = match(ms, s, p)
  if res == nil then ms.clen[l] = CAP_UNFINISHED end
  return res
end

local function match_capture(ms, s, digit)
  local l = digit - 49
  if l < 0 or l >= ms.level or ms.clen[l + 1] == CAP_UNFINISHED then
    perror(format("invalid capture index %%%d", l + 1))
  end
  local len, init = ms.clen[l + 1], ms.cinit[l + 1]
  if len >= 0 and ms.slen - s + 1 >= len and sub(ms.s, init, init + len - 1) == sub(ms.s, s, s + len - 1) then
    return s + len
  end
  return nil
end

local function match_balance(ms, s, p)
  if p >= ms.plen then perror("malformed pattern (missing arguments to '%b')") end
  local str, slen = ms.s, ms.slen
  if s > slen or byte(str, s) ~= byte(ms.p, p) then return nil end
  local b, e, cont = byte(ms.p, p), byte(ms.p, p + 1), 1
  s = s + 1
  while s <= slen do
    local c = byte(str, s)
    if c == e then
      cont = cont - 1
      if cont == 0 then return s + 1 end
    elseif c == b then
      cont = cont + 1
    end
    s = s + 1
  end
  return nil
end

-- One pattern item that is not a single-character class; returns s, p, done.
local function special_item(ms, s, p, pc, nxt)
  if pc == 40 then  -- '(' and '()'
    if nxt == 41 then return start_capture(ms, s, p + 2, CAP_POSITION), p, true end
    return start_capture(ms, s, p + 1, CAP_UNFINISHED), p, true
  elseif pc == 41 then
    return end_capture(ms, s, p + 1), p, true
  elseif pc == 36 then  -- '$' at the end
    return (s == ms.slen + 1) and s or nil, p, true
  elseif nxt == 98 then  -- %b
    s = match_balance(ms, s, p + 2)
    return s, p + 4, s == nil
  elseif nxt == 102 then  -- %f
    p = p + 2
    if byte(ms.p, p) ~= 91 then perror("missing '[' after '%f' in pattern") end
    local ep = class_end(ms, p)
    local previous = (s == 1) and 0 or byte(ms.s, s - 1)
    local current = byte(ms.s, s) or 0
    if not match_bracket_class(ms.p, previous, p, ep - 1) and match_bracket_class(ms.p, current, p, ep - 1) then
      return s, ep, false
    end
    return nil, p, true
  end
  s = match_capture(ms, s, nxt)  -- %0-%9
  return s, p + 2, s == nil
end

local function is_special(ms, p, pc, nxt)
  if pc == 40 or pc == 41 then return true end
  if pc == 36 then return p == ms.plen end
  return pc == L_ESC and (nxt == 98 or nxt == 102 or (nxt ~= nil and nxt >= 48 and nxt <= 57))
end

function match(ms, s, p)
  if ms.depth == 0 then perror("pattern too complex") end
  ms.depth = ms.depth - 1
  local pat, plen = ms.p, ms.plen
  while p <= plen do
    local pc, nxt = byte(pat, p, p + 1)
    if is_special(ms, p, pc, nxt) then
      local done
      s, p, done = special_item(ms, s, p, pc, nxt)
      if done then break end
    else
      local ep = class_end(ms, p)
      local epc = byte(pat, ep)
      if not single_match(ms, s, p, ep) then
        if epc ~= 42 and epc ~= 63 and epc ~= 45 then s = nil; break end
        p = ep + 1  -- '*', '?' and '-' accept no match
      elseif epc == 63 then  -- '?'
        local res = match(ms, s + 1, ep + 1)
        if res then s = res; break end
        p = ep + 1
      elseif epc == 43 then s = max_expand(ms, s + 1, p, ep); break
      elseif epc == 42 then s = max_expand(ms, s, p, ep); break
      elseif epc == 45 then s = min_expand(ms, s, p, ep); break
      else s, p = s + 1, ep
      end
    end
  end
  ms.depth = ms.depth + 1
  return s
end

local function new_state(s, p)
  return {s = s, slen = #s, p = p, plen = #p, level = 0, depth = MAXCCALLS, cinit = {}, clen = {}}
end

local function reprep(ms) ms.level, ms.depth = 0, MAXCCALLS end

local function get_capture(ms, i, s, e)
  if i >= ms.level then
    if i ~= 0 then perror(format("invalid capture index %%%d", i + 1)) end
    return sub(ms.s, s, e - 1)
  end
  local len, init = ms.clen[i + 1], ms.cinit[i + 1]
  if len == CAP_UNFINISHED then perror("unfinished capture") end
  if len == CAP_POSITION then return init end
  return sub(ms.s, init, init + len - 1)
end

local function captures(ms, s, e)
  local n = (ms.level == 0 and s) and 1 or ms.level
  local values = {}
  for i = 0, n - 1 do values[i + 1] = get_capture(ms, i, s, e) end
  return unpack(values, 1, n)
end

local function start_index(init, len)
  if init == nil then return 1 end
  if init > 0 then return init
  elseif init == 0 or init < -len then return 1
  end
  return len + init + 1
end

local function has_specials(p)
  return native.find(p, "[%^%$%*%+%?%.%(%[%%%-]") ~= nil
end

-- Plain search that the hook can interrupt: C finds candidates by first byte, Lua compares.
local function plain_find(s, p, init)
  local m = #p
  if m == 0 then return init, init - 1 end
  local first = sub(p, 1, 1)
  while true do
    local i = native.find(s, first, init, true)
    if i == nil or i + m - 1 > #s then return nil end
    if sub(s, i, i + m - 1) == p then return i, i + m - 1 end
    init = i + 1
  end
end

local function find_aux(find, s, p, init, plain)
  local ls = #s
  init = start_index(init, ls)
  if init > ls + 1 then return nil end
  if find and (plain or not has_specials(p)) then return plain_find(s, p, init) end
  local anchor = byte(p, 1) == 94
  if anchor then p = sub(p, 2) end
  local ms = new_state(s, p)
  local s1 = init
  repeat
    reprep(ms)
    local e = match(ms, s1, 1)
    if e then
      if find then return s1, e - 1, captures(ms, nil, 0) end
      return captures(ms, s1, e)
    end
    s1 = s1 + 1
  until anchor or s1 > ms.slen + 1
  return nil
end

local port = {}

function port.find(s, p, init, plain) return find_aux(true, s, p, init, plain) end
function port.match(s, p, init) return find_aux(false, s, p, init) end

function port.gmatch(s, p, init)
  local ls = #s
  local src, lastmatch = start_index(init, ls), nil
  if src > ls + 1 then src = ls + 2 end
  local ms = new_state(s, p)
  return function()
    while src <= ls + 1 do
      reprep(ms)
      local e = match(ms, src, 1)
      if e and e ~= lastmatch then
        local start = src
        src, lastmatch = e, e
        return captures(ms, start, e)
      end
      src = src + 1
    end
    return nil
  end
end

local function add_string(ms, out, s, e, news)
  local i = 1
  while true do
    local j = native.find(news, "%", i, true)
    if not j then break end
    out[#out + 1] = sub(news, i, j - 1)
    local c = byte(news, j + 1)
    if c == L_ESC then out[#out + 1] = "%"
    elseif c == 48 then out[#out + 1] = sub(ms.s, s, e - 1)
    elseif c and c >= 49 and c <= 57 then out[#out + 1] = tostring(get_capture(ms, c - 49, s, e))
    else perror("invalid use of '%' in replacement string")
    end
    i = j + 2
  end
  out[#out + 1] = sub(news, i)
end

-- Append the replacement of subject[s..e-1]; return whether it changed the text.
local function add_value(ms, out, s, e, repl, kind)
  local value
  if kind == "function" then
    value = repl(captures(ms, s, e))
  elseif kind == "table" then
    value = repl[get_capture(ms, 0, s, e)]
  else
    add_string(ms, out, s, e, repl)
    return true
  end
  if not value then
    out[#out + 1] = sub(ms.s, s, e - 1)
    return false
  end
  local vtype = type(value)
  if vtype ~= "string" and vtype ~= "number" then perror(format("invalid replacement value (a %s)", vtype)) end
  out[#out + 1] = tostring(value)
  return true
end

function port.gsub(src, p, repl, max_n)
  local kind = type(repl)
  if kind == "number" then repl, kind = tostring(repl), "string" end
  local srcl = #src
  max_n = max_n or srcl + 1
  local anchor = byte(p, 1) == 94
  if anchor then p = sub(p, 2) end
  local ms = new_state(src, p)
  local out, n, changed, pos, keep, lastmatch = {}, 0, false, 1, 1, nil
  while n < max_n do
    reprep(ms)
    local e = match(ms, pos, 1)
    if e and e ~= lastmatch then
      n = n + 1
      if keep < pos then out[#out + 1] = sub(src, keep, pos - 1) end
      changed = add_value(ms, out, pos, e, repl, kind) or changed
      pos, keep, lastmatch = e, e, e
    elseif pos <= srcl then
      pos = pos + 1
    else
      break
    end
    if anchor then break end
  end
  if not changed then return src, n end
  out[#out + 1] = sub(src, keep)
  return concat(out), n
end

-- Shared with guard.lua.
port.PROBLEM, port.start_index, port.has_specials = PROBLEM, start_index, has_specials
return port
