-- Settles a reservation with the upstream outcome. Mirrors MemoryStore.report.
-- Token corrections go through settle.lua (RedisStore batches them).
-- ARGV: prefix, id, project, model, kind, reason, until_ms, now_ms, probe (0/1),
--       failure_threshold, cooldown_ms, booked_at_ms, day (the reservation's request-log entry
--       and Pacific day, for 'unused'), rest_model (the model a quota named, when not `model`),
--       instance_clock (1: now_ms is the clock, as the tests' fake clocks need; else Redis's)
-- Times are Redis's clock: a rest lasts until_ms - now_ms from Redis's now, so an instance's
-- skewed clock shortens or stretches nothing.
local P, id, project, model = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local kind, reason = ARGV[5], ARGV[6]
local rnow = ARGV[15] == '1' and tonumber(ARGV[8]) or redis_now()
local until_ms = rnow + (tonumber(ARGV[7]) - tonumber(ARGV[8]))
local probe, threshold, cooldown = ARGV[9], tonumber(ARGV[10]), tonumber(ARGV[11])
local k = P .. 'k:' .. id
local pk = budget_key(P, project, model)

if kind == 'unused' then
  -- Never sent upstream: give back its request-log entry and its day count (tokens: settle.lua).
  redis.call('LREM', pk .. ':log', 1, ARGV[12])
  local d = redis.call('HMGET', pk, 'day', 'day_count')
  local day_count = tonumber(d[2] or '0') or 0
  if d[1] == ARGV[13] and day_count > 0 then day_count = redis.call('HINCRBY', pk, 'day_count', -1) end
  -- A budget left with nothing (a made-up model name Google refused, its only request given
  -- back) is forgotten, so such names do not pile up in the project's model set.
  local newest = tonumber(redis.call('LINDEX', pk .. ':log', 0) or '0') or 0
  local h = redis.call('HMGET', pk, 'rest_until', 'tok_sum')
  if day_count == 0 and newest <= rnow - 60000 and (tonumber(h[1] or '0') or 0) <= rnow
    and (tonumber(h[2] or '0') or 0) <= 0 then
    redis.call('DEL', pk, pk .. ':log', pk .. ':tok', pk .. ':secs')
    redis.call('SREM', P .. 'pm:' .. project, model)
  end
end

if redis.call('EXISTS', k) == 0 then return 0 end

local function note_error()
  redis.call('HSET', k, 'last_error', reason, 'last_error_at', rnow)
end
local function rest(m)
  local bk = budget_key(P, project, m)
  local cur = tonumber(redis.call('HGET', bk, 'rest_until') or '0') or 0
  if until_ms > cur then
    redis.call('HSET', bk, 'rest_until', int(until_ms), 'rest_reason', reason)
    redis.call('PEXPIRE', bk, '172800000')
    redis.call('SADD', P .. 'pm:' .. project, m)
  end
end

if kind == 'success' then
  redis.call('HSET', k, 'failures', 0, 'open_until', 0, 'probe_until', 0, 'unverified', '')
elseif kind == 'rest' then
  rest(model)
  if ARGV[14] ~= '' and ARGV[14] ~= model then rest(ARGV[14]) end
  redis.call('HSET', k, 'probe_until', 0)
  note_error()
elseif kind == 'disable' then
  redis.call('HSET', k, 'disabled', reason, 'disabled_at', rnow)
  note_error()
elseif kind == 'failure' then
  local failures = redis.call('HINCRBY', k, 'failures', 1)
  if probe == '1' or failures >= threshold then redis.call('HSET', k, 'open_until', int(rnow + cooldown)) end
  redis.call('HSET', k, 'probe_until', 0)
  note_error()
elseif kind == 'neutral' then
  redis.call('HSET', k, 'probe_until', 0)
  if reason ~= '' then note_error() end
elseif kind == 'unused' then
  redis.call('HSET', k, 'probe_until', 0)
end
return 1
