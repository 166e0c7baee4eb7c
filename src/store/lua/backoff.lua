-- Starts or extends the global backoff: ARGV = key, until_ms, ttl_ms, instance_clock (1: end at
-- until_ms, as the tests' fake clocks need; else ttl_ms after Redis's now: clocks may differ). A shorter backoff (from an instance whose own
-- backoff has not grown yet) never cuts a longer one short; MemoryStore keeps the later end the same way.
local ends = ARGV[4] == '1' and tonumber(ARGV[2]) or redis_now() + tonumber(ARGV[3])
local current = tonumber(redis.call('GET', ARGV[1]) or '0') or 0
if ends > current then redis.call('SET', ARGV[1], int(ends), 'PX', ARGV[3]) end
return 1
