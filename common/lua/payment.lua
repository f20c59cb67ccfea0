-- payment.lua -- a `payment` entry: the shop verified the gateway's
-- callback and tells us the outcome. It wins over whatever a worker is
-- doing (the fence is bumped, so a worker mid-charge cannot apply a stale
-- transition), and a repeated notification changes nothing.
-- Transitions (checked against state.c by tests/unit/test_state.c):
--   pending_payment -> processing (the outcome is in; an order waiting for
--     payment takes this hop first, and the next one in the same call)
--   processing -> completed (succeeded, reservation held)
--   processing -> failed/payment_declined (declined)
--   processing -> manual_review/payment_unknown (succeeded, but no
--     reservation to deliver, or one that is not the order's qty distinct
--     codes: edited by hand, lib.lua fk_resv; it stays for the human)
--   failed|expired -> manual_review/late_payment (succeeded too late)
--   manual_review: no transition; the outcome is recorded on the record
--   no record yet: the payment is kept on a stub that accept.lua merges.
-- A success is never overwritten by a decline: callbacks arrive in any
-- order (a buyer's failed first try, then the one that paid), and a stale
-- decline must not tell a charged buyer "you have not been charged". A
-- decline for an order the gateway or the shop already said was paid
-- (pay_status=succeeded, or charge=paid) changes nothing.
-- KEYS: 1 order hash, 2 orders stream, 3 stock list, 4 stats, 5 stats
--       minute, 6 review zset, 7 notify zset, 8 retry zset, 9 active zset,
--       [10 the buyer's cooldown hash: a decline counts against the buyer]
-- ARGV: 1 group, 2 entry id, 3 order_id, 4 'succeeded'|'declined',
--       5 payment_id, 6 stub ttl s, 7 retention s, 8 msg completed,
--       9 msg declined, 10 msg late payment, 11 '1' to queue the webhook,
--       12 msg no reservation, 13 cooldown failures, 14 cooldown window s,
--       15 cooldown s (13-15 with KEYS[10] only)
-- Returns {'stub'} | {'completed', codes} | {'failed'} | {'review'} |
--         {'noted', 'manual_review'} | {'noop', state}
local okey, stream, skey, stats, minute, vkey, nkey, rkey, akey =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local group, entry, oid, status, pid = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local h = redis.call('HMGET', okey, 'state', 'resv', 'pay_status', 'charge', 'qty')
local st = h[1]
local now = fk_now()
local paid_before = h[3] == 'succeeded' or h[4] == 'paid'

if status ~= 'succeeded' and paid_before then
  fk_ack(stream, group, entry)
  return {'noop', st or 'none'}
end

if not st then
  redis.call('HSET', okey, 'pay_status', status, 'payment_id', pid)
  redis.call('EXPIRE', okey, ARGV[6])
  fk_ack(stream, group, entry)
  return {'stub'}
end

if st == FK_ST.PROCESSING or st == FK_ST.PENDING_PAYMENT then
  -- A decline releases the reservation. Lua does not roll back, so what
  -- can fail (a resv edited by hand, a stock key of another type) is
  -- checked before the first write: refused, the order is as it was and
  -- its deadline still stands (the reaper settles it), the entry pending.
  local codes
  if status ~= 'succeeded' and h[2] then
    local c = fk_codes(h[2])
    if not c then
      return redis.error_reply('ERR order ' .. oid .. ': resv is not a JSON list of codes')
    end
    local t = redis.call('TYPE', skey).ok
    if t ~= 'list' and t ~= 'none' then
      return redis.error_reply('ERR ' .. skey .. ' is a ' .. t .. ', not a list of codes')
    end
    codes = c
  end
  redis.call('HINCRBY', okey, 'fence', 1)
  redis.call('ZREM', rkey, oid)
  redis.call('ZREM', akey, oid) -- every branch below ends final
  redis.call('HSET', okey, 'pay_status', status, 'payment_id', pid, 'updated_at', now)
  local out
  if status == 'succeeded' and h[2] and fk_resv(h[2], h[5]) then
    redis.call('HSET', okey, 'state', FK_ST.COMPLETED, 'codes', h[2], 'message', ARGV[8])
    -- what a completed record does not keep (docs/KEYSPACE.md)
    redis.call('HDEL', okey, 'resv', unpack(FK_COMPLETED_DROP))
    if ARGV[11] == '1' then
      redis.call('ZADD', nkey, now, oid)
      redis.call('HSET', okey, 'notify', 'pending')
    end
    fk_finalize(okey, stats, minute, FK_ST.COMPLETED, '', now, ARGV[7])
    out = {'completed', h[2]}
  elseif status == 'succeeded' then
    redis.call('HSET', okey, 'state', FK_ST.MANUAL_REVIEW, 'reason', FK_R.PAYMENT_UNKNOWN,
      'message', ARGV[12])
    redis.call('ZADD', vkey, now, oid)
    fk_finalize(okey, stats, minute, FK_ST.MANUAL_REVIEW, FK_R.PAYMENT_UNKNOWN, now, ARGV[7])
    out = {'review'}
  else
    if codes then
      if #codes > 0 then redis.call('RPUSH', skey, unpack(codes)) end
      redis.call('HDEL', okey, 'resv')
    end
    redis.call('HSET', okey, 'state', FK_ST.FAILED, 'reason', FK_R.PAYMENT_DECLINED,
      'message', ARGV[9], 'charge', 'declined')
    fk_finalize(okey, stats, minute, FK_ST.FAILED, FK_R.PAYMENT_DECLINED, now, ARGV[7])
    fk_cool_fail(KEYS[10], oid, FK_R.PAYMENT_DECLINED, now, ARGV[13], ARGV[14], ARGV[15])
    out = {'failed'}
  end
  fk_ack(stream, group, entry)
  return out
end

if status == 'succeeded' and (st == FK_ST.FAILED or st == FK_ST.EXPIRED) then
  redis.call('HSET', okey, 'state', FK_ST.MANUAL_REVIEW, 'reason', FK_R.LATE_PAYMENT,
    'message', ARGV[10], 'pay_status', status, 'payment_id', pid, 'updated_at', now)
  redis.call('ZADD', vkey, now, oid)
  fk_finalize(okey, stats, minute, FK_ST.MANUAL_REVIEW, FK_R.LATE_PAYMENT, now, ARGV[7])
  fk_count(stats, minute, 'reopened', 1) -- it left failed/expired (docs/METRICS.md)
  fk_ack(stream, group, entry)
  return {'review'}
end

if st == FK_ST.MANUAL_REVIEW then
  -- the shop's word is kept for the human deciding (fakactl order shows
  -- it; review resolve --as processing then delivers or fails on it)
  redis.call('HSET', okey, 'pay_status', status, 'updated_at', now)
  if pid ~= '' then redis.call('HSET', okey, 'payment_id', pid) end
  fk_ack(stream, group, entry)
  return {'noted', st}
end

fk_ack(stream, group, entry)
return {'noop', st}
