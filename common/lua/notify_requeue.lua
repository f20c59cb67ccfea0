-- notify_requeue.lua -- an operator sends a completed order's shop webhook
-- again after it was given up (notify=notify_failed): a fresh attempt
-- budget, due now. Any other order is left alone, so running it twice, or
-- on an order that is being notified, changes nothing.
-- KEYS: 1 order hash, 2 notify zset
-- ARGV: 1 order_id
-- Returns {'queued'} | {'skip', state, notify} (not a completed order
-- whose webhook failed for good; '' for a missing field)
local h = redis.call('HMGET', KEYS[1], 'state', 'notify')
if h[1] ~= FK_ST.COMPLETED or h[2] ~= 'notify_failed' then
  return {'skip', h[1] or '', h[2] or ''}
end
-- the ZADD first: it is the write that can fail (a key of another type),
-- and Lua does not roll back
redis.call('ZADD', KEYS[2], fk_now(), ARGV[1])
redis.call('HSET', KEYS[1], 'notify', 'pending', 'notify_attempts', 0)
return {'queued'}
