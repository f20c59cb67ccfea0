-- lib.lua -- helpers shared by every faka script. At start, scripts.c
-- prepends the constants generated from state.h (FK_ST, FK_FINAL, FK_R,
-- and the sentences FK_MSG, FK_RMSG)
-- and appends one script; every key a helper touches comes from the
-- caller's KEYS.

-- Redis server time in ms: one clock for the whole fleet, so leases and due
-- times do not depend on the workers' clocks.
local function fk_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- A reason's sentence (common/state.h, in the prelude's FK_RMSG) with its
-- "%s" filled by detail, as fk_reason_message() in state.c does.
local function fk_reason_text(code, detail)
  local m = FK_RMSG[code]
  local i = string.find(m, '%s', 1, true)
  if not i then return m end
  return string.sub(m, 1, i - 1) .. detail .. string.sub(m, i + 2)
end

-- Acknowledge an entry; '' means "no entry". Returns XACK's count.
local function fk_ack(stream, group, entry)
  if entry ~= '' then return redis.call('XACK', stream, group, entry) end
  return 0
end

-- HINCRBY on a counter that decides nothing (the stats and per-minute
-- counts, a breaker's or bucket's `denied`, `opens` ...): one that is not
-- an integer (edited with redis-cli) starts afresh at n, where HINCRBY
-- would fail the whole call after its first writes (Lua does not roll
-- back): an accept had popped the codes and set the idempotency key when
-- a garbage `submitted` failed it, and a delivery had written `completed`
-- but not the record's expiry. Returns the new value.
local function fk_bump(key, field, n)
  local r = redis.pcall('HINCRBY', key, field, n)
  if type(r) == 'table' and r.err then
    redis.call('HSET', key, field, n)
    return tonumber(n)
  end
  return r
end

-- Add n to a per-minute counter that keeps itself for two hours.
-- (Counts go to Redis as strings: a number argument costs Redis a %.17g
-- conversion, a few thousand instructions each, on every hot path.)
local function fk_minute(minute, field, n)
  if fk_bump(minute, field, n == 1 and '1' or n) == n then
    redis.call('PEXPIRE', minute, '7200000')
  end
end

local function fk_count(stats, minute, field, n)
  fk_bump(stats, field, n == 1 and '1' or n)
  fk_minute(minute, field, n)
end

-- Whether s is an integer HINCRBY would take (and Lua holds exactly: at
-- most 15 characters): a count or fence computed here in place of an
-- HINCRBY is refused where HINCRBY would have refused it.
local function fk_is_int(s)
  return #s <= 15 and string.find(s, '^%-?%d+$') ~= nil
end

-- A reservation or delivery as a record holds it (a JSON list of at most
-- FK_QTY_MAX distinct, non-empty code strings), decoded; nil for anything
-- else, e.g. a value edited by hand, which must not be pushed into a stock
-- list: a code in it twice would go to two buyers, an empty one would be
-- delivered as a code. (No length limit: a shop may have stocked long
-- codes by hand, with RPUSH.)
local function fk_codes(s)
  local ok, v = pcall(cjson.decode, s)
  if not ok or type(v) ~= 'table' or #v > FK_QTY_MAX then return nil end
  local n, seen = 0, {}
  for _, c in pairs(v) do
    if type(c) ~= 'string' or #c == 0 or seen[c] then return nil end
    seen[c] = true
    n = n + 1
  end
  if n ~= #v then return nil end -- an object, or a list with holes
  return v
end

-- Reserve qty codes (qty_s: the same count as the string Redis is sent)
-- from the head of a stock list, all or none. LPOP takes what there is, up
-- to qty: one command on the hot path where LLEN + LPOP were two. A
-- shortfall is pushed back where it was, in its order (rare: the SKU is out
-- of stock). Returns the codes, or nil and how many the list held.
local function fk_reserve(skey, qty_s, qty)
  local got = redis.call('LPOP', skey, qty_s)
  if not got then return nil, 0 end
  if #got < qty then
    local back = {}
    for i = #got, 1, -1 do back[#back + 1] = got[i] end
    redis.call('LPUSH', skey, unpack(back))
    return nil, #got
  end
  return got
end

-- The integer a field read from Redis spells, or nil: what fk_is_int
-- takes ('^%-?%d+$', at most 15 characters: an integer HINCRBY would take,
-- and Lua's double holds exactly), and nil for a missing field. Records
-- and hashes are outside input -- an operator or another version may write
-- anything into them -- and tonumber reads far too much as a number:
-- 'inf', 'nan', hex ('0x7fffffffffffffff'), an exponent ('5e3'), padding
-- spaces. Every number the scripts read from a hash goes through this (or
-- fk_num), never through a bare tonumber; each call site says what an
-- unreadable value means there.
local function fk_int(s)
  if type(s) ~= 'string' or #s > 15 or not string.find(s, '^%-?%d+$') then return nil end
  return tonumber(s)
end

-- The reservation resv as a delivery may hand it over: fk_codes of it,
-- exactly qty codes (the record's qty, read as fk_int reads it). nil for
-- anything else: a value edited by hand, an empty list, a count that is
-- not the order's. Such a reservation is never delivered (and never kept
-- by an operator's S): it would give the buyer garbage, nothing, or codes
-- another order paid for.
local function fk_resv(resv, qty)
  local n = fk_int(qty)
  local c = resv and n and n >= 1 and fk_codes(resv)
  if not c or #c ~= n then return nil end
  return c
end

-- A finite number as Lua's tostring writes a fraction ('2.5', '1e-05'),
-- within +-10^15, or nil: for the few hash fields the scripts write as
-- fractions (the token bucket's tokens and next slot). No 'inf', 'nan',
-- hex or spaces.
local function fk_num(s)
  if type(s) ~= 'string' or #s > 32 or not string.find(s, '^%-?[%d.]+[eE]?[-+]?%d*$') then
    return nil
  end
  local v = tonumber(s)
  if not v or v ~= v or v >= 1e15 or v <= -1e15 then return nil end
  return v
end

-- An order reached a final state: count it (totals, failures by reason,
-- retry-count distribution, retry duration), drop its lease, and let a
-- settled record expire after the retention (never one waiting for review).
-- known (optional, a hot-path saving of two calls): {attempts, first_fail_at}
-- as the caller already read them, and the caller has dropped the lease.
local function fk_finalize(okey, stats, minute, state, reason, now, retention, known)
  local h = known or redis.call('HMGET', okey, 'attempts', 'first_fail_at')
  local attempts = h[1] or '0'
  -- a count that is not one (edited by hand) is counted under 0; a first
  -- failure that is no time (or a future one) is left out of the durations
  if #attempts > 15 or not string.find(attempts, '^%d+$') then attempts = '0' end
  local first_fail = fk_int(h[2]) or 0
  if first_fail > now then first_fail = 0 end
  fk_count(stats, minute, state, 1)
  if reason ~= '' then fk_count(stats, minute, 'reason:' .. reason, 1) end
  -- The retry figures count settlements (completed, failed, expired), not
  -- a wait for a human: an order in manual_review is counted when it
  -- leaves it (docs/METRICS.md)
  if state ~= FK_ST.MANUAL_REVIEW then
    fk_bump(stats, 'attempts:' .. attempts, '1')
    if first_fail > 0 then
      fk_bump(stats, 'retry_ms_sum', string.format('%d', now - first_fail))
      fk_bump(stats, 'retry_ms_count', '1')
    end
  end
  if not known then redis.call('HDEL', okey, 'lease_until', 'lease_entry') end
  local ret = tonumber(retention) or 0
  if ret > 0 and state ~= FK_ST.MANUAL_REVIEW then
    redis.call('EXPIRE', okey, string.find(retention, '^%d+$') and retention or ret)
  else
    redis.call('PERSIST', okey)
  end
end

-- The buyer cooldown (the story's "stubborn clicker"): a buyer's order
-- failed. Only failures that are the buyer's doing or the gateway's refusal
-- of the buyer count (declined, risk-rejected); out of stock, retries
-- exhausted, timeouts are ours and never hold a buyer back. `n` counted
-- failures within `window_s` start a cooldown of `cool_s` seconds
-- (field `until`, read by accept.lua) and the count starts afresh.
-- ckey is the buyer's {p}:cool:{buyer} hash (nil: no buyer, or cooldown off).
local FK_COOL_REASONS = {[FK_R.PAYMENT_DECLINED] = true, [FK_R.RISK_REJECTED] = true}

local function fk_cool_fail(ckey, oid, reason, now, n, window_s, cool_s)
  n = tonumber(n or '') or 0
  if not ckey or n <= 0 or not FK_COOL_REASONS[reason] then return end
  local w, c = (tonumber(window_s) or 0) * 1000, (tonumber(cool_s) or 0) * 1000
  redis.call('HSET', ckey, 'f:' .. oid, now)
  local h = redis.call('HGETALL', ckey)
  local live, old = {}, {}
  for i = 1, #h, 2 do
    if string.sub(h[i], 1, 2) == 'f:' then
      -- (a failure time that is not one counts as old: it goes)
      if (fk_int(h[i + 1]) or 0) <= now - w then old[#old + 1] = h[i]
      else live[#live + 1] = h[i] end
    end
  end
  if #old > 0 then redis.call('HDEL', ckey, unpack(old)) end
  local ttl = w
  if #live >= n then
    redis.call('HSET', ckey, 'until', now + c)
    redis.call('HDEL', ckey, unpack(live))
    if c > ttl then ttl = c end
  else
    -- (an `until` that is not a time holds nothing: see accept.lua)
    local untl = fk_int(redis.call('HGET', ckey, 'until')) or 0
    if untl - now > ttl then ttl = untl - now end
  end
  redis.call('PEXPIRE', ckey, ttl + 1000)
end

-- Fields a completed record drops (docs/KEYSPACE.md, "What a completed
-- record keeps"): the charge can only have been paid, and there is no
-- reason. Completed is terminal, so the fence guards nothing any more: it is
-- dropped too while it is 1 (the order was taken once), and kept as the
-- count of takes otherwise.
local FK_COMPLETED_DROP = {'reason', 'charge'}

-- Reasons of a failed record that never holds its id as an idempotency key
-- (accept.lua, the implicit key): it was refused for another order's key,
-- for its input, or for its buyer's cooldown.
local FK_NO_CLAIM = {[FK_R.DUPLICATE] = true, [FK_R.IDEMPOTENCY_CONFLICT] = true,
  [FK_R.INVALID_ORDER] = true, [FK_R.RATE_LIMITED] = true}

-- A transition's ops string as a set ({D = true, ...}), made once per
-- distinct string and kept for the library's life (a table and a closure
-- per call were garbage on the hot path). The callers are faka's own code,
-- with a handful of distinct strings; past 64 of them a set is made per call
-- and not kept. A set from here is shared: read it, never change it.
local FK_OPS, fk_ops_n = {}, 0
local function fk_ops(ops)
  local set = FK_OPS[ops]
  if set then return set end
  set = {}
  for i = 1, #ops do set[string.sub(ops, i, i)] = true end
  if fk_ops_n < 64 then FK_OPS[ops], fk_ops_n = set, fk_ops_n + 1 end
  return set
end

-- What a worker needs to carry an order on (read by pipeline.c load_work).
local FK_WORK_FIELDS = {'state', 'fence', 'charge', 'attempts', 'idem', 'sku', 'qty',
  'amount', 'currency', 'buyer', 'pay_status', 'payment_id', 'polls', 'resv'}

local function fk_work(okey)
  local h = redis.call('HMGET', okey, unpack(FK_WORK_FIELDS))
  local out = {'work'}
  for i = 1, #FK_WORK_FIELDS do out[i + 1] = h[i] or '' end
  return out
end

-- FK_ASK_FIRST (prelude, from state.h FK_CHARGE_ASK_FIRST): charge states
-- that mean "a charge may exist, or the gateway has answered already"; the
-- gateway is asked before anything is sent again.

-- Take the lease on an existing order for this entry:
--   {'done', state}  the order is final: the entry is acknowledged
--   {'owned'}        a live lease or a scheduled retry covers the order:
--                    this extra entry is acknowledged
--   {'busy'}         this same entry is held under a live lease (a slow
--                    worker): left pending, to be reclaimed later
--   {'work', ...}    lease taken, fence bumped (see fk_work)
-- send: the worker's gateway guard admitted a charge. If the order is to be
-- charged now (processing, no payment reported, no charge that may exist),
-- charge=sent is written with the lease -- the recovery point that
-- transition.lua op K would write -- and '1' is appended to the answer.
-- h (optional): {state, lease_until, lease_entry} as the caller just read
-- them. extra (optional): field/value pairs written with the lease, only
-- when it is taken.
-- The lease, the fence + 1 (from the value fk_work reads, so no HINCRBY),
-- charge=sent and extra go out in one HSET. A fence that is not an integer
-- is refused before anything is written here, as HINCRBY would refuse it.
local function fk_take(okey, rkey, stream, group, entry, oid, lease_ms, now, send, h, extra)
  h = h or redis.call('HMGET', okey, 'state', 'lease_until', 'lease_entry')
  local st = h[1]
  if FK_FINAL[st] then
    fk_ack(stream, group, entry)
    return {'done', st}
  end
  -- A lease_until that is not a time is no lease: the order is taken (the
  -- fence bump still shuts out whoever held it). Read as a number, '0x7ff...'
  -- or 'inf' would be a lease for ever: every entry 'owned', the order in no
  -- queue, and the reaper (settle_take.lua) keeping it busy for good.
  if (fk_int(h[2]) or 0) > now then
    if h[3] == entry then return {'busy'} end
    fk_ack(stream, group, entry)
    return {'owned'}
  end
  if redis.call('ZSCORE', rkey, oid) then
    fk_ack(stream, group, entry)
    return {'owned'}
  end
  local out = fk_work(okey)
  local fence = out[3] == '' and '0' or out[3]
  if not fk_is_int(fence) then
    return redis.error_reply('ERR order ' .. oid .. ': fence is not an integer')
  end
  out[3] = string.format('%d', tonumber(fence) + 1)
  local set = {'fence', out[3], 'lease_until', string.format('%d', now + lease_ms),
    'lease_entry', entry}
  if send and out[2] == FK_ST.PROCESSING and out[12] == '' and not FK_ASK_FIRST[out[4]] then
    set[7], set[8] = 'charge', 'sent'
    out[4], out[16] = 'sent', '1'
  end
  if extra then
    for i = 1, #extra do set[#set + 1] = extra[i] end
  end
  redis.call('HSET', okey, unpack(set))
  return out
end
