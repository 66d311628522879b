-- wrk script: PUT of 16-byte values over 1,000 keys, and latency percentiles at the end.
--   wrk -t2 -c64 -d20s -s scripts/wrk-put.lua http://127.0.0.1:8002
--   WRK_API=etcd wrk -t2 -c64 -d20s -s scripts/wrk-put.lua http://ETCD-LEADER   (etcd v2 API)
-- Any non-2xx answer (307 from a follower, 503, 504) is counted and reported. The last line
-- ("json: {...}") is the same summary for scripts (scripts/bench-vs-etcd.sh).
local counter = 0
local value = "0123456789abcdef"
local etcd = os.getenv("WRK_API") == "etcd"

request = function()
  counter = counter + 1
  local key = "key-" .. (counter % 1000)
  if etcd then
    return wrk.format("PUT", "/v2/keys/" .. key,
      {["Content-Type"] = "application/x-www-form-urlencoded"}, "value=" .. value)
  end
  return wrk.format("PUT", "/kv/" .. key, nil, value)
end

done = function(summary, latency, requests)
  local seconds = summary.duration / 1e6
  io.write(string.format("requests: %d, errors (non-2xx): %d, timeouts: %d\n",
    summary.requests, summary.errors.status, summary.errors.timeout))
  io.write(string.format("throughput: %.0f writes/s\n", summary.requests / seconds))
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
