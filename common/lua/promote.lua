-- promote.lua -- move due retries back onto the stream, in one call, so
-- that any number of workers promoting at once never promote an id twice
-- (ZRANGEBYSCORE + XADD + ZREM run atomically).
-- KEYS: 1 retry zset, 2 orders stream
-- ARGV: 1 batch limit
-- Entries: retry = '{order_id}@{due ms}'.
-- Returns {moved, ms until the next due id or -1 if none}
local now = fk_now()
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]),
  'WITHSCORES')
local ids = {}
for i = 1, #due, 2 do
  ids[#ids + 1] = due[i]
  -- the value carries the due time, so the worker can record lateness
  redis.call('XADD', KEYS[2], '*', 'retry', due[i] .. '@' .. due[i + 1])
end
due = ids
if #due > 0 then redis.call('ZREM', KEYS[1], unpack(due)) end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local wait = -1
if nxt[2] then
  wait = tonumber(nxt[2]) - now
  if wait < 0 then wait = 0 end
end
return {#due, wait}
