-- Shared by bench/par.lua and bench/flow.lua (loaded with dofile): environment, encoding, per-thread
-- identity, counting unexpected answers, and the RESULT line that bench/run.sh reads.
--
-- done() prints one machine-readable line:
--   RESULT rps=... requests=... duration_s=... p50_ms=... p90_ms=... p99_ms=... max_ms=... non201=...
--          errors=... connect_errors=... read_errors=... write_errors=... timeouts=... status_errors=...
-- and, if there were any, one `NON201 kind=count ...` line. non201 counts the answers the script did not
-- expect (each script says which it expects). A script that calls count_call(kind) for each expected
-- answer of a kind gets `<kind>_per_s=...` fields appended to the RESULT line (bench/flow.lua: push,
-- resolve and consume, each call's own rate within the mix).

function require_env(name)
  local value = os.getenv(name)
  if value == nil or value == "" then
    error("environment variable " .. name .. " is required")
  end
  return value
end

function urlencode(s)
  return (s:gsub("[^%w%-%._~]", function(ch) return string.format("%%%02X", ch:byte()) end))
end

-- setup() runs in the main Lua state, once per thread; the rest runs in each thread's own state.
local threads = {}
local main_run_id = tostring(os.time())

function setup(thread)
  thread:set("thread_no", #threads + 1)
  thread:set("run_id", main_run_id)
  threads[#threads + 1] = thread
end

-- Globals: done() reads them with thread:get(), which sees globals only.
non201 = 0
by_status = {}
calls = {}

function count_call(kind)
  calls[kind] = (calls[kind] or 0) + 1
end

function unexpected(kind)
  non201 = non201 + 1
  by_status[kind] = (by_status[kind] or 0) + 1
end

-- A prefix unique to this run and thread, for values that must not repeat (`state`).
function unique_prefix(name)
  -- run_id and thread_no are the globals setup() gave this thread.
  return name .. "-" .. tostring(run_id) .. "-" .. tostring(thread_no) .. "-"
end

function done(summary, latency, _requests)
  local total, statuses, kinds = 0, {}, {}
  for _, thread in ipairs(threads) do
    total = total + (thread:get("non201") or 0)
    local counts = thread:get("by_status")
    if counts then
      for status, count in pairs(counts) do statuses[status] = (statuses[status] or 0) + count end
    end
    local per_kind = thread:get("calls")
    if per_kind then
      for kind, count in pairs(per_kind) do kinds[kind] = (kinds[kind] or 0) + count end
    end
  end
  local e = summary.errors
  local duration_s = summary.duration / 1e6
  io.write(string.format(
    "RESULT rps=%.1f requests=%d duration_s=%.2f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f"
      .. " non201=%d errors=%d connect_errors=%d read_errors=%d write_errors=%d timeouts=%d status_errors=%d",
    summary.requests / duration_s, summary.requests, duration_s,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, total, e.connect + e.read + e.write + e.timeout, e.connect, e.read, e.write, e.timeout,
    e.status))
  local names = {}
  for kind, _ in pairs(kinds) do names[#names + 1] = kind end
  table.sort(names)
  for _, kind in ipairs(names) do
    io.write(string.format(" %s_per_s=%.1f", kind, kinds[kind] / duration_s))
  end
  io.write("\n")
  if total > 0 then
    local parts = {}
    for status, count in pairs(statuses) do parts[#parts + 1] = tostring(status) .. "=" .. tostring(count) end
    table.sort(parts)
    io.write("NON201 " .. table.concat(parts, " ") .. "\n")
  end
end
