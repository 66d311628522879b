-- wrk script: PUT of 16-byte values over 1,000 keys, and latency percentiles at the end.
--   wrk -t2 -c64 -d20s -s scripts/wrk-put.lua http://127.0.0.1:8002
-- Any non-2xx answer (307 from a follower, 503, 504) is counted and reported.
local counter = 0
local value = "0123456789abcdef"

request = function()
  counter = counter + 1
  local key = "key-" .. (counter % 1000)
  return wrk.format("PUT", "/kv/" .. key, nil, value)
end

done = function(summary, latency, requests)
  io.write(string.format("requests: %d, errors (non-2xx): %d, timeouts: %d\n",
    summary.requests, summary.errors.status, summary.errors.timeout))
  io.write(string.format("throughput: %.0f writes/s\n", summary.requests / (summary.duration / 1e6)))
  for _, p in ipairs({50, 90, 99, 99.9}) do
    io.write(string.format("p%g: %.2f ms\n", p, latency:percentile(p) / 1000))
  end
end
