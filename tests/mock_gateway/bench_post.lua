-- bench_post.lua -- wrk script: POST /charges, a fresh Idempotency-Key per
-- request (so every request records a new charge), one key prefix per wrk
-- thread. Argument: a run tag that keeps keys unique across runs.
local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("tid", #threads)
end

function init(args)
   prefix = "b" .. (tid or 1) .. "-" .. (args[1] or "run") .. "-"
   counter = 0
end

function request()
   counter = counter + 1
   local key = prefix .. counter
   return wrk.format("POST", "/charges",
      { ["Idempotency-Key"] = key, ["Content-Type"] = "application/json" },
      '{"order_id":"' .. key .. '","amount":3000,"currency":"CNY","buyer":"bench@example.com"}')
end
