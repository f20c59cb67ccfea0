-- resume.lua -- take up an existing order for a `retry` entry, or for any
-- entry whose order already exists (redelivery, reclaim).
-- KEYS: 1 order hash, 2 orders stream, 3 retry zset
-- ARGV: 1 group, 2 entry id, 3 order_id, 4 lease ms, 5 due ms of a retry
--       ('' = not a retry): how late it started goes to retry_lag_ms,
--       6 'send' when the gateway guard admitted a charge (see fk_take)
-- Returns {'missing'} (acknowledged) | fk_take's answers
local st = redis.call('HGET', KEYS[1], 'state')
if not st then
  fk_ack(KEYS[2], ARGV[1], ARGV[2])
  return {'missing'}
end
local now = fk_now()
if ARGV[5] ~= '' and not FK_FINAL[st] then
  redis.call('HSET', KEYS[1], 'retry_lag_ms', now - tonumber(ARGV[5]))
end
return fk_take(KEYS[1], KEYS[3], KEYS[2], ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), now,
  ARGV[6] == 'send')
