-- stock_add.lua -- add card codes to a SKU's stock, each code once in the
-- SKU's life (`fakactl stock add`). A code that reached the stock once is
-- in the SKU's ledger set for good, whether it is in stock, reserved or
-- delivered, so adding it again is skipped: the same file added twice, or
-- added again after a run that stopped part-way, adds only what is missing.
-- KEYS: 1 stock list, 2 ledger set (every code ever stocked for the SKU)
-- ARGV: 1 '1': first enter the codes in the stock list into the ledger
--       (codes pushed there by hand), '0': do not; 2.. the codes
-- Returns {added, skipped, codes in stock}, or an error reply and no write
-- when a key holds another type.
local t = redis.call('TYPE', KEYS[1]).ok
if t ~= 'list' and t ~= 'none' then
  return redis.error_reply('ERR ' .. KEYS[1] .. ' is a ' .. t .. ', not a list of codes')
end
t = redis.call('TYPE', KEYS[2]).ok
if t ~= 'set' and t ~= 'none' then
  return redis.error_reply('ERR ' .. KEYS[2] .. ' is a ' .. t .. ', not the ledger set')
end
if ARGV[1] == '1' then
  local len = redis.call('LLEN', KEYS[1])
  for i = 0, len - 1, 1000 do
    local part = redis.call('LRANGE', KEYS[1], i, i + 999)
    if #part > 0 then redis.call('SADD', KEYS[2], unpack(part)) end
  end
end
local new = {}
for i = 2, #ARGV do
  if redis.call('SADD', KEYS[2], ARGV[i]) == 1 then new[#new + 1] = ARGV[i] end
end
local n
if #new > 0 then
  n = redis.call('RPUSH', KEYS[1], unpack(new))
else
  n = redis.call('LLEN', KEYS[1])
end
return {#new, #ARGV - 1 - #new, n}
