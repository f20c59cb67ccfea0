-- resume.lua -- take up an existing order for a `retry` entry, or for any
-- entry whose order already exists (redelivery, reclaim).
-- KEYS: 1 order hash, 2 orders stream, 3 retry zset
-- ARGV: 1 group, 2 entry id, 3 order_id, 4 lease ms, 5 due ms of a retry
--       ('' = not a retry): how late it started goes to retry_lag_ms
--       when the entry takes the order,
--       6 'send' when the gateway guard admitted a charge (see fk_take)
-- Returns {'missing'} (acknowledged) | fk_take's answers
local h = redis.call('HMGET', KEYS[1], 'state', 'lease_until', 'lease_entry')
if not h[1] then
  fk_ack(KEYS[2], ARGV[1], ARGV[2])
  return {'missing'}
end
local now = fk_now()
-- (written with the lease, and only if this entry takes the order: a retry
-- entry another lease or retry covers did not start)
local extra
if ARGV[5] ~= '' then
  extra = {'retry_lag_ms', string.format('%d', now - tonumber(ARGV[5]))}
end
return fk_take(KEYS[1], KEYS[3], KEYS[2], ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), now,
  ARGV[6] == 'send', h, extra)
