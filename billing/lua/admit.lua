local unpack = unpack or table.unpack
-- Check and consume every rate limit and reserve every budget of one request, atomically.
-- A request is refused whole (nothing is counted anywhere) or counted everywhere.
--
-- KEYS: [1] reservation hash, [2] reservation expiry zset,
--       [3 .. 2+L] rate-limit hashes, [3+L .. 2+L+B] budget hashes
-- ARGV: [1] now_ms, [2] request_id, [3] reservation expiry (ms, absolute: the request's
--       own deadline plus a margin), [4] L, [5] B, [6] prompt-token estimate (for TPM),
--       [7] the fewest output tokens the reservation may be lowered to (-1: the client
--       set the cap, never lower it), [8] output tokens in the reservation, [9] output
--       price (1e-12 USD a token), [10] the reservation's prompt cost (1e-10 USD),
--       then per limit: rpm, tpm (-1 = none),
--       then per budget: max_tokens, max_cost (-1 = none), hard (1/0), tokens, cost
-- Rate-limit hashes hold one field per second: "r<sec>" requests, "t<sec>" tokens (a
-- window is the last 60 whole seconds), and their sums (see slide() below). Budget
-- hashes hold st/sc (spent tokens/cost) and rt/rc (reserved); cost is an integer in
-- 1e-10 USD.
-- Returns {status, ...}: {"ok", sec, output tokens granted, reserved tokens, reserved
-- cost, then per limit: rem_req, rem_tok, reset_req, reset_tok}
-- or {"rate_limited", limit_index, kind, limit, retry_ms} or {"budget", budget_index,
-- kind, exhausted (1/0), output tokens that would fit beside the prompt} or {"missing",
-- budget_index...}.

local WINDOW = 60
local now_ms = tonumber(ARGV[1])
local now_s = math.floor(now_ms / 1000)
local L = tonumber(ARGV[4])
local B = tonumber(ARGV[5])
local est = tonumber(ARGV[6])
local min_out = tonumber(ARGV[7])
local out_t = tonumber(ARGV[8])
local out_price = tonumber(ARGV[9])
local prompt_c = tonumber(ARGV[10])

-- Release reservations whose request died without settling (a killed process).
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now_ms, 'LIMIT', 0, 50)
for _, rid in ipairs(expired) do
  local rkey = 'gw:resv:' .. rid
  local held = redis.call('HGETALL', rkey)
  for i = 1, #held, 2 do
    local budget_key = held[i]
    local sep = string.find(held[i + 1], ':', 1, true)
    local t = tonumber(string.sub(held[i + 1], 1, sep - 1))
    local c = tonumber(string.sub(held[i + 1], sep + 1))
    if redis.call('EXISTS', budget_key) == 1 then
      redis.call('HINCRBY', budget_key, 'rt', 0 - t)  -- never '-0', which Redis refuses
      redis.call('HINCRBY', budget_key, 'rc', 0 - c)
    end
  end
  redis.call('DEL', rkey)
  redis.call('ZREM', KEYS[2], rid)
end

-- Budgets whose counters are gone (Redis restarted or flushed, or a new period) must be
-- rebuilt from the database ledger before anything is decided.
local missing = {}
for j = 1, B do
  if redis.call('EXISTS', KEYS[2 + L + j]) == 0 then
    table.insert(missing, j)
  end
end
if #missing > 0 then
  return {'missing', unpack(missing)}
end

-- Rate limits. Besides its per-second buckets, each hash keeps the sums of the buckets it
-- holds and the oldest second that holds one, so that admission takes out only the
-- seconds that have just left the window instead of reading all of them: a hash under
-- steady load holds 120 buckets, and reading them all made up most of this script's cost.
-- The sums are named like buckets of second 0 ("r0" requests, "t0" tokens, "f0" the
-- oldest second, "b0" when they were last recounted): a process still running the previous
-- version of this script sees them as long expired and deletes them instead of failing,
-- and this one then recounts. Every bucket is also recounted once a window, so that
-- whatever put the sums off (a previous version's settlement, a hand edit) lasts at most
-- one window.
local function recount(key)
  local fields = redis.call('HGETALL', key)
  local used_r, used_t, first = 0, 0, nil
  local stale = {}
  for f = 1, #fields, 2 do
    local name = fields[f]
    local kind = string.sub(name, 1, 1)
    local sec = tonumber(string.sub(name, 2))
    if (kind == 'r' or kind == 't') and sec and sec > 0 then
      if sec <= now_s - WINDOW then
        table.insert(stale, name)
      else
        if kind == 'r' then
          used_r = used_r + tonumber(fields[f + 1])
        else
          used_t = used_t + tonumber(fields[f + 1])
        end
        if first == nil or sec < first then first = sec end
      end
    end
  end
  if #stale > 0 then
    redis.call('HDEL', key, unpack(stale))
  end
  redis.call('HSET', key, 'r0', used_r, 't0', used_t, 'b0', now_s)
  if first then redis.call('HSET', key, 'f0', first) else redis.call('HDEL', key, 'f0') end
  return used_r, used_t, first
end

-- The window's totals after dropping the seconds that left it, and its oldest second.
local function slide(key)
  local v = redis.call('HMGET', key, 'r0', 't0', 'f0', 'b0')
  local used_r, used_t, first, counted = tonumber(v[1]), tonumber(v[2]), tonumber(v[3]), tonumber(v[4])
  local horizon = now_s - WINDOW  -- this second and older are out of the window
  if used_r == nil or used_t == nil or counted == nil or counted <= horizon
      or (first ~= nil and first < horizon - WINDOW) then
    return recount(key)
  end
  if first == nil then
    if used_r ~= 0 or used_t ~= 0 then return recount(key) end  -- sums with no bucket
    return 0, 0, nil
  end
  if first > horizon then
    return used_r, used_t, first
  end
  local names = {}
  for sec = first, horizon do
    table.insert(names, 'r' .. sec)
    table.insert(names, 't' .. sec)
  end
  local values = redis.call('HMGET', key, unpack(names))
  local gone_r, gone_t = 0, 0
  for n = 1, #names, 2 do
    gone_r = gone_r + (tonumber(values[n]) or 0)
    gone_t = gone_t + (tonumber(values[n + 1]) or 0)
  end
  redis.call('HDEL', key, unpack(names))
  used_r, used_t = used_r - gone_r, used_t - gone_t
  -- The new oldest second: the first after the horizon that has a bucket (under steady
  -- load the very next one). A clock ahead of ours may have written up to a window ahead.
  first = nil
  if used_r ~= 0 or used_t ~= 0 then
    for sec = horizon + 1, now_s + WINDOW do
      if redis.call('HEXISTS', key, 'r' .. sec) == 1 then
        first = sec
        break
      end
    end
    if first == nil then return recount(key) end  -- sums that no bucket explains
  end
  redis.call('HSET', key, 'r0', used_r, 't0', used_t)
  if first then redis.call('HSET', key, 'f0', first) else redis.call('HDEL', key, 'f0') end
  return used_r, used_t, first
end

-- The oldest second of the window whose tokens still count (settlement can bring a second's
-- tokens down to zero, and such a second frees nothing when it leaves).
local function oldest_tokens(key, first)
  for sec = first, math.max(first, now_s) + WINDOW do
    local t = tonumber(redis.call('HGET', key, 't' .. sec))
    if t and t > 0 then return sec end
  end
  return nil
end

local results = {}
local firsts = {}  -- per limit, its window's oldest second before this request (or nil)
local base = 10
for i = 1, L do
  local key = KEYS[2 + i]
  local rpm = tonumber(ARGV[base + 1])
  local tpm = tonumber(ARGV[base + 2])
  base = base + 2
  local used_r, used_t, first = slide(key)
  local oldest_r = (first ~= nil and used_r > 0) and first or nil
  local oldest_t = (first ~= nil and used_t > 0) and oldest_tokens(key, first) or nil
  local reset_r = oldest_r and ((oldest_r + WINDOW) * 1000 - now_ms) or 0
  local reset_t = oldest_t and ((oldest_t + WINDOW) * 1000 - now_ms) or 0
  if rpm >= 0 and used_r + 1 > rpm then
    return {'rate_limited', i, 'requests', rpm, math.max(reset_r, 1)}
  end
  if tpm >= 0 and used_t + est > tpm then
    local retry = reset_t
    if est > tpm then retry = -1 end  -- can never fit: no point retrying
    return {'rate_limited', i, 'tokens', tpm, retry}
  end
  local rem_r = rpm >= 0 and (rpm - used_r - 1) or -1
  local rem_t = tpm >= 0 and (tpm - used_t - est) or -1
  -- Counting this request may start the window: it frees up a full window from now.
  if oldest_r == nil then reset_r = (now_s + WINDOW) * 1000 - now_ms end
  if oldest_t == nil and est > 0 then reset_t = (now_s + WINDOW) * 1000 - now_ms end
  table.insert(results, {rem_r, rem_t, reset_r, reset_t})
  firsts[i] = first
end

-- Budgets: hard ones refuse when spent + reserved + this request's worst case would pass.
-- A request whose output cap the gateway chose (the client set none) is instead lowered
-- to the output that still fits every hard budget, if that is at least min_out tokens.
local function out_cost(tokens)  -- 1e-10 USD, rounded up like every reservation
  return math.ceil(tokens * out_price / 100)
end
local specs = {}
local grant = out_t
local short = nil  -- the budget that fits the least output: {index, kind, exhausted, fits}
for j = 1, B do
  local key = KEYS[2 + L + j]
  local v = redis.call('HMGET', key, 'st', 'sc', 'rt', 'rc')
  local spec = {
    key = key,
    max_t = tonumber(ARGV[base + 1]), max_c = tonumber(ARGV[base + 2]),
    hard = tonumber(ARGV[base + 3]) == 1,
    need_t = tonumber(ARGV[base + 4]), need_c = tonumber(ARGV[base + 5]),
    left_t = 0, left_c = 0,
  }
  base = base + 5
  spec.left_t = spec.max_t - tonumber(v[1] or 0) - tonumber(v[3] or 0)
  spec.left_c = spec.max_c - tonumber(v[2] or 0) - tonumber(v[4] or 0)
  specs[j] = spec
  local over_t = spec.max_t >= 0 and spec.need_t > spec.left_t
  local over_c = spec.max_c >= 0 and spec.need_c > spec.left_c
  if spec.hard and (over_t or over_c) then
    -- The output tokens that would still fit beside the prompt, under each limit passed.
    local kind, exhausted, fits = nil, 0, out_t
    if over_t then
      kind, fits = 'tokens', spec.left_t - (spec.need_t - out_t)
      if spec.left_t <= 0 then exhausted = 1 end
    end
    if over_c then
      local fits_c = -1
      if out_price > 0 then
        fits_c = math.floor((spec.left_c - prompt_c) * 100 / out_price)
      elseif spec.left_c >= prompt_c then
        fits_c = out_t
      end
      if kind == nil or fits_c < fits then
        kind, fits = 'cost', fits_c
        exhausted = spec.left_c <= 0 and 1 or 0
      end
    end
    if fits >= out_t then fits = out_t - 1 end  -- (rounding: the worst case did not fit)
    if fits < 0 then fits = 0 end
    if short == nil or fits < short[4] then short = {j, kind, exhausted, fits} end
    if fits < grant then grant = fits end
  end
end
if short ~= nil then
  if min_out < 0 or grant <= 0 or grant < min_out then
    return {'budget', short[1], short[2], short[3], short[4]}
  end
  -- Every budget reserves the lowered worst case; the hard ones are checked again with it.
  for _, spec in ipairs(specs) do
    spec.need_t = spec.need_t - out_t + grant
    spec.need_c = prompt_c + out_cost(grant)
    if spec.hard and ((spec.max_t >= 0 and spec.need_t > spec.left_t)
        or (spec.max_c >= 0 and spec.need_c > spec.left_c)) then
      return {'budget', short[1], short[2], short[3], short[4]}
    end
  end
end

-- Admitted: count it everywhere.
for i = 1, L do
  local key = KEYS[2 + i]
  redis.call('HINCRBY', key, 'r' .. now_s, 1)
  redis.call('HINCRBY', key, 'r0', 1)
  if est > 0 then
    redis.call('HINCRBY', key, 't' .. now_s, est)
    redis.call('HINCRBY', key, 't0', est)
  end
  local first = firsts[i]
  if first == nil or now_s < first then  -- (older than the oldest: a clock running behind)
    redis.call('HSET', key, 'f0', now_s)
  end
  redis.call('EXPIRE', key, WINDOW * 2)
end
local held_t, held_c = 0, 0
if B > 0 then
  for _, spec in ipairs(specs) do
    redis.call('HINCRBY', spec.key, 'rt', spec.need_t)
    redis.call('HINCRBY', spec.key, 'rc', spec.need_c)
    redis.call('HSET', KEYS[1], spec.key, spec.need_t .. ':' .. spec.need_c)
    held_t, held_c = spec.need_t, spec.need_c
  end
  -- No TTL on the reservation itself: settle or the sweep above deletes it, and a sweep
  -- long after expiry must still find what to release.
  redis.call('ZADD', KEYS[2], tonumber(ARGV[3]), ARGV[2])
end

local out = {'ok', now_s, grant, held_t, held_c}
for _, r in ipairs(results) do
  for _, x in ipairs(r) do table.insert(out, x) end
end
return out
