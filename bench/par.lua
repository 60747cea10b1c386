-- wrk script: RFC 9126 pushed authorization requests against par-server.
--
--   SERVICE_ID=1 CLIENT_ID=... CLIENT_SECRET=... \
--     wrk -t1 -c32 -d20s --latency -s bench/par.lua http://127.0.0.1:8000
--   PAR_PATH=/request CLIENT_ID=... CLIENT_SECRET=... wrk ... -s bench/par.lua http://127.0.0.1:PORT  (the peer)
--
-- Each request is a POST /services/{SERVICE_ID}/par authenticated with client_secret_basic, carrying a
-- PKCE S256 challenge and a `state` unique per request (run id, thread number, per-thread counter).
-- AUTH (the whole Authorization header value) may be given instead of CLIENT_SECRET.
-- done() prints one machine-readable line:
--   RESULT rps=... requests=... duration_s=... p50_ms=... p90_ms=... p99_ms=... max_ms=... non201=...
--          errors=... connect_errors=... read_errors=... write_errors=... timeouts=... status_errors=...
-- and, if there were any, one `NON201 status=count ...` line.

local function require_env(name)
  local value = os.getenv(name)
  if value == nil or value == "" then
    error("par.lua: environment variable " .. name .. " is required")
  end
  return value
end

-- Base64 (RFC 4648) with arithmetic only, so it runs on Lua 5.1 and LuaJIT alike.
local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function base64(data)
  local out = {}
  for i = 1, #data, 3 do
    local a, b, c = data:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local c1 = math.floor(n / 262144) % 64
    local c2 = math.floor(n / 4096) % 64
    local c3 = math.floor(n / 64) % 64
    local c4 = n % 64
    out[#out + 1] = B64:sub(c1 + 1, c1 + 1) .. B64:sub(c2 + 1, c2 + 1)
      .. (b and B64:sub(c3 + 1, c3 + 1) or "=") .. (c and B64:sub(c4 + 1, c4 + 1) or "=")
  end
  return table.concat(out)
end

local function urlencode(s)
  return (s:gsub("[^%w%-%._~]", function(ch) return string.format("%%%02X", ch:byte()) end))
end

local client_id = require_env("CLIENT_ID")
local auth = os.getenv("AUTH")
if auth == nil or auth == "" then
  auth = "Basic " .. base64(urlencode(client_id) .. ":" .. urlencode(require_env("CLIENT_SECRET")))
end
local redirect_uri = os.getenv("REDIRECT_URI") or "https://client.example.org/cb"
local scope = os.getenv("SCOPE") or "openid"
-- RFC 7636 Appendix B: the S256 challenge of "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".
local code_challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"

-- PAR_PATH points the same requests at another server's PAR endpoint (the peer's is /request).
local path = os.getenv("PAR_PATH")
if path == nil or path == "" then
  path = "/services/" .. require_env("SERVICE_ID") .. "/par"
end
local headers = {
  ["Authorization"] = auth,
  ["Content-Type"] = "application/x-www-form-urlencoded",
  ["Accept"] = "application/json",
}
local body_prefix = "response_type=code&client_id=" .. urlencode(client_id)
  .. "&redirect_uri=" .. urlencode(redirect_uri)
  .. "&scope=" .. urlencode(scope)
  .. "&code_challenge=" .. code_challenge
  .. "&code_challenge_method=S256"
  .. "&state="

-- setup() runs in the main Lua state, once per thread; the rest runs in each thread's own state.
local threads = {}
local main_run_id = tostring(os.time())

function setup(thread)
  thread:set("thread_no", #threads + 1)
  thread:set("run_id", main_run_id)
  threads[#threads + 1] = thread
end

local counter = 0
non201 = 0  -- global: done() reads it with thread:get(), which sees globals only
by_status = {}
local state_prefix = ""

function init(_args)
  -- run_id and thread_no are the globals setup() gave this thread.
  state_prefix = "bench-" .. tostring(run_id) .. "-" .. tostring(thread_no) .. "-"
end

function request()
  counter = counter + 1
  return wrk.format("POST", path, headers, body_prefix .. state_prefix .. counter)
end

function response(status, _headers, _body)
  if status ~= 201 then
    non201 = non201 + 1
    by_status[status] = (by_status[status] or 0) + 1
  end
end

function done(summary, latency, _requests)
  local total_non201 = 0
  local statuses = {}
  for _, thread in ipairs(threads) do
    total_non201 = total_non201 + (thread:get("non201") or 0)
    local counts = thread:get("by_status")
    if counts then
      for status, count in pairs(counts) do
        statuses[status] = (statuses[status] or 0) + count
      end
    end
  end
  local e = summary.errors
  local duration_s = summary.duration / 1e6
  local socket_errors = e.connect + e.read + e.write + e.timeout
  io.write(string.format(
    "RESULT rps=%.1f requests=%d duration_s=%.2f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f"
      .. " non201=%d errors=%d connect_errors=%d read_errors=%d write_errors=%d timeouts=%d status_errors=%d\n",
    summary.requests / duration_s, summary.requests, duration_s,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, total_non201, socket_errors, e.connect, e.read, e.write, e.timeout, e.status))
  if total_non201 > 0 then
    local parts = {}
    for status, count in pairs(statuses) do
      parts[#parts + 1] = tostring(status) .. "=" .. tostring(count)
    end
    table.sort(parts)
    io.write("NON201 " .. table.concat(parts, " ") .. "\n")
  end
end
