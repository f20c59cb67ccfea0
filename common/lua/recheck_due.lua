-- recheck_due.lua -- the reaper's second look, candidates: orders in the
-- recheck index whose next look is due by Redis's clock, oldest first.
-- Each one returned is claimed: its score moves `claim` ms ahead, so other
-- reapers (and this one's next tick) leave it alone while it is looked at,
-- and one whose reaper died comes back. recheck_take.lua decides about each.
-- KEYS: 1 recheck zset
-- ARGV: 1 batch limit, 2 claim ms
-- Returns the order ids
local now = fk_now()
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local untl = now + tonumber(ARGV[2])
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], 'XX', untl, id) end
return ids
