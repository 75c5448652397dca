-- Turn a request's reservation into what it really consumed.
--
-- KEYS: [1] reservation hash, [2] reservation expiry zset, [3 .. 2+B] budget hashes,
--       [3+B .. 2+B+L] rate-limit hashes
-- ARGV: [1] request_id, [2] B, [3] L, [4] tokens used, [5] cost used (1e-10 USD),
--       [6] second the request was counted in, [7] token correction for TPM,
--       [8] tokens and [9] cost (1e-10 USD) spent beyond what was reserved (0 when the
--       reservation covered the request)
-- An overrun is counted on each budget's hash: "ov" requests, "ovt" tokens and "ovc" cost
-- past their reservation in this period (the admin shows them). The admission script
-- reads only st/sc/rt/rc, so a process still running its previous version is unaffected.
-- Returns, per budget, {spent_tokens, spent_cost} after settling (-1 if the counter is
-- gone: the ledger in the database already holds the request and a rebuild will count it).

local B = tonumber(ARGV[2])
local L = tonumber(ARGV[3])
local used_t = tonumber(ARGV[4])
local used_c = tonumber(ARGV[5])
local held = {}
local raw = redis.call('HGETALL', KEYS[1])
for i = 1, #raw, 2 do held[raw[i]] = raw[i + 1] end

local over_t = tonumber(ARGV[8] or 0)
local over_c = tonumber(ARGV[9] or 0)
local out = {}
for j = 1, B do
  local key = KEYS[2 + j]
  if redis.call('EXISTS', key) == 1 then
    local h = held[key]
    if h then
      -- Still reserved: release exactly what was held (a swept reservation is already gone).
      local sep = string.find(h, ':', 1, true)
      -- 0 - x, never -x: Lua prints -0 as '-0', which HINCRBY refuses.
      redis.call('HINCRBY', key, 'rt', 0 - tonumber(string.sub(h, 1, sep - 1)))
      redis.call('HINCRBY', key, 'rc', 0 - tonumber(string.sub(h, sep + 1)))
    end
    local st = redis.call('HINCRBY', key, 'st', used_t)
    local sc = redis.call('HINCRBY', key, 'sc', used_c)
    if over_t > 0 or over_c > 0 then
      redis.call('HINCRBY', key, 'ov', 1)
      redis.call('HINCRBY', key, 'ovt', over_t)
      redis.call('HINCRBY', key, 'ovc', over_c)
    end
    table.insert(out, st)
    table.insert(out, sc)
  else
    table.insert(out, -1)
    table.insert(out, -1)
  end
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])

local delta = tonumber(ARGV[7])
if delta ~= 0 then
  local field = 't' .. ARGV[6]
  for i = 1, L do
    local key = KEYS[2 + B + i]
    if redis.call('HEXISTS', key, field) == 1 then
      redis.call('HINCRBY', key, field, delta)
      redis.call('HINCRBY', key, 't0', delta)  -- the window's sum
    end
  end
end
return out
