-- duplicate.lua -- a second order_id arrived with an idempotency key that
-- another order owns: record it as failed/duplicate (same sku, qty and
-- amount) or failed/idempotency_conflict (different), pointing at the owner
-- with duplicate_of, and acknowledge the entry.
-- Transitions (checked against state.c by tests/unit/test_state.c):
--   none -> failed/duplicate (same sku, qty and amount as the owner)
--   none -> failed/idempotency_conflict (different)
-- KEYS: 1 new order hash, 2 owner order hash, 3 orders stream, 4 stats,
--       5 stats minute
-- ARGV: 1 group, 2 entry id, 3 new order_id, 4 owner order_id, 5 sku, 6 qty,
--       7 amount, 8 currency, 9 buyer, 10 idempotency key, 11 msg duplicate,
--       12 msg conflict, 13 retention s
-- Returns {'done', state} (already recorded) | {'failed', reason}
local okey, owner, stream, stats, minute = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local st = redis.call('HGET', okey, 'state')
if st then
  fk_ack(stream, ARGV[1], ARGV[2])
  return {'done', st}
end
local now = fk_now()
local o = redis.call('HMGET', owner, 'sku', 'qty', 'amount')
local reason, msg = FK_R.DUPLICATE, ARGV[11]
if o[1] and (o[1] ~= ARGV[5] or o[2] ~= ARGV[6] or o[3] ~= ARGV[7]) then
  reason, msg = FK_R.IDEMPOTENCY_CONFLICT, ARGV[12]
end
redis.call('HSET', okey, 'state', FK_ST.FAILED, 'reason', reason, 'message', msg,
  'duplicate_of', ARGV[4], 'attempts', 0, 'sku', ARGV[5], 'qty', ARGV[6],
  'amount', ARGV[7], 'currency', ARGV[8], 'buyer', ARGV[9], 'idem', ARGV[10],
  'created_at', now, 'updated_at', now)
fk_count(stats, minute, 'submitted', 1)
fk_finalize(okey, stats, minute, FK_ST.FAILED, reason, now, ARGV[13])
fk_ack(stream, ARGV[1], ARGV[2])
return {'failed', reason}
