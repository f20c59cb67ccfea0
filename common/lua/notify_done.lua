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
  return {'notified', tonumber(h[2] or '0') or 0}
end
local attempts = redis.call('HINCRBY', okey, 'notify_attempts', 1)
if ARGV[2] == 'ok' then
  redis.call('HSET', okey, 'notify', 'notified')
  redis.call('HDEL', okey, 'notify_error')
  redis.call('ZREM', nkey, oid)
  return {'notified', attempts}
end
redis.call('HSET', okey, 'notify_error', ARGV[5])
if attempts >= tonumber(ARGV[4]) then
  redis.call('HSET', okey, 'notify', 'notify_failed')
  redis.call('ZREM', nkey, oid)
  return {'notify_failed', attempts}
end
redis.call('ZADD', nkey, fk_now() + tonumber(ARGV[3]), oid)
return {'retry', attempts}
