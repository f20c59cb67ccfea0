-- transition.lua -- one state transition of an order as a fenced
-- compare-and-set, with its side effects in the same call. The caller
-- checked the transition against state.c's table; this script applies it
-- only if the order is still in `from` and the fence is still the caller's.
-- KEYS: 1 order hash, 2 orders stream, 3 stock list, 4 retry zset,
--       5 review zset, 6 stats, 7 stats minute, 8 notify zset, 9 active zset
-- ARGV: 1 group, 2 entry id ('' = none), 3 fence ('' = unfenced), 4 from,
--       5 to, 6 reason, 7 message, 8 ops, 9 delay ms, 10 charge ('' = keep),
--       11 payment_id ('' = keep), 12 retention s, 13 order_id, 14 lease ms,
--       15 extra field ('' = none), 16 extra value, 17 order ttl ms,
--       18 payment ttl ms (deadlines in the active zset)
-- ops, one letter each: D deliver the reservation as `codes`; L release the
--   reservation to stock; R schedule a retry (attempts+1); P schedule a
--   status poll; V enter the review queue; N queue the shop notification;
--   K keep (extend) the lease, else it is dropped; A acknowledge the entry.
-- Returns {'ok', fence} | {'stale', state, fence} | {'noresv'}
local okey, stream, skey, rkey, vkey, stats, minute, nkey, akey =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local to, ops, oid = ARGV[5], ARGV[8], ARGV[13]
local h = redis.call('HMGET', okey, 'state', 'fence', 'resv')
if (h[1] or '') ~= ARGV[4] or (ARGV[3] ~= '' and h[2] ~= ARGV[3]) then
  return {'stale', h[1] or '', h[2] or ''}
end
local function has(c) return string.find(ops, c, 1, true) ~= nil end
local now = fk_now()

if has('D') then
  if not h[3] then return {'noresv'} end
  redis.call('HSET', okey, 'codes', h[3])
  redis.call('HDEL', okey, 'resv')
elseif has('L') and h[3] then
  local codes = cjson.decode(h[3])
  if #codes > 0 then redis.call('RPUSH', skey, unpack(codes)) end
  redis.call('HDEL', okey, 'resv')
end

redis.call('HSET', okey, 'state', to, 'reason', ARGV[6], 'message', ARGV[7], 'updated_at', now)
if ARGV[10] ~= '' then redis.call('HSET', okey, 'charge', ARGV[10]) end
if ARGV[11] ~= '' then redis.call('HSET', okey, 'payment_id', ARGV[11]) end
if ARGV[15] ~= '' then redis.call('HSET', okey, ARGV[15], ARGV[16]) end
if has('R') then
  redis.call('HINCRBY', okey, 'attempts', 1)
  redis.call('HSETNX', okey, 'first_fail_at', now)
  redis.call('ZADD', rkey, now + tonumber(ARGV[9]), oid)
  fk_count(stats, minute, 'retries', 1)
end
if has('P') then
  redis.call('HINCRBY', okey, 'polls', 1)
  redis.call('ZADD', rkey, now + tonumber(ARGV[9]), oid)
end
if has('V') then redis.call('ZADD', vkey, now, oid) end
if has('N') then
  redis.call('ZADD', nkey, now, oid)
  redis.call('HSET', okey, 'notify', 'pending')
end
if has('K') then
  redis.call('HSET', okey, 'lease_until', now + tonumber(ARGV[14]))
else
  redis.call('HDEL', okey, 'lease_until', 'lease_entry')
end
if FK_FINAL[to] then
  fk_finalize(okey, stats, minute, to, ARGV[6], now, ARGV[12])
  redis.call('ZREM', akey, oid)
elseif to ~= ARGV[4] then
  -- entering processing or pending_payment: a new deadline for the reaper
  local ttl = (to == FK_ST.PENDING_PAYMENT) and ARGV[18] or ARGV[17]
  redis.call('ZADD', akey, now + tonumber(ttl), oid)
end
if has('A') then fk_ack(stream, ARGV[1], ARGV[2]) end
return {'ok', h[2] or ''}
