-- Shared by the scenario scripts: the bearer token from the environment,
-- and a summary that counts only successful (2xx) answers.
local M = {}

M.token = os.getenv("BENCH_TOKEN") or error("BENCH_TOKEN is not set")
M.base = os.getenv("BENCH_BASE") or ""

function M.headers(extra)
  local h = {["Authorization"] = "Bearer " .. M.token}
  for k, v in pairs(extra or {}) do h[k] = v end
  return h
end

-- wrk calls done() once, after the run: one line the driver parses.
function M.done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local e = summary.errors
  local failed = e.status
  local socket = e.connect + e.read + e.write + e.timeout
  local ok = summary.requests - failed
  io.write(string.format(
    "RESULT ok_per_s=%.1f ok=%d non2xx=%d socket_errors=%d p50_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
    ok / seconds, ok, failed, socket, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end

return M
