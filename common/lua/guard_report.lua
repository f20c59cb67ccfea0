-- guard_report.lua -- record how a batch of gateway calls went (a worker
-- sums its calls for a few tens of ms, see guard_local.c; a half-open probe
-- is always reported alone, at once) and move the fleet-wide circuit
-- breaker (KEYS[1]) accordingly:
--   closed    -> open  after `failures` consecutive transient failures, or
--                      when transient failures are at least `pct` percent of
--                      at least `min` calls in the last `window` seconds
--   half_open -> closed when a probe succeeds (the window starts afresh)
--   half_open -> open   when a probe fails (a new cool-down)
-- A call that was not a probe never moves a half-open or open breaker: it
-- was sent before the breaker opened and says nothing about now.
-- "Transient" is the caller's verdict: 429, 5xx, timeout, reset, garbage.
-- Any definitive answer (paid, declined, pending, 404 ...) is a success: the
-- gateway is up.
-- The window is a ring of per-second buckets in the same hash: field
-- 'w<i>' (i = second mod window) holds '<second>:<calls>:<failures>'.
-- KEYS: 1 breaker hash
-- ARGV: 1 calls that succeeded, 2 calls that failed, 3 failures after the
--       batch's last success (= ARGV[2] when none succeeded), 4 '1' if the
--       batch is one half-open probe, 5 consecutive failures that open (0 =
--       rule off), 6 error percent that opens (0 = rule off), 7 minimum
--       calls in the window for the percent rule, 8 window seconds (1-60),
--       9 cool-down ms
-- The failure streak spans batches: a batch without a success adds its
-- failures to it, a batch with one restarts it at its trailing failures.
-- Returns {state, change} with change '' | 'opened' | 'closed' | 'reopened'
-- The hash is outside input (redis-cli): a bucket whose numbers are not
-- integers (lib.lua fk_int) counts as empty, an unreadable streak as 0 --
-- never an error that would leave the breaker where it is for good.
local bkey = KEYS[1]
local nok, nbad, trail = tonumber(ARGV[1]) or 0, tonumber(ARGV[2]) or 0, ARGV[3]
local failed, probe = nbad > 0, ARGV[4] == '1'
local nfail, pct, minc = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local window, cooldown = tonumber(ARGV[8]), tonumber(ARGV[9])
local now = fk_now()
local sec = math.floor(now / 1000)

-- this second's bucket
local slot = 'w' .. string.format('%d', sec % window)
-- one read for the bucket, the breaker state and the failure streak
local b = redis.call('HMGET', bkey, slot, 'state', 'consecutive')
local cur = b[1]
local calls, fails = 0, 0
if cur then
  local s, c, f = string.match(cur, '^(%d+):(%d+):(%d+)$')
  c, f = fk_int(c), fk_int(f)
  if fk_int(s) == sec and c and f then calls, fails = c, f end
end
calls = calls + nok + nbad
fails = fails + nbad
-- (numbers go to Redis as strings: a number argument costs Redis a %.17g
-- conversion)
local bucket = string.format('%d:%d:%d', sec, calls, fails)
if nok > 0 then fk_bump(bkey, 'calls_ok', ARGV[1]) end
if nbad > 0 then fk_bump(bkey, 'calls_failed', ARGV[2]) end

local state = b[2] or 'closed'
local consecutive
if nok == 0 then
  -- the streak as read plus this batch's failures (HINCRBY would fail the
  -- report on a streak that is not an integer)
  consecutive = fk_int(b[3]) or 0
  if consecutive < 0 then consecutive = 0 end
  consecutive = consecutive + nbad
  redis.call('HSET', bkey, slot, bucket, 'consecutive', string.format('%d', consecutive))
else
  consecutive = tonumber(trail) or 0
  if b[3] == trail then
    redis.call('HSET', bkey, slot, bucket)
  else
    redis.call('HSET', bkey, slot, bucket, 'consecutive', trail)
  end
end

local function open(change)
  redis.call('HSET', bkey, 'state', 'open', 'opened_at', now, 'open_until', now + cooldown,
    'probes_used', 0)
  fk_bump(bkey, 'opens', '1')
  return {'open', change}
end

if state == 'half_open' then
  if not probe then return {state, ''} end
  if failed then return open('reopened') end
  redis.call('HSET', bkey, 'state', 'closed', 'closed_at', now, 'consecutive', 0,
    'probes_used', 0)
  for i = 0, window - 1 do redis.call('HDEL', bkey, 'w' .. i) end
  return {'closed', 'closed'}
end
if state ~= 'closed' or not failed then return {state, ''} end

if nfail > 0 and consecutive >= nfail then return open('opened') end
if pct > 0 then
  local fields = {}
  for i = 0, window - 1 do fields[#fields + 1] = 'w' .. i end
  local ring = redis.call('HMGET', bkey, unpack(fields))
  local tc, tf = 0, 0
  for i = 1, #ring do
    if ring[i] then
      local s, c, f = string.match(ring[i], '^(%d+):(%d+):(%d+)$')
      s, c, f = fk_int(s), fk_int(c), fk_int(f)
      if s and c and f and sec - s < window then
        tc, tf = tc + c, tf + f
      end
    end
  end
  if tc >= minc and tf * 100 >= pct * tc then return open('opened') end
end
return {state, ''}
