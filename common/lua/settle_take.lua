-- settle_take.lua -- the reaper takes one order past its deadline, so that
-- any number of reapers settle it at most once: the order must still be in
-- processing or pending_payment, past its deadline in the active index, and
-- under no live lease (a worker carrying it on keeps it). Taking bumps the
-- fence (a worker that stalled and wakes up can apply nothing afterwards),
-- takes the lease for the reaper (lease_entry 'reaper': an entry a worker
-- gets for the order meanwhile is acknowledged as 'owned', see fk_take),
-- and cancels a scheduled retry or poll (the reaper decides now). The state
-- is not changed here: the reaper applies its decision with transition.lua,
-- fenced by the token returned.
-- The order's score in the active index becomes the end of the lease that
-- holds it (ours when taken, a worker's when busy): no reaper looks at it
-- again before then, so held orders never fill a reaper's batch, and an
-- order whose reaper died reappears when its lease runs out.
-- KEYS: 1 order hash, 2 active zset, 3 retry zset
-- ARGV: 1 order_id, 2 lease ms
-- Returns {'take', state, fence, charge, idem, sku, buyer, pay_status,
--          payment_id, has_resv ('1'|'0')} |
--         {'busy', ms left on the lease} | {'notdue', ms to the deadline} |
--         {'gone', state} (final, or no record: its index entry is dropped)
local okey, akey, rkey, oid = KEYS[1], KEYS[2], KEYS[3], ARGV[1]
local h = redis.call('HMGET', okey, 'state', 'lease_until', 'charge', 'idem', 'sku',
  'buyer', 'pay_status', 'payment_id', 'resv')
local st = h[1]
if st ~= FK_ST.PROCESSING and st ~= FK_ST.PENDING_PAYMENT then
  redis.call('ZREM', akey, oid)
  return {'gone', st or ''}
end
local due = redis.call('ZSCORE', akey, oid)
if not due then return {'gone', st} end
local now = fk_now()
due = tonumber(due)
if due > now then return {'notdue', tostring(due - now)} end
-- a lease_until that is not a time (lib.lua fk_int) is no lease, as in
-- fk_take: the order is settled now, not parked at a score of 9.2e18
local lease = fk_int(h[2]) or 0
if lease > now then
  redis.call('ZADD', akey, 'XX', lease, oid)
  return {'busy', tostring(lease - now)}
end
local fence = redis.call('HINCRBY', okey, 'fence', 1)
local untl = now + tonumber(ARGV[2])
redis.call('HSET', okey, 'lease_until', untl, 'lease_entry', 'reaper')
redis.call('ZADD', akey, 'XX', untl, oid)
redis.call('ZREM', rkey, oid)
return {'take', st, tostring(fence), h[3] or '', h[4] or '', h[5] or '', h[6] or '',
  h[7] or '', h[8] or '', h[9] and '1' or '0'}
