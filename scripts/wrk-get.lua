-- wrk script: linearizable GET (ReadIndex) over 1,000 keys, with latency percentiles.
--   wrk -t2 -c64 -d20s -s scripts/wrk-get.lua http://LEADER
-- Absent keys answer 404, which wrk counts as errors: run scripts/wrk-put.lua first.
local counter = 0

request = function()
  counter = counter + 1
  return wrk.format("GET", "/kv/key-" .. (counter % 1000))
end

done = function(summary, latency, requests)
  io.write(string.format("requests: %d, errors (non-2xx): %d, timeouts: %d\n",
    summary.requests, summary.errors.status, summary.errors.timeout))
  io.write(string.format("throughput: %.0f reads/s\n", summary.requests / (summary.duration / 1e6)))
  for _, p in ipairs({50, 90, 99, 99.9}) do
    io.write(string.format("p%g: %.2f ms\n", p, latency:percentile(p) / 1000))
  end
end
