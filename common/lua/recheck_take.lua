-- recheck_take.lua -- the reaper's second look at an order it expired
-- because the gateway had no charge for it (404). A worker paused between
-- its last deadline check and the send can still put its charge request on
-- the wire after that (docs/STATES.md, "A charge that lands after the
-- order expired"), so the reaper asks the gateway again `first`, 10 x
-- `first` and 60 x `first` ms after the expiry (the record's updated_at).
-- The reaper adds an order with score 0 just before the expiry transition
-- ("look now"); this call then sets the first real due time. The next due
-- time is set here, before the gateway is asked: a reaper that dies while
-- asking leaves the order for the next look. It is never sooner than the
-- claim (recheck_due.lua): a look takes up to the HTTP timeout, at most half
-- a lease, and a next time inside it (the retry after the last look, or a
-- stage boundary a late look is close to) let another reaper claim the
-- order and ask too -- both found the charge, both recorded it, and
-- reaper.late_charge went off twice.
-- KEYS: 1 order hash, 2 recheck zset
-- ARGV: 1 order_id, 2 first ms, 3 retry ms (after the last look, an answer
--       that was not an answer is asked again this much later), 4 claim ms
-- Returns {'ask', idem, sku, payment_id, last ('1' | '0')} |
--         {'wait'} (not due yet, or the order is not final yet) |
--         {'gone', why} (nothing more to look at: dropped from the index)
local okey, zkey, oid = KEYS[1], KEYS[2], ARGV[1]
local h = redis.call('HMGET', okey, 'state', 'updated_at', 'idem', 'sku', 'payment_id')
local st = h[1]
local now = fk_now()
local first = tonumber(ARGV[2])
if st == FK_ST.PROCESSING or st == FK_ST.PENDING_PAYMENT then
  -- the expiry that added it is still on its way (or never came: another
  -- reaper's expiry adds it again): look again later
  redis.call('ZADD', zkey, 'XX', now + first, oid)
  return {'wait'}
end
if st ~= FK_ST.EXPIRED then
  -- record gone (retention), or no longer expired: a late payment was
  -- recorded (manual_review), an operator resolved it
  redis.call('ZREM', zkey, oid)
  return {'gone', st or 'no record'}
end
local base = fk_int(h[2])
if not base then
  redis.call('ZREM', zkey, oid)
  return {'gone', 'updated_at is not a time'}
end
local age = now - base
local stages = {first, first * 10, first * 60}
if age < stages[1] then
  redis.call('ZADD', zkey, 'XX', base + stages[1], oid)
  return {'wait'}
end
if age >= stages[3] * 2 then
  redis.call('ZREM', zkey, oid)
  -- too late to ask: the idempotency key may be another order's by now
  -- (config.c bounds the window by --idem-ttl-s)
  return {'gone', 'past the last look\'s window (120 x first after the expiry); not asked'}
end
local last = '1'
local due = now + tonumber(ARGV[3])
for i = 2, 3 do
  if age < stages[i] then
    last = '0'
    due = base + stages[i]
    break
  end
end
due = math.max(due, now + tonumber(ARGV[4]))
redis.call('ZADD', zkey, 'XX', due, oid)
return {'ask', h[3] or '', h[4] or '', h[5] or '', last}
