-- wrk script: the Authlete-compatible backend API, a request's whole life: push, resolve, consume.
--
--   SERVICE_ID=1 SERVICE_TOKEN=... CLIENT_ID=... CLIENT_SECRET=... \
--     wrk -t1 -c32 -d20s --latency -s bench/flow.lua http://127.0.0.1:8000
--
-- An authorization server's calls: POST /api/{id}/pushed_auth_req with the client's parameters and
-- credentials (a unique `state` each), then .../resolve with client_id and the request_uri it got, then
-- .../consume. Requests are taken from a queue, so once running the mix is about a third of each.
-- done() prints the same RESULT line as par.lua; its non201 counts every answer that is not a 200 with
-- the expected outcome (CREATED, then "was resolved", then "was consumed").

local function require_env(name)
  local value = os.getenv(name)
  if value == nil or value == "" then
    error("flow.lua: environment variable " .. name .. " is required")
  end
  return value
end

local function urlencode(s)
  return (s:gsub("[^%w%-%._~]", function(ch) return string.format("%%%02X", ch:byte()) end))
end

local service_id = require_env("SERVICE_ID")
local client_id = require_env("CLIENT_ID")
local client_secret = require_env("CLIENT_SECRET")
local headers = {
  ["Authorization"] = "Bearer " .. require_env("SERVICE_TOKEN"),
  ["Content-Type"] = "application/json",
}
local base = "/api/" .. service_id .. "/pushed_auth_req"
-- RFC 7636 Appendix B: the S256 challenge of "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".
local parameters = "response_type=code&client_id=" .. urlencode(client_id)
  .. "&redirect_uri=" .. urlencode("https://client.example.org/cb") .. "&scope=openid"
  .. "&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256&state="

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
local to_resolve, to_consume = {}, {}

function init(_args)
  state_prefix = "flow-" .. tostring(run_id) .. "-" .. tostring(thread_no) .. "-"
end

function request()
  if #to_consume > 0 then
    local uri = table.remove(to_consume)
    return wrk.format("POST", base .. "/consume", headers,
      '{"clientId":"' .. client_id .. '","requestUri":"' .. uri .. '"}')
  end
  if #to_resolve > 0 then
    local uri = table.remove(to_resolve)
    return wrk.format("POST", base .. "/resolve", headers,
      '{"parameters":"client_id=' .. urlencode(client_id) .. "&request_uri=" .. urlencode(uri) .. '"}')
  end
  counter = counter + 1
  return wrk.format("POST", base, headers, '{"parameters":"' .. parameters .. state_prefix .. counter
    .. '","clientId":"' .. client_id .. '","clientSecret":"' .. client_secret .. '"}')
end

local function unexpected(kind)
  non201 = non201 + 1
  by_status[kind] = (by_status[kind] or 0) + 1
end

function response(status, _headers, body)
  if status ~= 200 then
    unexpected(tostring(status))
    return
  end
  local uri = body:match('"requestUri":"([^"]+)"')
  if body:find('"action":"CREATED"', 1, true) and uri then
    to_resolve[#to_resolve + 1] = uri
  elseif body:find("was resolved", 1, true) and uri then
    to_consume[#to_consume + 1] = uri
  elseif not body:find("was consumed", 1, true) then
    unexpected("200-" .. (body:match('"action":"([A-Z_]+)"') or "?"))
  end
end

function done(summary, latency, _requests)
  local total, statuses = 0, {}
  for _, thread in ipairs(threads) do
    total = total + (thread:get("non201") or 0)
    local counts = thread:get("by_status")
    if counts then
      for status, count in pairs(counts) do statuses[status] = (statuses[status] or 0) + count end
    end
  end
  local e = summary.errors
  local duration_s = summary.duration / 1e6
  io.write(string.format(
    "RESULT rps=%.1f requests=%d duration_s=%.2f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f"
      .. " non201=%d errors=%d connect_errors=%d read_errors=%d write_errors=%d timeouts=%d status_errors=%d\n",
    summary.requests / duration_s, summary.requests, duration_s,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, total, e.connect + e.read + e.write + e.timeout, e.connect, e.read, e.write, e.timeout,
    e.status))
  if total > 0 then
    local parts = {}
    for status, count in pairs(statuses) do parts[#parts + 1] = tostring(status) .. "=" .. tostring(count) end
    table.sort(parts)
    io.write("NON201 " .. table.concat(parts, " ") .. "\n")
  end
end
