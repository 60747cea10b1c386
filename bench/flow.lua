-- wrk script: the Authlete-compatible backend API, a request's whole life: push, resolve, consume.
--
--   SERVICE_ID=1 SERVICE_TOKEN=... CLIENT_ID=... CLIENT_SECRET=... \
--     wrk -t1 -c32 -d20s --latency -s bench/flow.lua http://127.0.0.1:8000
--
-- An authorization server's calls: POST /api/{id}/pushed_auth_req with the client's parameters and
-- credentials (a unique `state` each), then .../resolve with client_id and the request_uri it got, then
-- .../consume. Requests are taken from a queue, so once running the mix is about a third of each.
-- FLOW_STEPS=push sends only the pushes (the backend API's push alone, to set against the RFC endpoint's).
-- done() (bench/report.lua) prints the RESULT line, with push_per_s, resolve_per_s and consume_per_s: the
-- expected answers of each call per second; non201 counts every answer that is not a 200 with the
-- expected outcome (CREATED, then "was resolved", then "was consumed").

dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "report.lua")

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

local push_only = os.getenv("FLOW_STEPS") == "push"
local counter = 0
local state_prefix = ""
local to_resolve, to_consume = {}, {}

function init(_args)
  state_prefix = unique_prefix("flow")
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

function response(status, _headers, body)
  if status ~= 200 then
    unexpected(tostring(status))
    return
  end
  local uri = body:match('"requestUri":"([^"]+)"')
  if body:find('"action":"CREATED"', 1, true) and uri then
    count_call("push")
    if not push_only then to_resolve[#to_resolve + 1] = uri end
  elseif body:find("was resolved", 1, true) and uri then
    count_call("resolve")
    to_consume[#to_consume + 1] = uri
  elseif body:find("was consumed", 1, true) then
    count_call("consume")
  else
    unexpected("200-" .. (body:match('"action":"([A-Z_]+)"') or "?"))
  end
end
