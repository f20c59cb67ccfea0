-- guard_check.lua -- may this worker call the payment gateway now? One call
-- decides it for the whole fleet: the circuit breaker (closed / open /
-- half_open with a few probe slots) and the gateway token bucket. Nothing
-- is taken unless the answer is "allow": a caller refused by the bucket
-- does not use up a half-open probe slot, and the other way round.
-- Breaker (KEYS[1], hash): state, opened_at, open_until, half_open_at,
--   probes_used, opens, denied (refusals while not closed). guard_report.lua
--   opens and closes it; this script only moves open -> half_open once
--   the cool-down has passed, and hands out the probe slots.
-- Bucket (KEYS[2], hash): tokens, ts (ms of the last refill), next_slot,
--   denied. Refilled from Redis TIME at rate tokens per second up to burst.
--   A refused caller is told to wait until a slot of its own (next_slot,
--   advanced one token's time per refusal, at most a minute ahead), so a
--   queue of refused calls drains at the rate instead of all retrying at
--   the next token.
-- KEYS: 1 breaker hash, 2 rate limit hash
-- ARGV: 1 cool-down ms, 2 half-open probe slots, 3 rate per second
--       (0 = no limit), 4 burst (bucket capacity, >= 1)
-- Returns {allow 1|0, wait ms, probe 1|0, why, breaker state}; why is
--   'ok' | 'open' | 'half_open' (every probe slot taken) | 'rate'
-- Both hashes are outside input (redis-cli): their numbers are read with
-- lib.lua's fk_int / fk_num, and a field that is not a number never holds
-- calls back for good, nor makes a wait that is not one -- an unreadable
-- open_until ends the cool-down (half-open: the probes find out), an
-- unreadable half_open_at or probes_used hands the probe slots out again,
-- an unreadable bucket is a fresh full one. A bucket's refusal waits at
-- most 61 s (a minute of queued slots and one token); a breaker's, the
-- open_until written (the worker clamps what it is told: pipeline.c).
local bkey, rkey = KEYS[1], KEYS[2]
local cooldown, slots = tonumber(ARGV[1]), tonumber(ARGV[2])
local rate, burst = tonumber(ARGV[3]), tonumber(ARGV[4])
local now = fk_now()

local b = redis.call('HMGET', bkey, 'state', 'open_until', 'half_open_at', 'probes_used')
local state = b[1] or 'closed'
local probe = 0
if state == 'open' then
  -- ('inf' or '1e300' read by tonumber kept the breaker open for ever;
  -- 'nan' compared false and let everyone through without a probe)
  local untl = fk_int(b[2])
  if untl and now < untl then
    fk_bump(bkey, 'denied', '1')
    return {0, untl - now, 0, 'open', state}
  end
  -- cool-down over: half-open, the first callers are the probes
  state = 'half_open'
  redis.call('HSET', bkey, 'state', state, 'half_open_at', now, 'probes_used', 0)
  b[3], b[4] = tostring(now), '0'
end
local used = 0
if state == 'half_open' then
  used = fk_int(b[4]) or 0
  -- a probe whose worker died never reports: after another cool-down
  -- without a verdict, its slots are handed out again; so are they when
  -- the count or the time is unreadable (or a time still to come, which
  -- would never be a cool-down ago)
  local since = fk_int(b[3])
  if used < 0 or not since or since > now or now - since >= cooldown then
    used = 0
    redis.call('HSET', bkey, 'half_open_at', now, 'probes_used', 0)
  end
  if used >= slots then
    fk_bump(bkey, 'denied', '1')
    local wait = cooldown
    if wait > 1000 then wait = 1000 end
    return {0, wait, 0, 'half_open', state}
  end
  probe = 1
end

if rate > 0 then
  local t = redis.call('HMGET', rkey, 'tokens', 'ts', 'next_slot')
  -- tokens are fractions (written by tostring): fk_num. None, or not a
  -- count this script could have written (below 0: 'nan' let every call
  -- through, '-inf' refused every one with a wait of -2^63): a fresh full
  -- bucket. A refill time that is not one: no refill now (ts is written
  -- again below, whatever the verdict).
  local tokens = fk_num(t[1])
  if not tokens or tokens < 0 then tokens = burst end
  local ts = fk_int(t[2]) or now
  if now > ts then tokens = tokens + (now - ts) * rate / 1000 end
  if tokens > burst then tokens = burst end
  if tokens < 1 then
    -- each refused caller is given its own later slot, one token apart,
    -- so a queue of refused calls comes back spread at the rate instead
    -- of all retrying at the next token
    local slot = fk_num(t[3]) or 0 -- unreadable: no queue of refusals yet
    if slot < now then slot = now end
    if slot > now + 60000 then slot = now + 60000 end -- a minute ahead at most
    local wait = math.ceil(slot - now + (1 - tokens) * 1000 / rate)
    redis.call('HSET', rkey, 'tokens', tostring(tokens), 'ts', now,
      'next_slot', tostring(slot + 1000 / rate))
    fk_bump(rkey, 'denied', '1')
    redis.call('PEXPIRE', rkey, 3600000)
    return {0, wait, 0, 'rate', state}
  end
  redis.call('HSET', rkey, 'tokens', tostring(tokens - 1), 'ts', now)
  redis.call('PEXPIRE', rkey, 3600000)
end

-- (the count as read, plus one: an HINCRBY would fail on a value that is
-- not an integer, after the token was taken)
if probe == 1 then redis.call('HSET', bkey, 'probes_used', string.format('%d', used + 1)) end
return {1, 0, probe, 'ok', state}
