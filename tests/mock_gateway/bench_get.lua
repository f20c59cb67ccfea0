-- bench_get.lua -- wrk script: GET /charges/{key} over keys recorded by a
-- bench_post.lua run. Arguments: that run's tag and how many keys its
-- first thread recorded (keys b1-<tag>-1 .. b1-<tag>-<n>).
function init(args)
   tag = args[1] or "run"
   n = tonumber(args[2] or "1000")
   math.randomseed(12345)
end

function request()
   return wrk.format("GET", "/charges/b1-" .. tag .. "-" .. math.random(1, n))
end
