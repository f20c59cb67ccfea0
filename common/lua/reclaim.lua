-- reclaim.lua -- take over entries stalled on dead or stuck consumers, in
-- one call: entries idle longer than the lease are claimed for the caller
-- (XCLAIM with min-idle, so two reclaimers never both get one), except
-- those Redis has already delivered max-deliveries times: those are poison
-- and go to the dead stream with their history. Redis's own delivery count
-- is used, so a worker that dies before it can count still counts.
-- The count also grows when workers holding a good entry keep dying, so a
-- dead-lettered entry that names an order is followed by a new entry for
-- that order: an `order` or `retry` entry by a `retry` entry, so an
-- accepted order carries on under its lease and fence (resume.lua
-- acknowledges a retry for an order that does not exist); a `payment`
-- entry by the same `payment` entry again (its raw value unchanged), as a
-- retry would drop the shop's report: an order expired meanwhile would
-- never learn it was paid. payment.lua is idempotent (a payment already
-- applied changes nothing), so applying it again is safe.
-- The loop this makes: an entry that can never be settled (payment.lua
-- refusing it for good, say) is dead-lettered and re-added every
-- max-deliveries x lease, for as long as it fails. That is slow (one cycle
-- is max-deliveries reclaims, each a lease apart) and visible: every cycle
-- leaves an entry in the dead stream and counts `dead`
-- (docs/OPERATIONS.md, "Stalled entries and the recovery time").
-- Lua does not roll back: the one write that can fail, XADD to a dead
-- stream key of another type, is checked before anything is written (an
-- error reply, nothing written, the entries left pending), and each entry
-- is then dead-lettered, re-queued and acknowledged in that order.
-- KEYS: 1 orders stream, 2 dead stream, 3 stats, 4 stats minute
-- ARGV: 1 group, 2 consumer, 3 min idle ms, 4 count, 5 max deliveries,
--       6 dead stream max length
-- Returns the claimed entries, shaped like XREADGROUP's: {{id, fields}, ...},
-- or an error reply and no write when the dead stream key holds another type.
local stream, dead, stats, minute = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local group, consumer, idle = ARGV[1], ARGV[2], ARGV[3]
local maxd = tonumber(ARGV[5])
local pend = redis.call('XPENDING', stream, group, 'IDLE', idle, '-', '+', tonumber(ARGV[4]))
-- The order an entry is about, or nil.
local function order_of(kind, raw)
  local oid
  if kind == 'retry' then
    oid = string.match(raw, '^([^@]+)')
  elseif (kind == 'order' or kind == 'payment') and #raw <= 16384 then
    local ok, v = pcall(cjson.decode, raw)
    if ok and type(v) == 'table' and type(v.order_id) == 'string' then oid = v.order_id end
  end
  if oid and #oid <= 64 and string.match(oid, '^[%w_.:%-]+$') then return oid end
  return nil
end

-- (checked only when an entry is to be dead-lettered, before the first
-- write: while none is, a broken dead key does not stop the reclaim)
for _, p in ipairs(pend) do
  if tonumber(p[4]) >= maxd then
    local t = redis.call('TYPE', dead).ok
    if t ~= 'stream' and t ~= 'none' then
      return redis.error_reply('ERR ' .. dead .. ' is a ' .. t .. ', not the dead stream')
    end
    break
  end
end

local claim = {}
local now = nil
for _, p in ipairs(pend) do
  local id, owner, deliveries = p[1], p[2], tonumber(p[4])
  if deliveries >= maxd then
    local e = redis.call('XRANGE', stream, id, id)
    local kind, raw = '', ''
    if e[1] and e[1][2] then kind, raw = e[1][2][1] or '', e[1][2][2] or '' end
    local oid = order_of(kind, raw)
    local full = raw
    if #raw > 4096 then raw = string.sub(raw, 1, 4096) .. '...[truncated]' end
    local history = 'last consumer ' .. owner .. ', idle ' .. p[3] .. ' ms, deliveries ' ..
      deliveries
    if oid and kind == 'payment' then
      history = history .. '; payment for order ' .. oid .. ' re-queued as a payment entry'
    elseif oid then
      history = history .. '; order ' .. oid .. ' re-queued as a retry entry (an order ' ..
        'never accepted has no record to resume: fakactl dead requeue takes it up)'
    end
    redis.call('XADD', dead, 'MAXLEN', '~', ARGV[6], '*', 'raw', raw,
      'error', 'delivered ' .. deliveries .. ' times without being settled',
      'source_id', id, 'kind', kind, 'order_id', oid or '', 'history', history)
    if oid and kind == 'payment' then
      redis.call('XADD', stream, '*', 'payment', full)
    elseif oid then
      now = now or fk_now()
      redis.call('XADD', stream, '*', 'retry', oid .. '@' .. now)
    end
    redis.call('XACK', stream, group, id)
    fk_count(stats, minute, 'dead', 1)
  else
    claim[#claim + 1] = id
  end
end
if #claim == 0 then return {} end
return redis.call('XCLAIM', stream, group, consumer, idle, unpack(claim))
