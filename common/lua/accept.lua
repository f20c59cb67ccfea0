-- accept.lua -- the accept phase of an `order` entry in one call: the
-- idempotency key (SET NX EX), the order record and the stock reservation;
-- with the gateway off ('paid' mode) also delivery and the ack. A crash
-- never leaves a key without its order or codes without their order.
-- Transitions (checked against state.c by tests/unit/test_state.c):
--   none -> processing (a new order; a payment stub has no state yet)
--   processing -> failed/out_of_stock (not enough stock, in the same call)
--   processing -> completed ('paid' mode, in the same call)
-- KEYS: 1 order hash, 2 idem key, 3 stock list, 4 orders stream, 5 stats,
--       6 stats minute, 7 retry zset, 8 notify zset, 9 active zset
-- ARGV: 1 group, 2 entry id, 3 order_id, 4 idempotency key, 5 sku, 6 qty,
--       7 amount, 8 currency, 9 buyer, 10 idem ttl s, 11 'paid'|'charge',
--       12 lease ms, 13 retention s, 14 msg processing, 15 msg completed,
--       16 msg out of stock, 17 '1' to queue the shop webhook on delivery,
--       18 order ttl ms (deadline in the active zset)
-- Returns {'dup', owner} | {'conflict', state} | {'completed', codes} |
--         {'failed', reason} | fk_take's answers | fk_work's answer
local okey, ikey, skey, stream, stats, minute, rkey, nkey, akey =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local group, entry, oid = ARGV[1], ARGV[2], ARGV[3]
local qty = tonumber(ARGV[6])
local now = fk_now()

local owner = redis.call('GET', ikey)
if owner and owner ~= oid then return {'dup', owner} end

local cur = redis.call('HMGET', okey, 'state', 'sku', 'qty', 'amount', 'currency')
if cur[1] then
  if cur[2] ~= ARGV[5] or cur[3] ~= ARGV[6] or cur[4] ~= ARGV[7] or cur[5] ~= ARGV[8] then
    return {'conflict', cur[1]}
  end
  if not owner then redis.call('SET', ikey, oid, 'NX', 'EX', ARGV[10]) end
  return fk_take(okey, rkey, stream, group, entry, oid, tonumber(ARGV[12]), now)
end

if not owner then redis.call('SET', ikey, oid, 'NX', 'EX', ARGV[10]) end
redis.call('HSET', okey, 'state', FK_ST.PROCESSING, 'reason', '', 'message', ARGV[14],
  'attempts', 0, 'sku', ARGV[5], 'qty', ARGV[6], 'amount', ARGV[7], 'currency', ARGV[8],
  'buyer', ARGV[9], 'idem', ARGV[4], 'created_at', now, 'updated_at', now, 'fence', 1)
redis.call('PERSIST', okey) -- a payment that came first left a stub with a TTL
fk_count(stats, minute, 'submitted', 1)

if redis.call('LLEN', skey) < qty then
  redis.call('HSET', okey, 'state', FK_ST.FAILED, 'reason', FK_R.OUT_OF_STOCK,
    'message', ARGV[16])
  fk_finalize(okey, stats, minute, FK_ST.FAILED, FK_R.OUT_OF_STOCK, now, ARGV[13])
  fk_ack(stream, group, entry)
  return {'failed', FK_R.OUT_OF_STOCK}
end
local codes = cjson.encode(redis.call('LPOP', skey, qty))

if ARGV[11] == 'paid' then
  redis.call('HSET', okey, 'state', FK_ST.COMPLETED, 'codes', codes, 'message', ARGV[15])
  if ARGV[17] == '1' then
    redis.call('ZADD', nkey, now, oid)
    redis.call('HSET', okey, 'notify', 'pending')
  end
  fk_finalize(okey, stats, minute, FK_ST.COMPLETED, '', now, ARGV[13])
  fk_ack(stream, group, entry)
  return {'completed', codes}
end

redis.call('HSET', okey, 'resv', codes, 'charge', 'none',
  'lease_until', now + tonumber(ARGV[12]), 'lease_entry', entry)
redis.call('ZADD', akey, now + tonumber(ARGV[18]), oid)
return fk_work(okey)
