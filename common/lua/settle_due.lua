-- settle_due.lua -- the reaper's candidates: orders in the active index
-- whose deadline (order or payment TTL) has passed by Redis's clock, oldest
-- deadline first. Read only; settle_take.lua decides about each one.
-- KEYS: 1 active zset
-- ARGV: 1 batch limit
-- Returns the order ids
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', fk_now(), 'LIMIT', 0, tonumber(ARGV[1]))
