-- Starts or extends the global backoff: ARGV = key, until_ms, ttl_ms. A shorter backoff (from an
-- instance whose own backoff has not grown yet) never cuts a longer one short; MemoryStore
-- keeps the later end the same way.
local current = tonumber(redis.call('GET', ARGV[1]) or '0') or 0
if tonumber(ARGV[2]) > current then redis.call('SET', ARGV[1], ARGV[2], 'PX', ARGV[3]) end
return 1
