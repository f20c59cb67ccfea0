-- trim_stream.lua -- trim acknowledged entries from the orders stream, never
-- one that is pending or unread: the oldest entry still needed is, over
-- every consumer group, the oldest pending entry or else the group's
-- last-delivered entry; everything strictly older goes (XTRIM MINID, exact).
-- The last-delivered entry itself is kept even when acknowledged, so no id
-- arithmetic is needed and a group moved back with XGROUP SETID is still
-- safe. Nothing is trimmed while the stream has no consumer group.
-- KEYS: 1 orders stream
-- Returns {'trimmed', n, min id kept} | {'nostream'} | {'nogroup'}
local stream = KEYS[1]
if redis.call('EXISTS', stream) == 0 then return {'nostream'} end
local groups = redis.call('XINFO', 'GROUPS', stream)
if #groups == 0 then return {'nogroup'} end

-- Stream ids compared exactly as decimal strings (no float rounding).
local function num_less(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end
local function id_less(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  if am ~= bm then return num_less(am, bm) end
  return num_less(as, bs)
end

local keep
for _, g in ipairs(groups) do
  local f = {}
  for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
  local need = f['last-delivered-id']
  if (tonumber(f['pending']) or 0) > 0 then
    local s = redis.call('XPENDING', stream, f['name'])
    if s[2] and id_less(s[2], need) then need = s[2] end
  end
  if not keep or id_less(need, keep) then keep = need end
end
return {'trimmed', redis.call('XTRIM', stream, 'MINID', keep), keep}
