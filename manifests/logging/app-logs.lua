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
-- status, duration_ms, version, request_id, actor.
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
  -- actor: who acted (PCI DSS 10.2.2 asks for the user identity first). Apps log it as "actor";
  -- common spellings are mapped, and so is the API server audit event's user.username.
  if record.actor == nil then
    local user = record.user
    if type(user) == "table" then user = user.username end
    set("actor", record.user_id or record.userId or record.sub or (type(user) == "string" and user or nil))
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

-- Card brands by IIN range and PAN length (Visa, Mastercard, Amex, Discover, Diners, JCB, UnionPay,
-- and Nigeria's Verve). A number must match one, as well as Luhn, outside a card field: a random
-- number passes Luhn one time in ten, a brand's prefix and length rule most of the rest out, and
-- 13-digit Nigerian phone numbers (234...) match no brand at all.
local BRANDS = {
  { 1, 4, 4, { [13] = true, [16] = true, [19] = true } },
  { 2, 51, 55, { [16] = true } },
  { 4, 2221, 2720, { [16] = true } },
  { 2, 34, 34, { [15] = true } },
  { 2, 37, 37, { [15] = true } },
  { 4, 6011, 6011, { [16] = true, [17] = true, [18] = true, [19] = true } },
  { 3, 644, 649, { [16] = true, [17] = true, [18] = true, [19] = true } },
  { 2, 65, 65, { [16] = true, [17] = true, [18] = true, [19] = true } },
  { 2, 36, 36, { [14] = true, [15] = true, [16] = true, [17] = true, [18] = true, [19] = true } },
  { 3, 300, 305, { [14] = true, [15] = true, [16] = true, [17] = true, [18] = true, [19] = true } },
  { 4, 3528, 3589, { [16] = true, [17] = true, [18] = true, [19] = true } },
  { 2, 62, 62, { [16] = true, [17] = true, [18] = true, [19] = true } },
  { 6, 506099, 506198, { [16] = true, [18] = true, [19] = true } },
  { 6, 507865, 507964, { [16] = true, [18] = true, [19] = true } },
}

local function branded(digits)
  for _, brand in ipairs(BRANDS) do
    local prefix = tonumber(string.sub(digits, 1, brand[1]))
    if prefix and prefix >= brand[2] and prefix <= brand[3] and brand[4][#digits] then
      return true
    end
  end
  return false
end

-- Field names, lower-cased with separators removed, that decide how a value is treated.
-- Sensitive authentication data and expiry dates are removed whole (PCI DSS 3.3.1: SAD is never
-- stored after authorization).
local DROP_FIELDS = {}
for _, name in ipairs({ "cvv", "cvv2", "cvc", "cvc2", "cid", "csc", "cav2", "securitycode",
  "cardsecuritycode", "cardverificationvalue", "cardverificationcode", "pin", "pinblock", "track",
  "track1", "track2", "trackdata", "expiry", "expirydate", "expdate", "exp", "expiration",
  "expirationdate", "expmonth", "expyear", "expirymonth", "expiryyear" }) do
  DROP_FIELDS[name] = true
end
-- A card field: any Luhn-valid 12-19 digits in it are masked, even glued to other digits.
local function card_field(key)
  return key == "pan" or key == "cc" or key == "ccnumber" or key == "ccnum"
    or string.find(key, "card", 1, true) ~= nil or string.find(key, "pan$") ~= nil
end
-- An identifier field: its values are IDs by contract (the apps' request_id, trace ids, phone
-- numbers) and are not scanned, so that IDs stay searchable and the PAN alert stays quiet.
-- `raw` is the key as logged: "id" must end a word (user_id, userId, ID), so "paid" is no ID.
local function id_field(key, raw)
  return key == "id" or string.find(raw, "[_%-%.]id$") ~= nil or string.find(raw, "[_%-%.]ID$") ~= nil
    or string.find(raw, "%lId$") ~= nil or string.find(raw, "%lID$") ~= nil
    or string.find(key, "uuid", 1, true) ~= nil
    or string.find(key, "ref$") ~= nil or string.find(key, "reference", 1, true) ~= nil
    or string.find(key, "phone", 1, true) ~= nil or string.find(key, "msisdn", 1, true) ~= nil
    or string.find(key, "mobile", 1, true) ~= nil
end
local function normal_key(key)
  return (string.gsub(string.lower(tostring(key)), "[^%w]", ""))
end

-- Marks, in `masked`, the digits of digits[start..start+length-1] to hide: all but the first 6 and
-- the last 4 (PCI DSS v4.0.1 3.4.1 for display and 3.5.1 for storage: at most the BIN and last four).
local function hide(masked, start, length)
  for i = start + 6, start + length - 5 do masked[i] = true end
end

-- In a card field every window of 13-19 digits starting 2-6 that passes Luhn is a PAN, so digits
-- glued to a PAN cannot shift the mask off it. Returns digit positions to hide, or nil.
local function loose_positions(digits)
  local masked
  for start = 1, #digits - 12 do
    local first = string.byte(digits, start) - 48
    if first >= 2 and first <= 6 then
      for length = 13, math.min(19, #digits - start + 1) do
        if luhn_valid(string.sub(digits, start, start + length - 1)) then
          masked = masked or {}
          hide(masked, start, length)
        end
      end
    end
  end
  return masked
end

-- Elsewhere a PAN is a whole group of digits, or several groups joined by single separators
-- ("4111 1111 1111 1111"), that matches a brand and Luhn: never part of a longer number, so 20- and
-- 30-digit IDs are left alone. `groups` lists each group's first and last digit position.
local function strict_positions(digits, groups)
  local masked
  for i = 1, #groups do
    for j = i, #groups do
      local first, last = groups[i][1], groups[j][2]
      local length = last - first + 1
      if length > 19 then break end
      if length >= 13 then
        local candidate = string.sub(digits, first, last)
        if branded(candidate) and luhn_valid(candidate) then
          masked = masked or {}
          hide(masked, first, length)
        end
      end
    end
  end
  return masked
end

-- Separators allowed between the digit groups of one PAN: space, hyphen, dot, URL-encoded space.
local SEPARATORS = { " ", "-", ".", "%20", "+" }

-- Masks the PANs in a string; returns the new string and whether anything was masked.
local function mask_string(s, loose)
  local out, any, pos, n = {}, false, 1, #s
  while pos <= n do
    local a = string.find(s, "%d", pos)
    if not a then
      out[#out + 1] = string.sub(s, pos)
      break
    end
    out[#out + 1] = string.sub(s, pos, a - 1)
    -- Read one run: digit groups joined by single separators.
    local pieces, all, groups, i = {}, "", {}, a
    while true do
      local b = select(2, string.find(s, "^%d+", i))
      local group = string.sub(s, i, b)
      pieces[#pieces + 1] = { digits = group }
      groups[#groups + 1] = { #all + 1, #all + #group }
      all = all .. group
      i = b + 1
      local joined = false
      for _, sep in ipairs(SEPARATORS) do
        if string.sub(s, i, i + #sep - 1) == sep and string.find(s, "^%d", i + #sep) then
          pieces[#pieces + 1] = { sep = sep }
          i = i + #sep
          joined = true
          break
        end
      end
      if not joined then break end
    end
    local masked
    if loose then masked = loose_positions(all) else masked = strict_positions(all, groups) end
    local k = 0
    for _, piece in ipairs(pieces) do
      if piece.sep then
        out[#out + 1] = piece.sep
      else
        for c = 1, #piece.digits do
          k = k + 1
          out[#out + 1] = (masked and masked[k]) and "*" or string.sub(piece.digits, c, c)
        end
      end
    end
    any = any or masked ~= nil
    pos = i
  end
  return table.concat(out), any
end

-- Returns whether a PAN was masked and whether a sensitive field was dropped, anywhere in t.
local function mask_table(t, parent_card)
  local any_pan, any_dropped = false, false
  local keys = {}
  for key in pairs(t) do keys[#keys + 1] = key end
  for _, key in ipairs(keys) do
    local value, name = t[key], normal_key(key)
    local card = parent_card or card_field(name)
    if type(key) == "string" and DROP_FIELDS[name] then
      t[key] = nil
      any_dropped = true
    elseif type(key) == "string" and id_field(name, key) and not card then
      -- Identifier by contract: left as is.
    elseif type(value) == "string" then
      local masked, found = mask_string(value, card)
      if found then
        t[key] = masked
        any_pan = true
      end
    elseif type(value) == "number" and value == math.floor(value) and math.abs(value) >= 1e12 then
      -- A PAN logged as a JSON number: cjson and Fluent Bit hand it over as a Lua number.
      local masked, found = mask_string(string.format("%.0f", value), card)
      if found then
        t[key] = masked
        any_pan = true
      end
    elseif type(value) == "table" then
      local pan, dropped = mask_table(value, card and type(key) == "string")
      any_pan = any_pan or pan
      any_dropped = any_dropped or dropped
    end
  end
  return any_pan, any_dropped
end

-- Masks PANs and drops sensitive authentication data in every field, however deeply nested, and
-- flags the record (pan_masked, sad_dropped) so that card data reaching the logs is alerted on and
-- fixed at its source.
function M.mask_pan(tag, timestamp, record)
  local pan, dropped = mask_table(record, false)
  if not pan and not dropped then
    return 0, timestamp, record
  end
  if pan then record.pan_masked = true end
  if dropped then record.sad_dropped = true end
  return 2, timestamp, record
end

-- Fluent Bit looks the functions up as globals; tests load the file as a module.
normalize_record = M.normalize_record
mask_pan = M.mask_pan
return M
