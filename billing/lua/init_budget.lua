-- Seed a budget counter from the database ledger, unless another process already did.
-- KEYS: [1] budget hash; ARGV: [1] spent tokens, [2] spent cost, [3] expire at (unix s)
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'st', ARGV[1], 'sc', ARGV[2], 'rt', 0, 'rc', 0)
redis.call('EXPIREAT', KEYS[1], tonumber(ARGV[3]))
return 1
