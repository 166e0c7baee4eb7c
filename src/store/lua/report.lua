-- Settles a reservation with the upstream outcome. Mirrors MemoryStore.report.
-- Token corrections go through settle.lua (RedisStore batches them).
-- ARGV: prefix, id, project, kind, reason, until_ms, now_ms, probe (0/1), failure_threshold, cooldown_ms,
--       booked_at_ms, day (the reservation's request-log entry and Pacific day, for 'unused')
local P, id, project = ARGV[1], ARGV[2], ARGV[3]
local kind, reason = ARGV[4], ARGV[5]
local until_ms, now = tonumber(ARGV[6]), tonumber(ARGV[7])
local probe, threshold, cooldown = ARGV[8], tonumber(ARGV[9]), tonumber(ARGV[10])
local k = P .. 'k:' .. id
local pk = P .. 'p:' .. project

if kind == 'unused' then
  -- Never sent upstream: give back its request-log entry and its day count (tokens: settle.lua).
  redis.call('LREM', pk .. ':log', 1, ARGV[11])
  local d = redis.call('HMGET', pk, 'day', 'day_count')
  if d[1] == ARGV[12] and (tonumber(d[2] or '0') or 0) > 0 then redis.call('HINCRBY', pk, 'day_count', -1) end
end

if redis.call('EXISTS', k) == 0 then return 0 end

local function note_error()
  redis.call('HSET', k, 'last_error', reason, 'last_error_at', now)
end

if kind == 'success' then
  redis.call('HSET', k, 'failures', 0, 'open_until', 0, 'probe_until', 0)
elseif kind == 'rest' then
  local cur = tonumber(redis.call('HGET', pk, 'rest_until') or '0') or 0
  if until_ms > cur then redis.call('HSET', pk, 'rest_until', until_ms, 'rest_reason', reason) end
  redis.call('HSET', k, 'probe_until', 0)
  note_error()
elseif kind == 'disable' then
  redis.call('HSET', k, 'disabled', reason, 'disabled_at', now)
  note_error()
elseif kind == 'failure' then
  local failures = redis.call('HINCRBY', k, 'failures', 1)
  if probe == '1' or failures >= threshold then redis.call('HSET', k, 'open_until', now + cooldown) end
  redis.call('HSET', k, 'probe_until', 0)
  note_error()
elseif kind == 'neutral' then
  redis.call('HSET', k, 'probe_until', 0)
  if reason ~= '' then note_error() end
elseif kind == 'unused' then
  redis.call('HSET', k, 'probe_until', 0)
end
return 1
