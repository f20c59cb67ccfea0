-- notify_claim.lua -- take due shop notifications for one sender: due ids
-- are pushed a lease into the future in the same call, so any number of
-- workers sweeping at once never send one notification in parallel; a
-- sender that dies simply lets the lease run out.
-- KEYS: 1 notify zset
-- ARGV: 1 batch limit, 2 lease ms
-- Returns the claimed order ids
local now = fk_now()
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, id in ipairs(due) do
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), id)
end
return due
