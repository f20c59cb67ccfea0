-- dead.lua -- dead-letter an entry that cannot be processed: copy it to
-- the dead stream with the error, mark its order failed/invalid_order when
-- the id could be read and no record exists yet (an existing order is never
-- touched by garbage that names it), count it, acknowledge it.
-- Transitions (checked against state.c by tests/unit/test_state.c):
--   none -> failed/invalid_order (only when no record exists)
-- KEYS: 1 orders stream, 2 dead stream, 3 stats, 4 stats minute,
--       [5 order hash]
-- ARGV: 1 group, 2 entry id, 3 raw (size-capped by the caller), 4 error,
--       5 kind, 6 order_id ('' = unreadable), 7 message, 8 retention s,
--       9 dead stream max length, 10 extra history ('' = none)
-- Returns {'dead'} | {'gone'} (no longer pending: someone settled it)
local stream, dead, stats, minute, okey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
-- The dead-stream XADD, which fails on a key of another type, comes before
-- the acknowledgement: Lua does not roll back, and an entry acknowledged
-- but not dead-lettered would be lost while the log says it stays pending.
if ARGV[2] ~= '' and #redis.call('XPENDING', stream, ARGV[1], ARGV[2], ARGV[2], 1) == 0 then
  return {'gone'}
end
local fields = {'raw', ARGV[3], 'error', ARGV[4], 'source_id', ARGV[2], 'kind', ARGV[5],
  'order_id', ARGV[6]}
if ARGV[10] ~= '' then
  fields[#fields + 1] = 'history'
  fields[#fields + 1] = ARGV[10]
end
redis.call('XADD', dead, 'MAXLEN', '~', ARGV[9], '*', unpack(fields))
fk_ack(stream, ARGV[1], ARGV[2])
fk_count(stats, minute, 'dead', 1)
if okey and redis.call('EXISTS', okey) == 0 then
  local now = fk_now()
  redis.call('HSET', okey, 'state', FK_ST.FAILED, 'reason', FK_R.INVALID_ORDER,
    'message', ARGV[7], 'attempts', 0, 'created_at', now, 'updated_at', now)
  fk_count(stats, minute, 'submitted', 1)
  fk_finalize(okey, stats, minute, FK_ST.FAILED, FK_R.INVALID_ORDER, now, ARGV[8])
end
return {'dead'}
