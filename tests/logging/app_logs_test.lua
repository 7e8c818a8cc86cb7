-- Tests for manifests/logging/app-logs.lua, run with LuaJIT (the Lua that Fluent Bit embeds) by
-- scripts/test-alerts. Each sample is a JSON line as the apps write it; it is decoded the way the
-- kubernetes filter's merge_log does, then passed through the filters as Fluent Bit would call them.
-- Usage: luajit tests/logging/app_logs_test.lua REPO_ROOT

local repo = arg[1] or "."
package.path = repo .. "/manifests/logging/?.lua;" .. package.path
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
  check("short numbers untouched", r.items[2] == "ref 20261128" and r.payload.card.expiry == "12/29")
end

-- Digits glued to a PAN must not shift the mask off the real card number.
do
  local r = pipeline([[{"msg":"id 34111111111111111"}]])
  local digits = string.match(r.msg, "id (.*)")
  check("glued PAN: interior hidden", digits ~= nil and string.sub(digits, 8, 13) == "******", r.msg)
  check("glued PAN: at most 10 digits readable", select(2, string.gsub(digits or "", "%d", "")) <= 10, r.msg)
end

-- No false positives on Luhn-invalid numbers, timestamps, or numbers too short to be a PAN.
do
  local r, _, code = pipeline([[{"msg":"order 4111111111111112 at 1764367200123 ts 2026-11-28T22:00:00Z n 411111111111"}]])
  check("no PAN: record unchanged", code == 0 and r.pan_masked == nil, r.msg)
end

-- A PAN concatenated with more digits (e.g. PAN + date in one reference) is still caught.
do
  local r = pipeline([[{"ref":"411111111111111120261128"}]])
  check("PAN inside a longer number masked", r.pan_masked == true and string.sub(r.ref, 7, 12) == "******", r.ref)
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

print(string.format("%d passed, %d failed", passed, failed))
os.exit(failed == 0 and 0 or 1)
