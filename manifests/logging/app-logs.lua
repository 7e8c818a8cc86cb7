-- Fluent Bit Lua filters for the apps' JSON logs (loaded by fluent-bit.yaml).
--
-- Fluent Bit calls each function as f(tag, timestamp, record) and reads back (code, timestamp, record):
-- code 0 keeps the record unchanged, 2 replaces it and keeps the timestamp. Both functions only touch
-- fields they understand, so lines from other workloads pass through.
-- Hand-written because no Fluent Bit filter does Luhn-checked PAN masking, and loggers disagree on
-- level and time encodings: Go's log/slog writes "INFO", pino's defaults are 30 and epoch milliseconds
-- (our node-app configures names and ISO times, other Node services may not).

local M = {}

-- pino's numeric levels (https://getpino.io levels) mapped to the names slog uses, in lower case.
local PINO_LEVELS = { [10] = "trace", [20] = "debug", [30] = "info", [40] = "warn", [50] = "error", [60] = "fatal" }

local function epoch_ms_to_rfc3339(ms)
  local seconds = math.floor(ms / 1000)
  return os.date("!%Y-%m-%dT%H:%M:%S", seconds) .. string.format(".%03dZ", ms - seconds * 1000)
end

-- Brings both apps' lines to one schema: time (RFC 3339 UTC), level (lower case), method, path,
-- status, duration_ms, version, request_id.
function M.normalize_record(tag, timestamp, record)
  local changed = false
  local function set(key, value)
    if value ~= nil and record[key] ~= value then
      record[key] = value
      changed = true
    end
  end

  if type(record.level) == "number" then
    set("level", PINO_LEVELS[record.level] or tostring(record.level))
  elseif type(record.level) == "string" then
    set("level", string.lower(record.level))
  end
  if type(record.time) == "number" then
    set("time", epoch_ms_to_rfc3339(record.time))
  end
  if record.request_id == nil then
    set("request_id", record.reqId or record.req_id)
  end
  if record.duration_ms == nil and type(record.responseTime) == "number" then
    set("duration_ms", record.responseTime)
  end
  if type(record.req) == "table" then
    if record.method == nil then set("method", record.req.method) end
    if record.path == nil then set("path", record.req.url) end
  end
  if type(record.res) == "table" and record.status == nil then
    set("status", record.res.statusCode)
  end
  if not changed then
    return 0, timestamp, record
  end
  return 2, timestamp, record
end

-- Luhn checksum over a string of digits.
local function luhn_valid(digits)
  local sum, double = 0, false
  for i = #digits, 1, -1 do
    local d = string.byte(digits, i) - 48
    if double then
      d = d * 2
      if d > 9 then d = d - 9 end
    end
    sum = sum + d
    double = not double
  end
  return sum % 10 == 0
end

-- Card PANs are 13-19 digits, start with 2-6 for the schemes we accept (Visa, Mastercard, Amex,
-- Discover, Verve), and pass Luhn. Epoch-millisecond timestamps start with 1 and are left alone.
-- Every candidate window is checked, not just the first hit, so digits glued to a PAN cannot shift the
-- window and leave part of the real PAN readable. Returns digit positions to hide, or nil.
local function pan_mask_positions(digits)
  local masked
  for start = 1, #digits - 12 do
    local first = string.byte(digits, start) - 48
    if first >= 2 and first <= 6 then
      for length = 13, math.min(19, #digits - start + 1) do
        if luhn_valid(string.sub(digits, start, start + length - 1)) then
          masked = masked or {}
          -- Keep the first 6 and last 4 (PCI DSS v4.0 3.4.1: at most the BIN and last four).
          for i = start + 6, start + length - 5 do masked[i] = true end
        end
      end
    end
  end
  return masked
end

-- Masks the PANs inside one run of digits, spaces and hyphens; separators stay in place.
local function mask_run(run)
  local masked = pan_mask_positions((string.gsub(run, "%D", "")))
  if not masked then return run, false end
  local out, n = {}, 0
  for ch in string.gmatch(run, ".") do
    if string.find(ch, "%d") then
      n = n + 1
      out[#out + 1] = masked[n] and "*" or ch
    else
      out[#out + 1] = ch
    end
  end
  return table.concat(out), true
end

local function mask_string(s)
  local any = false
  local result = string.gsub(s, "%d[%d %-]*%d", function(run)
    local masked, found = mask_run(run)
    any = any or found
    return masked
  end)
  return result, any
end

local function mask_table(t)
  local any = false
  for key, value in pairs(t) do
    if type(value) == "string" then
      local masked, found = mask_string(value)
      if found then
        t[key] = masked
        any = true
      end
    elseif type(value) == "table" then
      any = mask_table(value) or any
    end
  end
  return any
end

-- Masks PANs in every string field, however deeply nested, and flags the record so that a PAN
-- reaching the logs is alerted on and fixed at its source.
function M.mask_pan(tag, timestamp, record)
  if not mask_table(record) then
    return 0, timestamp, record
  end
  record.pan_masked = true
  return 2, timestamp, record
end

-- Fluent Bit looks the functions up as globals; tests load the file as a module.
normalize_record = M.normalize_record
mask_pan = M.mask_pan
return M
