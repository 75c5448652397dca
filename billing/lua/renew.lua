-- Push a reservation's expiry later while its request is still running (a long stream):
-- only later, and only while the reservation is held (settled or swept ones stay gone).
-- KEYS: [1] reservation expiry zset; ARGV: [1] request_id, [2] new expiry (ms, absolute)
-- Returns 1 when the reservation is still held, 0 when it is gone.
local expiry = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not expiry then return 0 end
if tonumber(expiry) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
end
return 1
