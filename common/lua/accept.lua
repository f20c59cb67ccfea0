-- accept.lua -- the accept phase of an `order` entry in one call: the
-- idempotency key (SET NX EX), the order record and the stock reservation;
-- with the gateway off ('paid' mode) also delivery and the ack. A crash
-- never leaves a key without its order or codes without their order.
-- When the idempotency key is the order's own id (the default), the order
-- record is the claim and no idem key is written (docs/KEYSPACE.md, "The
-- implicit idempotency key"): an order with another id and this key finds
-- the owner through KEYS[10], the record of the order named by the key.
-- Transitions (checked against state.c by tests/unit/test_state.c):
--   none -> processing (a new order; a payment stub has no state yet)
--   processing -> failed/out_of_stock (not enough stock, in the same call)
--   processing -> manual_review/payment_unknown (not enough stock, but the
--     shop already reported the payment succeeded: the buyer paid, a human
--     delivers or refunds)
--   processing -> completed ('paid' mode, in the same call)
--   none -> failed/rate_limited (the buyer is in a cooldown, see lib.lua
--     fk_cool_fail: refused before anything is held, no stock, no
--     idempotency key; the message says when to try again)
-- KEYS: 1 order hash, 2 idem key, 3 stock list, 4 orders stream, 5 stats,
--       6 stats minute, 7 retry zset, 8 notify zset, 9 active zset,
--       10 the order hash of the order whose id is the idempotency key,
--       11 review zset, [12 the buyer's cooldown hash; absent: no buyer or
--       cooldown off]
-- ARGV: 1 group, 2 entry id, 3 order_id, 4 idempotency key, 5 sku, 6 qty,
--       7 amount, 8 currency, 9 buyer, 10 idem ttl s, 11 'paid'|'charge'|
--       'send' ('charge', and the gateway guard admitted the charge: a new
--       record is written with charge=sent, see fk_take),
--       12 lease ms, 13 retention s, 14 '1' to queue the shop webhook on
--       delivery, 15 order ttl ms (deadline in the active zset)
-- (The buyer's messages come from the prelude, FK_MSG / FK_RMSG: they are
-- the same on every call, and each argument costs Redis a string.)
-- Returns {'dup', owner} | {'conflict', state} | {'completed', codes} |
--         {'failed', reason[, message]} | {'review', reason} | fk_take's answers (an existing
--         order) | {'new', charge, pay_status, payment_id} (a new record
--         held under this call's lease; charge 'sent' means this call
--         recorded it: the POST follows)
local okey, ikey, skey, stream, stats, minute, rkey, nkey, akey, wkey, vkey, ckey =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10],
  KEYS[11], KEYS[12]
local group, entry, oid = ARGV[1], ARGV[2], ARGV[3]
local qty = tonumber(ARGV[6])
local now = fk_now()
local implicit = ARGV[4] == oid

local owner = redis.call('GET', ikey)
if owner and owner ~= oid then return {'dup', owner} end
if not owner and not implicit then
  -- the order named by the key holds it implicitly if it took it as its
  -- own (no idem field, or its own id), and is not itself refused for
  -- another order's key, its input or a cooldown (failed with one of
  -- those reasons: an order a worker sent to review because its record
  -- could not be read, invalid_order, may hold a charge under the key)
  local w = redis.call('HMGET', wkey, 'state', 'idem', 'reason')
  if w[1] and (not w[2] or w[2] == ARGV[4]) and
      not (w[1] == FK_ST.FAILED and FK_NO_CLAIM[w[3]]) then
    return {'dup', ARGV[4]}
  end
end

local cur = redis.call('HMGET', okey, 'state', 'sku', 'qty', 'amount', 'currency',
  'pay_status', 'payment_id')
if cur[1] then
  if cur[2] ~= ARGV[5] or cur[3] ~= ARGV[6] or cur[4] ~= ARGV[7] or cur[5] ~= ARGV[8] then
    return {'conflict', cur[1]}
  end
  if not owner and not implicit then redis.call('SET', ikey, oid, 'NX', 'EX', ARGV[10]) end
  return fk_take(okey, rkey, stream, group, entry, oid, tonumber(ARGV[12]), now,
    ARGV[11] == 'send')
end

if ckey then
  -- an `until` that is not a time (lib.lua fk_int) is no cooldown: a
  -- refusal must be able to say when to come back, and holds no money
  local untl = fk_int(redis.call('HGET', ckey, 'until')) or 0
  -- a payment the shop already reported succeeded is never refused
  if untl > now and redis.call('HGET', okey, 'pay_status') ~= 'succeeded' then
    local secs = string.format('%d', math.ceil((untl - now) / 1000))
    local msg = fk_reason_text(FK_R.RATE_LIMITED, secs)
    redis.call('HSET', okey, 'state', FK_ST.FAILED, 'reason', FK_R.RATE_LIMITED,
      'message', msg, 'attempts', 0, 'sku', ARGV[5], 'qty', ARGV[6], 'amount', ARGV[7],
      'currency', ARGV[8], 'buyer', ARGV[9], 'idem', ARGV[4], 'created_at', now,
      'updated_at', now)
    fk_count(stats, minute, 'submitted', 1)
    fk_finalize(okey, stats, minute, FK_ST.FAILED, FK_R.RATE_LIMITED, now, ARGV[13])
    fk_ack(stream, group, entry)
    return {'failed', FK_R.RATE_LIMITED, msg}
  end
end

-- The reservation comes before the first write: a stock key of another
-- type (a slip with redis-cli) fails the call here, and Lua does not roll
-- back, so nothing may be written before it (an idempotency key pointing
-- at no order, a count of an order that never was). An out-of-stock LPOP
-- has pushed back what it took.
local got = fk_reserve(skey, ARGV[6], qty)
if not owner and not implicit then redis.call('SET', ikey, oid, 'NX', 'EX', ARGV[10]) end
fk_count(stats, minute, 'submitted', 1)
-- The new record is written with one HSET once this call knows how it ends
-- (the same fields, in the same order, as writing it as processing first).
-- A new record has no attempts, no first failure and no lease yet: that is
-- what fk_finalize is told (it need not read nor delete them).
-- (Numbers go to Redis as strings made here: a number argument costs Redis a
-- %.17g conversion.)
local snow = string.format('%d', now)
-- (an implicit key is not written: no `idem` field means the order's id)
-- (a completed record carries no reason, fence or charge: see
-- docs/KEYSPACE.md, "What a completed record keeps")
local rec = {'state', FK_ST.PROCESSING, 'message', FK_MSG[FK_ST.PROCESSING],
  'attempts', '0', 'sku', ARGV[5], 'qty', ARGV[6], 'amount', ARGV[7], 'currency', ARGV[8],
  'buyer', ARGV[9], 'created_at', snow, 'updated_at', snow}
if not implicit then rec[#rec + 1], rec[#rec + 2] = 'idem', ARGV[4] end
local fresh = {'0', false}

if not got then
  -- Out of stock. If the shop reported the payment first, the buyer paid
  -- for codes there are none of: not "you have not been charged" but a
  -- human's case (in the review set; fk_finalize PERSISTs it). Otherwise
  -- failed; fk_finalize's EXPIRE replaces a payment stub's TTL either way.
  local paid = cur[6] == 'succeeded'
  local st = paid and FK_ST.MANUAL_REVIEW or FK_ST.FAILED
  local reason = paid and FK_R.PAYMENT_UNKNOWN or FK_R.OUT_OF_STOCK
  rec[2], rec[4] = st, FK_RMSG[reason]
  local n = #rec
  rec[n + 1], rec[n + 2], rec[n + 3], rec[n + 4] = 'reason', reason, 'fence', '1'
  redis.call('HSET', okey, unpack(rec))
  if paid then redis.call('ZADD', vkey, snow, oid) end
  fk_finalize(okey, stats, minute, st, reason, now, ARGV[13], fresh)
  fk_ack(stream, group, entry)
  return {paid and 'review' or 'failed', reason}
end
local codes = cjson.encode(got)

if ARGV[11] == 'paid' then
  rec[2], rec[4] = FK_ST.COMPLETED, FK_MSG[FK_ST.COMPLETED]
  rec[#rec + 1], rec[#rec + 2] = 'codes', codes
  if ARGV[14] == '1' then
    redis.call('ZADD', nkey, snow, oid)
    rec[#rec + 1], rec[#rec + 2] = 'notify', 'pending'
  end
  redis.call('HSET', okey, unpack(rec))
  fk_finalize(okey, stats, minute, FK_ST.COMPLETED, '', now, ARGV[13], fresh)
  fk_ack(stream, group, entry)
  return {'completed', codes}
end

-- (never over a payment the shop reported first: that order is not charged)
local charge = (ARGV[11] == 'send' and (cur[6] or '') == '') and 'sent' or 'none'
local n = #rec
rec[n + 1], rec[n + 2], rec[n + 3], rec[n + 4] = 'resv', codes, 'charge', charge
rec[n + 5], rec[n + 6] = 'lease_until', string.format('%d', now + tonumber(ARGV[12]))
rec[n + 7], rec[n + 8], rec[n + 9], rec[n + 10] = 'lease_entry', entry, 'reason', ''
rec[n + 11], rec[n + 12] = 'fence', '1'
redis.call('HSET', okey, unpack(rec))
-- a payment that came first left a stub (pay_status) with a TTL
if cur[6] then redis.call('PERSIST', okey) end
redis.call('ZADD', akey, string.format('%d', now + tonumber(ARGV[15])), oid)
-- A new record: the worker sent every field of it but what this call
-- decided, so only those come back (a reply element costs Redis a table
-- read and a bulk string, the worker a parse): the charge, and the payment
-- a stub may have reported. The rest is what fk_work would say of a new
-- record: processing, fence 1, attempts 0, no polls, the entry's fields.
return {'new', charge, cur[6] or '', cur[7] or ''}
