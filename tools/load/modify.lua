-- wrk script: POST one modification per request, round robin over the tenants in
-- tenants.txt (a line each: "<token> <reservation id>"), alternating "=8" and "=12" cpu shards
-- for 2 s, so the live modifications stay bounded and every request is feasible.
local tenants = {}
for line in io.lines(os.getenv("TENANTS") or "tenants.txt") do
  local token, res = line:match("^(%S+)%s+(%d+)$")
  if token then tenants[#tenants + 1] = { token = token, res = res } end
end
local n = 0
request = function()
  n = n + 1
  local t = tenants[(n % #tenants) + 1]
  local cpu = (n % 2 == 0) and "=8" or "=12"
  local body = '{"changes":{"cpu":"' .. cpu .. '"},"for":"2s"}'
  return wrk.format("POST", "/v1/reservations/" .. t.res .. "/modifications", {
    ["Authorization"] = "Bearer " .. t.token,
    ["Content-Type"] = "application/json",
  }, body)
end

done = function(summary, latency)
  io.write(string.format("p50 %.2f ms, p99 %.2f ms\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
  io.write(string.format("non-2xx/3xx: %d\n", summary.errors.status))
end
