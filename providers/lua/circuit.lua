-- Circuit breakers, one hash per target (KEYS are "gw:cb:<provider>/<model>").
--
-- Hash fields: s = state ("o" open, "h" half-open with a probe out; no field = closed),
-- f = consecutive failures, oa = opened at, pa = next probe at, pt = probe token,
-- lu = probe lease until (all times in ms), and the failure-rate window as buckets
-- "wa:<n>" (attempts) and "wf:<n>" (failures) where n = floor(time / bucket). A missing
-- hash is a closed circuit with nothing to remember: closing one deletes it.
--
-- ARGV: [1] op (read | probe | record | reset), [2] now, [3] window, [4] bucket (ms), then
--   probe:  [5] token, [6 ..] lease (ms) for each key
--   record: [5] outcome (ok | fail | release), [6] token or "", [7] failure threshold,
--           [8] cool-down (ms), [9] minimum attempts for the rate, [10] rate (per mille)
-- Returns, per key: state (0 closed, 1 open, 2 half-open with a probe out), consecutive
-- failures, window failures, window attempts, opened at, next probe at, lease until,
-- allowed (probe: 1 when the caller may send; otherwise 0).

local op = ARGV[1]
local now = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local bucket = tonumber(ARGV[4])
local current = math.floor(now / bucket)
local first = current - math.ceil(window / bucket) + 1
local KEEP_MS = 86400000  -- an idle breaker's hash goes away a day after its last write
local unpack = table.unpack or unpack

local function load(key)
  local raw = redis.call('HGETALL', key)
  local h = {}
  local stale = {}
  local wa, wf = 0, 0
  for i = 1, #raw, 2 do
    local name, value = raw[i], raw[i + 1]
    local prefix = string.sub(name, 1, 3)
    if prefix == 'wa:' or prefix == 'wf:' then
      if tonumber(string.sub(name, 4)) < first then
        stale[#stale + 1] = name
      elseif prefix == 'wa:' then
        wa = wa + tonumber(value)
      else
        wf = wf + tonumber(value)
      end
    else
      h[name] = value
    end
  end
  return h, wa, wf, stale
end

local function clear_window(key)
  local raw = redis.call('HKEYS', key)
  for _, name in ipairs(raw) do
    local prefix = string.sub(name, 1, 3)
    if prefix == 'wa:' or prefix == 'wf:' then redis.call('HDEL', key, name) end
  end
end

local function code(h)
  if h['s'] == 'o' then return 1 end
  if h['s'] == 'h' then return 2 end
  return 0
end

local function emit(out, h, wa, wf, allowed)
  out[#out + 1] = code(h)
  out[#out + 1] = tonumber(h['f'] or 0)
  out[#out + 1] = wf
  out[#out + 1] = wa
  out[#out + 1] = tonumber(h['oa'] or 0)
  out[#out + 1] = tonumber(h['pa'] or 0)
  out[#out + 1] = tonumber(h['lu'] or 0)
  out[#out + 1] = allowed
end

local out = {}

if op == 'read' then
  for i = 1, #KEYS do
    local h, wa, wf = load(KEYS[i])
    emit(out, h, wa, wf, code(h) == 0 and 1 or 0)
  end
  return out
end

if op == 'reset' then
  for i = 1, #KEYS do
    redis.call('DEL', KEYS[i])
    emit(out, {}, 0, 0, 1)
  end
  return out
end

if op == 'probe' then
  -- Exactly one caller, across every process, gets the probe of an open circuit whose
  -- cool-down is over (or whose last probe's lease ran out without an answer).
  local token = ARGV[5]
  for i = 1, #KEYS do
    local key = KEYS[i]
    local h, wa, wf = load(key)
    local state = code(h)
    local allowed = 0
    if state == 0 then
      allowed = 1
    elseif (state == 1 and now >= tonumber(h['pa'] or 0))
        or (state == 2 and now >= tonumber(h['lu'] or 0)) then
      h['s'] = 'h'
      h['pt'] = token
      h['lu'] = tostring(now + tonumber(ARGV[5 + i]))
      redis.call('HSET', key, 's', 'h', 'pt', token, 'lu', h['lu'])
      redis.call('PEXPIRE', key, KEEP_MS)
      allowed = 1
    end
    emit(out, h, wa, wf, allowed)
  end
  return out
end

if op == 'record' then
  local key = KEYS[1]
  local outcome = ARGV[5]
  local token = ARGV[6]
  local threshold = tonumber(ARGV[7])
  local cooldown = tonumber(ARGV[8])
  local min_attempts = tonumber(ARGV[9])
  local rate = tonumber(ARGV[10])
  local h, wa, wf, stale = load(key)
  local state = code(h)
  if #stale > 0 then redis.call('HDEL', key, unpack(stale)) end

  if state == 2 and token ~= '' and h['pt'] == token then
    -- The probe's answer decides.
    if outcome == 'ok' then
      redis.call('DEL', key)
      emit(out, {}, 0, 0, 0)
      return out
    end
    if outcome == 'fail' then
      h['f'] = tostring(tonumber(h['f'] or 0) + 1)
      h['oa'] = tostring(now)
      h['pa'] = tostring(now + cooldown)
      h['s'] = 'o'
      redis.call('HSET', key, 's', 'o', 'f', h['f'], 'oa', h['oa'], 'pa', h['pa'])
    else
      -- Released unanswered: the next caller may probe at once.
      h['s'] = 'o'
      redis.call('HSET', key, 's', 'o')
    end
    h['pt'] = nil
    h['lu'] = nil
    redis.call('HDEL', key, 'pt', 'lu')
    redis.call('PEXPIRE', key, KEEP_MS)
    emit(out, h, wa, wf, 0)
    return out
  end

  if state ~= 0 or outcome == 'release' then
    -- Open, or someone else's probe is out: answers of requests sent before the circuit
    -- opened change nothing.
    emit(out, h, wa, wf, 0)
    return out
  end

  local field = 'wa:' .. current
  redis.call('HINCRBY', key, field, 1)
  wa = wa + 1
  if outcome == 'ok' then
    h['f'] = '0'
    if wf == 0 then
      redis.call('DEL', key)
      emit(out, {}, 0, 0, 1)
      return out
    end
    redis.call('HSET', key, 'f', '0')
  else
    redis.call('HINCRBY', key, 'wf:' .. current, 1)
    wf = wf + 1
    h['f'] = tostring(redis.call('HINCRBY', key, 'f', 1))
    if tonumber(h['f']) >= threshold or (wa >= min_attempts and wf * 1000 >= rate * wa) then
      h['s'] = 'o'
      h['oa'] = tostring(now)
      h['pa'] = tostring(now + cooldown)
      redis.call('HSET', key, 's', 'o', 'oa', h['oa'], 'pa', h['pa'])
      clear_window(key)
      wa, wf = 0, 0
    end
  end
  redis.call('PEXPIRE', key, KEEP_MS)
  emit(out, h, wa, wf, code(h) == 0 and 1 or 0)
  return out
end

return redis.error_reply('unknown circuit op ' .. tostring(op))
