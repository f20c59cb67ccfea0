-- notify_done.lua -- record the outcome of one webhook attempt: delivered
-- (notify=notified), or failed and retried later, or failed for good after
-- the last attempt (notify=notify_failed). Never touches the order's state
-- or codes: a failed notification never charges or delivers again.
-- KEYS: 1 order hash, 2 notify zset
-- ARGV: 1 order_id, 2 'ok'|'fail', 3 retry delay ms, 4 max attempts,
--       5 last error
-- An order already notified is left as it is (a stalled sender's late
-- report). Returns {outcome, attempts}
local okey, nkey, oid = KEYS[1], KEYS[2], ARGV[1]
local h = redis.call('HMGET', okey, 'notify', 'notify_attempts')
if h[1] == 'notified' then
  -- another sender delivered it while this one was stalled past its claim:
  -- a late outcome of ours neither re-queues it nor marks it failed
  return {'notified', h[2] and fk_is_int(h[2]) and tonumber(h[2]) or 0}
end
-- The count is written with the outcome in one HSET: an HINCRBY on a count
-- edited into garbage failed before `notified` was written, and the shop
-- got the webhook again on every retry. A count that is no integer of 0 or
-- more starts again from 0.
local prev = h[2] and fk_is_int(h[2]) and tonumber(h[2]) or 0
if prev < 0 then prev = 0 end
local attempts = prev + 1
if ARGV[2] == 'ok' then
  redis.call('HSET', okey, 'notify', 'notified', 'notify_attempts', attempts)
  redis.call('HDEL', okey, 'notify_error')
  redis.call('ZREM', nkey, oid)
  return {'notified', attempts}
end
if attempts >= tonumber(ARGV[4]) then
  redis.call('HSET', okey, 'notify', 'notify_failed', 'notify_attempts', attempts,
    'notify_error', ARGV[5])
  redis.call('ZREM', nkey, oid)
  return {'notify_failed', attempts}
end
redis.call('HSET', okey, 'notify_attempts', attempts, 'notify_error', ARGV[5])
redis.call('ZADD', nkey, fk_now() + tonumber(ARGV[3]), oid)
return {'retry', attempts}
