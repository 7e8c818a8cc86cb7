-- Tests for manifests/logging/app-logs.lua, run with LuaJIT (the Lua that Fluent Bit embeds) by
-- scripts/test-alerts. Each sample is a JSON line as the apps write it; it is decoded the way the
-- kubernetes filter's merge_log does, then passed through the filters as Fluent Bit would call them.
-- Usage: luajit tests/logging/app_logs_test.lua REPO_ROOT [FILTER_DIR]
--   FILTER_DIR loads app-logs.lua from elsewhere (e.g. an older version, to compare its rates).

local repo = arg[1] or "."
package.path = (arg[2] or (repo .. "/manifests/logging")) .. "/?.lua;" .. package.path
local cjson = require("cjson")
local filters = require("app-logs")

local passed, failed = 0, 0
local function check(name, condition, detail)
  if condition then
    passed = passed + 1
  else
    failed = failed + 1
    print("FAIL " .. name .. (detail and (": " .. detail) or ""))
  end
end

-- Runs a decoded line through both filters in pipeline order; returns the record and both codes.
local function pipeline(line)
  local record = cjson.decode(line)
  local code1, ts1, after_normalize = filters.normalize_record("kube.var.log.containers.x", 1700000000, record)
  local code2, ts2, after_mask = filters.mask_pan("kube.var.log.containers.x", ts1, after_normalize)
  check("timestamp kept", ts1 == 1700000000 and ts2 == 1700000000)
  return after_mask, code1, code2
end

local SCHEMA = { "time", "level", "method", "path", "status", "duration_ms", "version", "request_id" }
local function has_schema(name, record)
  for _, key in ipairs(SCHEMA) do
    check(name .. " has " .. key, record[key] ~= nil)
  end
end

-- go-app: log/slog JSONHandler (upper-case level, RFC 3339 time).
do
  local r, code = pipeline([[{"time":"2026-11-28T22:00:00.123456789Z","level":"INFO","msg":"request",]]
    .. [["app":"go-app","version":"1.4.2","method":"GET","path":"/","route":"/","status":200,]]
    .. [["duration_ms":12.5,"request_id":"3f2a9c0d1e4b5a6978877665544332211","remote":"10.1.2.3:5555"}]])
  has_schema("go-app", r)
  check("go-app level lower-cased", r.level == "info", r.level)
  check("go-app time untouched", r.time == "2026-11-28T22:00:00.123456789Z", r.time)
  check("go-app normalize reports a change", code == 2)
  check("go-app hex request id not mistaken for a PAN", r.pan_masked == nil and
    r.request_id == "3f2a9c0d1e4b5a6978877665544332211")
end

-- node-app: pino with Fastify's request fields (numeric level, epoch-ms time, reqId, req/res).
do
  local r = pipeline([[{"level":30,"time":1764367200123,"pid":1,"hostname":"node-app-5c9d-x2k4q",]]
    .. [["reqId":"req-1f","req":{"method":"POST","url":"/?sleep=10"},"res":{"statusCode":201},]]
    .. [["responseTime":10.7,"msg":"request completed","version":"1.4.2"}]])
  has_schema("node-app", r)
  check("pino level named", r.level == "info", tostring(r.level))
  check("pino time converted", r.time == "2025-11-28T22:00:00.123Z", tostring(r.time))
  check("pino reqId mapped", r.request_id == "req-1f")
  check("pino req/res mapped", r.method == "POST" and r.path == "/?sleep=10" and r.status == 201)
  check("pino responseTime mapped", r.duration_ms == 10.7)
  check("pino epoch-ms time is not a PAN", r.pan_masked == nil)
end

-- A line already in the target schema, from another workload, passes untouched.
do
  local r, code1, code2 = pipeline([[{"time":"2026-11-28T22:00:01Z","level":"warn","msg":"slow",]]
    .. [["method":"GET","path":"/stream","status":200,"duration_ms":120000,"version":"1","request_id":"a"}]])
  check("clean line: normalize keeps it", code1 == 0, tostring(code1))
  check("clean line: mask keeps it", code2 == 0, tostring(code2))
  check("clean line unchanged", r.level == "warn" and r.duration_ms == 120000)
end

-- PANs anywhere in the record are masked to BIN + last four, separators kept.
do
  local r, _, code = pipeline([[{"time":"2026-11-28T22:00:02Z","level":"ERROR",]]
    .. [["msg":"charge failed for card 4111 1111 1111 1111 at merchant 42",]]
    .. [["payload":{"card":{"number":"5500-0000-0000-0004","expiry":"12/29"}},]]
    .. [=["items":["amex 378282246310005","ref 20261128"]}]=])
  check("mask reports a change", code == 2)
  check("record flagged", r.pan_masked == true)
  check("spaced Visa masked", r.msg == "charge failed for card 4111 11** **** 1111 at merchant 42", r.msg)
  check("nested hyphenated Mastercard masked", r.payload.card.number == "5500-00**-****-0004",
    r.payload.card.number)
  check("PAN inside an array masked", r.items[1] == "amex 378282*****0005", r.items[1])
  check("short numbers untouched", r.items[2] == "ref 20261128")
  check("expiry dropped by name", r.payload.card.expiry == nil and r.sad_dropped == true)
end

-- In a card field, digits glued to a PAN must not shift the mask off the real card number.
do
  local r = pipeline([[{"card_number":"34111111111111111"}]])
  local digits = r.card_number
  check("glued PAN: interior hidden", string.sub(digits, 8, 13) == "******", digits)
  check("glued PAN: at most 10 digits readable", select(2, string.gsub(digits, "%d", "")) <= 10, digits)
end

-- Separators: dots and URL-encoded spaces, as in query strings and some gateways' logs.
do
  local r = pipeline([[{"msg":"card 4111.1111.1111.1111 ok","path":"/pay?pan=5500%200000%200000%200004&x=1"}]])
  check("dotted PAN masked", r.msg == "card 4111.11**.****.1111 ok", r.msg)
  check("%20-separated PAN masked", r.path == "/pay?pan=5500%2000**%20****%200004&x=1", r.path)
  check("separator PANs flagged", r.pan_masked == true)
end

-- A PAN logged as a JSON number reaches the filter as a Lua number.
do
  local r = pipeline([[{"msg":"charge","amount":150000,"payload":{"number":4111111111111111,"ts":1764367200123}}]])
  check("PAN as JSON number masked", r.payload.number == "411111******1111", tostring(r.payload.number))
  check("PAN as JSON number flagged", r.pan_masked == true)
  check("other numbers keep their type", r.amount == 150000 and r.payload.ts == 1764367200123)
end

-- Sensitive authentication data and expiry dates are dropped by field name, at any depth.
do
  local r, _, code = pipeline([[{"msg":"auth","cvv":"123","CVC2":"456","card":{"exp_month":12,]]
    .. [["exp_year":2029,"expiryDate":"12/29","security-code":"789","pin_block":"0412AC"},"status":402}]])
  check("SAD: record changed", code == 2)
  check("SAD: cvv dropped", r.cvv == nil and r.CVC2 == nil)
  check("SAD: nested expiry and security code dropped", next(r.card) == nil)
  check("SAD: flagged, not as a PAN", r.sad_dropped == true and r.pan_masked == nil)
  check("SAD: other fields kept", r.status == 402 and r.msg == "auth")
end

-- Identifier fields are not scanned; a 13-digit Nigerian phone number matches no card brand.
do
  local r, _, code = pipeline([[{"msg":"sms to 2348031234567 sent","transaction_id":"4111111111111111",]]
    .. [["phone":"2348031234567","payment_ref":"5500000000000004"}]])
  check("ids and phones: unchanged", code == 0 and r.pan_masked == nil, r.msg)
  r = pipeline([[{"userId":"4111111111111111","orderID":"4111111111111111","paid":"4111111111111111"}]])
  check("camelCase ids unchanged", r.userId == "4111111111111111" and r.orderID == "4111111111111111")
  check("a key merely ending in -id is scanned", r.paid == "411111******1111", r.paid)
end

-- Long IDs in free text are not PANs: a PAN is a whole group of digits (or separated groups).
do
  local r, _, code = pipeline([[{"msg":"settlement 41111111111111110000 batch 411111111111111100000000000000"}]])
  check("20- and 30-digit ids: unchanged", code == 0, r.msg)
end

-- No false positives on Luhn-invalid numbers, timestamps, or numbers too short to be a PAN.
do
  local r, _, code = pipeline([[{"msg":"order 4111111111111112 at 1764367200123 ts 2026-11-28T22:00:00Z n 411111111111"}]])
  check("no PAN: record unchanged", code == 0 and r.pan_masked == nil, r.msg)
end

-- The actor (10.2.2's user identity) is mapped from common spellings and from API audit events.
do
  local r = pipeline([[{"level":"info","msg":"refund","user_id":"merchant-42:ops@example.com"}]])
  check("actor from user_id", r.actor == "merchant-42:ops@example.com", tostring(r.actor))
  r = pipeline([[{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","stage":"ResponseComplete",]]
    .. [["verb":"delete","user":{"username":"oidc:alice@example.com","groups":["platform-admins"]},]]
    .. [["sourceIPs":["10.0.0.7"],"objectRef":{"resource":"secrets","namespace":"go-app","name":"db"},]]
    .. [["responseStatus":{"code":200}}]])
  check("actor from an API audit event", r.actor == "oidc:alice@example.com", tostring(r.actor))
  r = pipeline([[{"level":"info","msg":"x","actor":"svc:go-app","user_id":"other"}]])
  check("an explicit actor wins", r.actor == "svc:go-app", tostring(r.actor))
end

-- In a card field, a PAN concatenated with more digits (PAN + date) is still caught.
do
  local r = pipeline([[{"card":"411111111111111120261128"}]])
  check("PAN inside a longer number masked", r.pan_masked == true and string.sub(r.card, 7, 12) == "******", r.card)
end

-- A line that is not JSON keeps its raw "log" string; a PAN in it is masked too.
do
  local r = pipeline([[{"log":"panic: card=6011111111111117 declined","stream":"stderr"}]])
  check("raw log line masked", r.log == "panic: card=601111******1117 declined", r.log)
end

-- Real output of both apps (apps/go-app at apps-branch commit 5778ebd, apps/node-app from the same
-- branch's work in progress), recorded with curl against /, a POST with X-Request-Id, a 404, a bad
-- ?sleep and /stream, then SIGTERM. Every line must pass through unmasked with a lower-case level, and
-- every request line must come out in the full schema.
for _, app in ipairs({ "go-app", "node-app" }) do
  local file = assert(io.open(repo .. "/tests/logging/fixtures/" .. app .. ".jsonl", "r"))
  local lines, requests = 0, 0
  for line in file:lines() do
    lines = lines + 1
    local name = app .. " fixture line " .. lines
    local r = pipeline(line)
    check(name .. " level lower-case", r.level == "info", tostring(r.level))
    check(name .. " not masked", r.pan_masked == nil, line)
    if r.msg == "request" then
      requests = requests + 1
      has_schema(name, r)
    end
  end
  file:close()
  check(app .. " fixture has request lines", requests >= 5, tostring(requests))
end

-- Rates on generated data: how often random IDs and phone numbers are taken for PANs (false
-- positives), and how often generated valid PANs are caught. Fixed seed, so the numbers repeat.
math.randomseed(20261128)
local function random_digits(n, first)
  local t = { first or tostring(math.random(1, 9)) }
  for _ = #t[1] + 1, n do t[#t + 1] = tostring(math.random(0, 9)) end
  return table.concat(t)
end
local function with_luhn(body)  -- appends the check digit that makes body valid
  for d = 0, 9 do
    local candidate = body .. d
    local sum, double = 0, false
    for i = #candidate, 1, -1 do
      local x = string.byte(candidate, i) - 48
      if double then x = x * 2; if x > 9 then x = x - 9 end end
      sum, double = sum + x, not double
    end
    if sum % 10 == 0 then return candidate end
  end
end
local N = 10000
local function rate(name, make, limit)
  local hits = 0
  for _ = 1, N do
    -- The filters called directly: one check per row, not one per generated value.
    local _, _, r = filters.mask_pan("kube.x", 0, cjson.decode(cjson.encode(make())))
    if r.pan_masked then hits = hits + 1 end
  end
  local pct = 100 * hits / N
  print(string.format("rate %-44s %5d / %d = %6.2f %%", name, hits, N, pct))
  check("rate " .. name, limit(pct), string.format("%.2f %%", pct))
end
local prefixes = { "70", "80", "81", "90", "91" }
local function phone() return "234" .. prefixes[math.random(1, 5)] .. random_digits(8, "") end
local none = function(p) return p == 0 end
rate("random 16-digit ids in free text", function() return { msg = "payment ref " .. random_digits(16) } end,
  function(p) return p < 3 end)
rate("random 20-digit ids in free text", function() return { msg = "ref " .. random_digits(20) } end, none)
rate("random 30-digit ids in free text", function() return { msg = "ref " .. random_digits(30) } end, none)
rate("13-digit Nigerian phone numbers in free text", function() return { msg = "otp sent to " .. phone() } end, none)
rate("random 16-digit ids in a transaction_id field", function() return { transaction_id = random_digits(16) } end, none)
local separators = { "", " ", "-", ".", "%20" }
local brands = { { "4", 16 }, { "51", 16 }, { "2221", 16 }, { "37", 15 }, { "506099", 19 }, { "6011", 16 } }
rate("valid PANs, any brand and separator, caught", function()
  local brand = brands[math.random(1, #brands)]
  local pan = with_luhn(random_digits(brand[2] - 1, brand[1]))
  local sep = separators[math.random(1, #separators)]
  return { msg = "card " .. (string.gsub(pan, "(%d%d%d%d)", "%1" .. sep:gsub("%%", "%%%%"))) .. " declined" }
end, function(p) return p == 100 end)

print(string.format("%d passed, %d failed", passed, failed))
os.exit(failed == 0 and 0 or 1)
