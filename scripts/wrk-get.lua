-- wrk script: linearizable GET (ReadIndex) over 1,000 keys, with latency percentiles.
--   wrk -t2 -c64 -d20s -s scripts/wrk-get.lua http://LEADER
--   WRK_API=etcd wrk -t2 -c64 -d20s -s scripts/wrk-get.lua http://ETCD-LEADER   (?quorum=true)
-- Absent keys answer 404, which wrk counts as errors: run scripts/wrk-put.lua first. The last
-- line ("json: {...}") is the same summary for scripts (scripts/bench-vs-etcd.sh).
local counter = 0
local etcd = os.getenv("WRK_API") == "etcd"

request = function()
  counter = counter + 1
  if etcd then
    return wrk.format("GET", "/v2/keys/key-" .. (counter % 1000) .. "?quorum=true")
  end
  return wrk.format("GET", "/kv/key-" .. (counter % 1000))
end

done = function(summary, latency, requests)
  local seconds = summary.duration / 1e6
  io.write(string.format("requests: %d, errors (non-2xx): %d, timeouts: %d\n",
    summary.requests, summary.errors.status, summary.errors.timeout))
  io.write(string.format("throughput: %.0f reads/s\n", summary.requests / seconds))
  for _, p in ipairs({50, 90, 99, 99.9}) do
    io.write(string.format("p%g: %.2f ms\n", p, latency:percentile(p) / 1000))
  end
  local e = summary.errors
  io.write(string.format('json: {"requests": %d, "seconds": %.3f, "non_2xx": %d, "timeouts": %d, '
    .. '"socket_errors": %d, "ok_per_s": %.1f, "p50_ms": %.3f, "p90_ms": %.3f, "p99_ms": %.3f, '
    .. '"p999_ms": %.3f, "max_ms": %.3f}\n',
    summary.requests, seconds, e.status, e.timeout, e.connect + e.read + e.write,
    (summary.requests - e.status) / seconds, latency:percentile(50) / 1000,
    latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency:percentile(99.9) / 1000, latency.max / 1000))
end
