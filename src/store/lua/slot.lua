-- Concurrency slots with leases (RedisStore.acquireSlot and renewSlot): one sorted set per
-- scope, holder -> end of its lease on Redis's clock. Holders whose lease ran out (their
-- instance crashed or lost Redis) are dropped before counting.
-- ARGV: key, holder, limit ('' = none: a renewal), ttl_ms, instance clock ('' = Redis's).
-- Answers '1 <held>' (the holder has a slot) or '0 <held>' (all `limit` slots are taken).
local key, holder, limit, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local now = clock_now(ARGV[5])
redis.call('ZREMRANGEBYSCORE', key, '-inf', int(now))
if limit ~= '' and not redis.call('ZSCORE', key, holder) then
  local held = redis.call('ZCARD', key)
  if held >= tonumber(limit) then return '0 ' .. int(held) end
end
redis.call('ZADD', key, int(now + ttl), holder)
-- Every lease of a scope lasts ttl_ms: the newest one ends last, and the set with it.
redis.call('PEXPIRE', key, int(ttl))
return '1 ' .. int(redis.call('ZCARD', key))
