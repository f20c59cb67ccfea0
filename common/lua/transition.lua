-- transition.lua -- one state transition of an order as a fenced
-- compare-and-set, with its side effects in the same call. The caller
-- checked the transition against state.c's table; this script applies it
-- only if the order is still in `from` and the fence is still the caller's.
-- Workers and fakactl (operator actions) both go through it.
-- KEYS: 1 order hash, 2 orders stream, 3 stock list, 4 retry zset,
--       5 review zset, 6 stats, 7 stats minute, 8 notify zset, 9 active zset,
--       [10 the buyer's cooldown hash: count a payment_declined /
--       risk_rejected failure against the buyer, see lib.lua fk_cool_fail]
-- ARGV: 1 group, 2 entry id ('' = none), 3 fence ('' = unfenced), 4 from,
--       5 to, 6 reason, 7 message, 8 ops, 9 delay ms, 10 charge ('' = keep),
--       11 payment_id ('' = keep), 12 retention s, 13 order_id, 14 lease ms,
--       15 extra field ('' = none), 16 extra value, 17 order ttl ms,
--       18 payment ttl ms (deadlines in the active zset),
--       19 operator ('' or absent = not an operator action), 20 note,
--       21 cooldown failures, 22 cooldown window s, 23 cooldown s
--       (19-23 may be absent)
-- ops, one letter each: D deliver the reservation as `codes` (only one
--   that is qty distinct codes, lib.lua fk_resv: else {'noresv',
--   'unreadable'}, nothing changes); L release the reservation to stock;
--   S reserve `qty` codes from stock first when the order holds none (not
--   enough: {'nostock', available}, nothing changes), and keep the one it
--   holds only if fk_resv reads it (else {'noresv', 'unreadable'});
--   R schedule a retry (attempts+1); W wait: schedule the order again after
--   `delay` without using up an attempt (the gateway guard said not now);
--   P schedule a status poll; Q queue a `retry` entry on the stream now;
--   V enter the review queue; N queue the shop notification; F bump the
--   fence (an operator takes the order over: a worker holding the old fence
--   can apply nothing afterwards); K keep (extend) the lease, else it is
--   dropped; C clear the shop's payment report and the poll count
--   (pay_status, polls: an operator's retry asks the gateway afresh rather
--   than failing again on the report that failed it); A acknowledge the
--   entry.
-- An operator action (ARGV[19]) records `operator` and `note` and appends
-- {at, operator, from, to, note} to the JSON array in `audit`.
-- Leaving completed/failed/expired counts `reopened` (docs/METRICS.md).
-- Returns {'ok', fence} | {'stale', state, fence} | {'noresv'} (nothing
--         held to deliver) | {'noresv', 'unreadable'} (what is held is no
--         reservation of this order's qty) | {'nostock', available}
local okey, stream, skey, rkey, vkey, stats, minute, nkey, akey, ckey =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local to, ops, oid = ARGV[5], ARGV[8], ARGV[13]
local operator = ARGV[19] or ''
local h = redis.call('HMGET', okey, 'state', 'fence', 'resv', 'qty', 'attempts', 'first_fail_at',
  'lease_entry')
if (h[1] or '') ~= ARGV[4] or (ARGV[3] ~= '' and h[2] ~= ARGV[3]) then
  return {'stale', h[1] or '', h[2] or ''}
end
-- the ops as a set (lib.lua fk_ops; a string.find per test costs more)
local op = fk_ops(ops)
-- R: attempts + 1 goes into the record's HSET, from the count read above
-- (or the extra field, when that sets it), instead of an HINCRBY after it.
-- A count that is not an integer is refused here, before anything is
-- written (HINCRBY refused it only after the HSET).
local attempts
if op.R then
  attempts = (ARGV[15] == 'attempts') and ARGV[16] or (h[5] or '0')
  if not fk_is_int(attempts) then
    return redis.error_reply('ERR order ' .. oid .. ': attempts is not an integer')
  end
end
local now = fk_now()
-- The record's fields are written with one HSET (hs) after one HDEL (hd):
-- fewer calls, and few Lua tables (garbage makes every script slower).
-- Numbers go to Redis as strings made here (a number argument costs Redis a
-- %.17g conversion).
local snow = string.format('%d', now)
local done = to == FK_ST.COMPLETED
local hs = {'state', to, 'message', ARGV[7], 'updated_at', snow}
local hd
if done then
  hd = {FK_COMPLETED_DROP[1], FK_COMPLETED_DROP[2]} -- see lib.lua
  if h[2] == '1' then hd[#hd + 1] = 'fence' end
else
  hs[#hs + 1], hs[#hs + 2] = 'reason', ARGV[6]
end

-- F bumps the fence after S may have taken codes: a fence that is not an
-- integer (edited by hand) is refused before anything is written, as Lua
-- does not roll back
if op.F and h[2] and not fk_is_int(h[2]) then
  return redis.error_reply('ERR order ' .. oid .. ': fence is not an integer')
end
-- S and L read the record's qty and resv: a value edited by hand is
-- refused before anything is written (a qty of 20000 once took a SKU's
-- whole stock, which LPUSH could not give back in one unpack)
local qty = 0
if op.S and not h[3] then
  qty = h[4] and fk_is_int(h[4]) and tonumber(h[4]) or 0
  if qty < 1 or qty > FK_QTY_MAX then
    return redis.error_reply('ERR order ' .. oid .. ': qty is not an integer from 1 to ' ..
      FK_QTY_MAX)
  end
end
-- S keeps, and D delivers, the reservation the record holds: one edited
-- by hand (garbage, an empty list, a code twice, a count that is not
-- qty) is refused before anything is written. `review resolve --as
-- completed` once delivered such a value as the buyer's codes. The answer
-- is {'noresv', ...}: a worker or reaper then sends the order to review,
-- where the human sees the field.
if h[3] and (op.S or op.D) and not fk_resv(h[3], h[4]) then
  return {'noresv', 'unreadable'}
end
local held = nil
if op.L and h[3] then
  held = fk_codes(h[3])
  if not held then
    return redis.error_reply('ERR order ' .. oid .. ': resv is not a JSON list of codes')
  end
end
local took = false
if op.S and not h[3] then
  local got, avail = fk_reserve(skey, h[4], qty)
  if not got then return {'nostock', avail} end
  h[3] = cjson.encode(got)
  took = true
end
if op.D then
  if not h[3] then return {'noresv'} end
  hs[#hs + 1] = 'codes'
  hs[#hs + 1] = h[3]
  hd = hd or {}
  hd[#hd + 1] = 'resv'
elseif held then
  if #held > 0 then redis.call('RPUSH', skey, unpack(held)) end
  hd = hd or {}
  hd[#hd + 1] = 'resv'
elseif took then
  hs[#hs + 1] = 'resv'
  hs[#hs + 1] = h[3]
end
if op.F then h[2] = tostring(redis.call('HINCRBY', okey, 'fence', 1)) end

if ARGV[10] ~= '' and not done then hs[#hs + 1] = 'charge'; hs[#hs + 1] = ARGV[10] end
if ARGV[11] ~= '' then hs[#hs + 1] = 'payment_id'; hs[#hs + 1] = ARGV[11] end
if ARGV[15] ~= '' then hs[#hs + 1] = ARGV[15]; hs[#hs + 1] = ARGV[16] end
if operator ~= '' then
  local entry = cjson.encode({at = now, operator = operator, note = ARGV[20] or '',
    from = ARGV[4], to = to})
  local audit = redis.call('HGET', okey, 'audit')
  if audit and #audit > 2 and string.sub(audit, -1) == ']' then
    audit = string.sub(audit, 1, -2) .. ',' .. entry .. ']'
  else
    audit = '[' .. entry .. ']'
  end
  for _, v in ipairs({'operator', operator, 'note', ARGV[20] or '', 'audit', audit}) do
    hs[#hs + 1] = v
  end
end
if op.N then hs[#hs + 1] = 'notify'; hs[#hs + 1] = 'pending' end
if op.R then
  -- (after the extra field: a field given twice takes its last value)
  hs[#hs + 1], hs[#hs + 2] = 'attempts', string.format('%d', tonumber(attempts) + 1)
  if not h[6] and ARGV[15] ~= 'first_fail_at' then
    hs[#hs + 1], hs[#hs + 2] = 'first_fail_at', snow
  end
end
if op.K then
  hs[#hs + 1] = 'lease_until'
  hs[#hs + 1] = string.format('%d', now + tonumber(ARGV[14]))
else
  hd = hd or {}
  hd[#hd + 1] = 'lease_until'
  hd[#hd + 1] = 'lease_entry'
end
if op.C then
  hd = hd or {}
  hd[#hd + 1] = 'pay_status'
  hd[#hd + 1] = 'polls'
end
-- an operator's fresh attempt budget (the extra field attempts = 0) starts
-- a new run: its retry duration counts from its own first failure, not
-- from one before the order waited in failed or review
if ARGV[15] == 'attempts' and ARGV[16] == '0' and h[6] and not op.R then
  hd = hd or {}
  hd[#hd + 1] = 'first_fail_at'
end
-- (a field this call sets is never one it deletes: the extra field is
-- never resv, a lease field, pay_status, polls or one a completed record
-- drops)
if hd then redis.call('HDEL', okey, unpack(hd)) end
redis.call('HSET', okey, unpack(hs))

if op.R then
  redis.call('ZADD', rkey, string.format('%d', now + tonumber(ARGV[9])), oid)
  fk_count(stats, minute, 'retries', 1)
end
if op.W then
  redis.call('ZADD', rkey, string.format('%d', now + tonumber(ARGV[9])), oid)
  fk_count(stats, minute, 'deferred', 1)
end
if op.P then
  redis.call('HINCRBY', okey, 'polls', 1)
  redis.call('ZADD', rkey, string.format('%d', now + tonumber(ARGV[9])), oid)
end
if op.Q then redis.call('XADD', stream, '*', 'retry', oid .. '@' .. snow) end
if op.V then redis.call('ZADD', vkey, snow, oid) end
if op.N then redis.call('ZADD', nkey, snow, oid) end
if FK_FINAL[to] then
  -- the lease is dropped (no K) and attempts / first_fail_at are as read
  -- (no R, no extra field over them): fk_finalize need not read them again
  local known
  if not op.K and not op.R and ARGV[15] ~= 'attempts' and
      ARGV[15] ~= 'first_fail_at' then
    known = {h[5], h[6]}
  end
  fk_finalize(okey, stats, minute, to, ARGV[6], now, ARGV[12], known)
  redis.call('ZREM', akey, oid)
  if to == FK_ST.FAILED then
    fk_cool_fail(ckey, oid, ARGV[6], now, ARGV[21], ARGV[22], ARGV[23])
  end
elseif to ~= ARGV[4] then
  -- entering processing or pending_payment: a new deadline for the reaper.
  -- An order a reaper holds and keeps (its paid pending_payment order on
  -- the way to delivery) is due when that lease ends: a reaper that dies
  -- before delivering leaves it to another one then, not a whole order TTL
  -- later (no stream entry brings a reaper's order back).
  local ttl = (to == FK_ST.PENDING_PAYMENT) and ARGV[18] or ARGV[17]
  if op.K and h[7] == 'reaper' then ttl = ARGV[14] end
  redis.call('ZADD', akey, string.format('%d', now + tonumber(ttl)), oid)
end
if FK_FINAL[ARGV[4]] and not FK_FINAL[to] then
  -- back from a final state (operator): the record must not expire now
  redis.call('PERSIST', okey)
end
if FK_FINAL[ARGV[4]] and ARGV[4] ~= FK_ST.MANUAL_REVIEW and to ~= ARGV[4] then
  fk_count(stats, minute, 'reopened', 1)
end
if ARGV[4] == FK_ST.MANUAL_REVIEW and to ~= ARGV[4] then redis.call('ZREM', vkey, oid) end
if op.A then fk_ack(stream, ARGV[1], ARGV[2]) end
return {'ok', h[2] or ''}
