-- sweep_consumers.lua -- remove consumers of dead workers from the group,
-- and heartbeats nobody refreshes. A consumer goes only when it has nothing
-- pending (checked here, atomically with the removal: pending entries stay
-- where reclaim can find them) and its worker stopped heart-beating more
-- than `ttl` ms ago (no heartbeat at all: Redis's own idle time counts). A
-- live worker whose consumer was removed loses nothing: its next
-- XREADGROUP creates it again.
-- KEYS: 1 orders stream, 2 workers zset, 3 reapers zset
-- ARGV: 1 group, 2 ttl ms
-- Returns {removed consumer names, stale heartbeats removed, live workers,
--          live reapers}
local stream, wkey, rkey = KEYS[1], KEYS[2], KEYS[3]
local group, ttl = ARGV[1], tonumber(ARGV[2])
local now = fk_now()
local removed, holding = {}, {}
local cons = {}
if redis.call('EXISTS', stream) == 1 then
  cons = redis.pcall('XINFO', 'CONSUMERS', stream, group)
  if cons.err then cons = {} end -- no group yet: nothing to sweep
end
for _, c in ipairs(cons) do
  local f = {}
  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
  local name, pending, idle = f['name'], tonumber(f['pending']) or 0, tonumber(f['idle']) or 0
  if pending > 0 then
    holding[name] = true
  else
    local hb = redis.call('ZSCORE', wkey, name)
    local stale
    if hb then stale = now - tonumber(hb) > ttl else stale = idle > ttl end
    if stale then
      redis.call('XGROUP', 'DELCONSUMER', stream, group, name)
      redis.call('ZREM', wkey, name)
      removed[#removed + 1] = name
    end
  end
end
-- heartbeats of workers that are gone; a dead worker still holding entries
-- keeps its (stale) heartbeat, so an operator sees who holds them
local old = redis.call('ZRANGEBYSCORE', wkey, '-inf', '(' .. (now - ttl))
local gone = 0
for _, name in ipairs(old) do
  if not holding[name] then
    gone = gone + redis.call('ZREM', wkey, name)
  end
end
gone = gone + redis.call('ZREMRANGEBYSCORE', rkey, '-inf', '(' .. (now - ttl))
return {removed, gone, redis.call('ZCOUNT', wkey, now - ttl, '+inf'),
  redis.call('ZCOUNT', rkey, now - ttl, '+inf')}
