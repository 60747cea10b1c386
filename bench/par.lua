-- wrk script: RFC 9126 pushed authorization requests against par-server.
--
--   SERVICE_ID=1 CLIENT_ID=... CLIENT_SECRET=... \
--     wrk -t1 -c32 -d20s --latency -s bench/par.lua http://127.0.0.1:8000
--   PAR_PATH=/request CLIENT_ID=... CLIENT_SECRET=... wrk ... -s bench/par.lua http://127.0.0.1:PORT  (the peer)
--
-- Each request is a POST /services/{SERVICE_ID}/par authenticated with client_secret_basic, carrying a
-- PKCE S256 challenge and a `state` unique per request (run id, thread number, per-thread counter).
-- AUTH (the whole Authorization header value) may be given instead of CLIENT_SECRET.
-- done() (bench/report.lua) prints the RESULT line; non201 counts every answer other than 201.

dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "report.lua")

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

local counter = 0
local state_prefix = ""

function init(_args)
  state_prefix = unique_prefix("bench")
end

function request()
  counter = counter + 1
  return wrk.format("POST", path, headers, body_prefix .. state_prefix .. counter)
end

function response(status, _headers, _body)
  if status ~= 201 then
    unexpected(status)
  end
end
