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
local bkey, rkey = KEYS[1], KEYS[2]
local cooldown, slots = tonumber(ARGV[1]), tonumber(ARGV[2])
local rate, burst = tonumber(ARGV[3]), tonumber(ARGV[4])
local now = fk_now()

local b = redis.call('HMGET', bkey, 'state', 'open_until', 'half_open_at', 'probes_used')
local state = b[1] or 'closed'
local probe = 0
if state == 'open' then
  local untl = tonumber(b[2] or '0') or 0
  if now < untl then
    redis.call('HINCRBY', bkey, 'denied', 1)
    return {0, untl - now, 0, 'open', state}
  end
  -- cool-down over: half-open, the first callers are the probes
  state = 'half_open'
  redis.call('HSET', bkey, 'state', state, 'half_open_at', now, 'probes_used', 0)
  b[3], b[4] = tostring(now), '0'
end
if state == 'half_open' then
  local used = tonumber(b[4] or '0') or 0
  -- a probe whose worker died never reports: after another cool-down
  -- without a verdict, its slots are handed out again
  if now - (tonumber(b[3] or '0') or 0) >= cooldown then
    used = 0
    redis.call('HSET', bkey, 'half_open_at', now, 'probes_used', 0)
  end
  if used >= slots then
    redis.call('HINCRBY', bkey, 'denied', 1)
    local wait = cooldown
    if wait > 1000 then wait = 1000 end
    return {0, wait, 0, 'half_open', state}
  end
  probe = 1
end

if rate > 0 then
  local t = redis.call('HMGET', rkey, 'tokens', 'ts', 'next_slot')
  local tokens = tonumber(t[1] or '') or burst
  local ts = tonumber(t[2] or '') or now
  if now > ts then tokens = tokens + (now - ts) * rate / 1000 end
  if tokens > burst then tokens = burst end
  if tokens < 1 then
    -- each refused caller is given its own later slot, one token apart,
    -- so a queue of refused calls comes back spread at the rate instead
    -- of all retrying at the next token
    local slot = tonumber(t[3] or '') or 0
    if slot < now then slot = now end
    if slot > now + 60000 then slot = now + 60000 end -- a minute ahead at most
    local wait = math.ceil(slot - now + (1 - tokens) * 1000 / rate)
    redis.call('HSET', rkey, 'tokens', tostring(tokens), 'ts', now,
      'next_slot', tostring(slot + 1000 / rate))
    redis.call('HINCRBY', rkey, 'denied', 1)
    redis.call('PEXPIRE', rkey, 3600000)
    return {0, wait, 0, 'rate', state}
  end
  redis.call('HSET', rkey, 'tokens', tostring(tokens - 1), 'ts', now)
  redis.call('PEXPIRE', rkey, 3600000)
end

if probe == 1 then redis.call('HINCRBY', bkey, 'probes_used', 1) end
return {1, 0, probe, 'ok', state}
