-- Error plumbing shared by Kepler's trusted Lua code (SPEC §6).
--
-- The sandbox wraps some C functions (next, setmetatable, string.find, ...). A
-- wrapper calls them under pcall, and an error a C function raises there names
-- no line; `relocate` raises it again at the line of the user's call. Errors
-- that already name a line (user code C called back, like a sort comparator)
-- and the two that end evaluation (out of time or memory) pass unchanged.

local type, error, find = type, error, string.find

local errors = {
  STOPPED = "Lua evaluation was stopped",
  MEMORY = "not enough memory",
}

local keep = {[errors.STOPPED] = true, [errors.MEMORY] = true}

-- Use in tail position from a wrapper: `return relocate(pcall(native, ...))`.
function errors.relocate(ok, ...)
  if ok then return ... end
  local problem = ...
  if type(problem) == "string" and not keep[problem] and not find(problem, "^[^\n]-:%d+: ") then
    error(problem, 2)
  end
  error(problem, 0)
end

return errors
