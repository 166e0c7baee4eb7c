-- Round-robin choice of a key with budget and reservation of that budget, atomically, for a
-- batch of requests (RedisStore sends every acquire of one event-loop turn in one call).
-- Mirrors MemoryStore.acquire; test/contract runs one suite against both.
-- ARGV: prefix, then per request: now_ms, model, est_tokens, day, next_day_ms, probe_lease_ms,
--       exclude (",id1,id2,")
-- Returns one result per request, in order: {1, id, project, token_slot, probe, failures} or
-- {0, retry_at_ms (-1 = never), global_backoff}
local P = ARGV[1]
local gb = tonumber(redis.call('GET', P .. 'global_backoff') or '0') or 0
-- Keys are read one at a time from the ring: a free key is usually the first one looked at.
local ring = P .. 'keys'
local n = redis.call('LLEN', ring)
-- The round-robin counter moves once per request that looks at the ring: one INCRBY for the
-- batch, and each such request takes the next value in order (as if each had done its own INCR).
local rr = 0
if n > 0 then
  local looking = 0
  for i = 2, #ARGV, 7 do
    if gb <= tonumber(ARGV[i]) then looking = looking + 1 end
  end
  if looking > 0 then rr = redis.call('INCRBY', P .. 'rr', looking) - looking end
end

-- Project state: one hash `p:<project>` with rest_until/rest_reason (report.lua), the day's
-- request count (day, day_count) and the token slots' sum and newest second (tok_sum, tok_last):
-- read in one call and written back in one call when a request is admitted.
-- Token slots: hash `tok` (second -> tokens) and list `secs` (its seconds, oldest first). Slots
-- that left the rolling minute are dropped from the head: O(1) amortized. A slot can only leave
-- the minute when the clock enters a new second, so `trim` is set on the project's first acquire
-- of each second only. Returns the sum of the slots still in the minute.
local function tokens_used(tok_key, secs_key, sum, trim, now_sec)
  if trim then
    local head = redis.call('LINDEX', secs_key, 0)
    -- No slot listed (a project quiet long enough for its lists to expire): nothing is in use.
    if not head then return 0 end
    while head and tonumber(head) <= now_sec - 60 do
      sum = sum - (tonumber(redis.call('HGET', tok_key, head) or '0') or 0)
      redis.call('HDEL', tok_key, head)
      redis.call('LPOP', secs_key)
      head = redis.call('LINDEX', secs_key, 0)
    end
  end
  if sum < 0 then return 0 end
  return sum
end

-- When enough tokens leave the window for `est` more (refusal path only).
local function tokens_free_at(tok_key, secs_key, used, limit, est, now_sec)
  local secs = redis.call('LRANGE', secs_key, 0, -1)
  local remaining = used
  for _, sec in ipairs(secs) do
    remaining = remaining - (tonumber(redis.call('HGET', tok_key, sec) or '0') or 0)
    if remaining <= 0 or remaining + est <= limit then return (tonumber(sec) + 60) * 1000 end
  end
  return (now_sec + 60) * 1000
end

local function acquire(now, model, est, day, next_day, probe_lease, exclude)
  if gb > now then return {0, gb, 1} end
  if n == 0 then return {0, -1, 0} end
  rr = rr + 1
  local start = rr % n
  local now_sec = math.floor(now / 1000)
  local earliest = -1
  local function consider(t)
    if earliest < 0 or t < earliest then earliest = t end
  end

  for i = 0, n - 1 do
    local id = redis.call('LINDEX', ring, (start + i) % n)
    if not string.find(exclude, ',' .. id .. ',', 1, true) then
      local k = P .. 'k:' .. id
      local f = redis.call('HMGET', k, 'project', 'models', 'enabled', 'rpm', 'rpd', 'tpm', 'disabled', 'open_until', 'probe_until', 'failures')
      local models = f[2] or ''
      if f[3] == '1' and (f[7] == false or f[7] == '') and (model == '' or models == '' or string.find(models, ',' .. model .. ',', 1, true))
        then
        local skip = false
        local probe = 0
        local open_until = tonumber(f[8] or '0') or 0
        if open_until > now then
          consider(open_until); skip = true
        elseif open_until > 0 then
          local probe_until = tonumber(f[9] or '0') or 0
          if probe_until > now then consider(probe_until); skip = true else probe = 1 end
        end
        local pk = P .. 'p:' .. f[1]
        local ps
        if not skip then
          ps = redis.call('HMGET', pk, 'rest_until', 'tok_sum', 'tok_last', 'day', 'day_count')
          local rest_until = tonumber(ps[1] or '0') or 0
          if rest_until > now then consider(rest_until); skip = true end
        end
        local rpm, rpd, tpm = tonumber(f[4]), tonumber(f[5]), tonumber(f[6])
        local log_key, tok_key, secs_key = pk .. ':log', pk .. ':tok', pk .. ':secs'
        -- Seconds are booked in order; housekeeping (dropping what left the rolling minute,
        -- refreshing expiries) runs on the project's first acquire of a second, not on every one.
        local last, new_second, pushed = -1, false, false
        if not skip then
          last = tonumber(ps[3] or '-1') or -1
          new_second = last < now_sec
          -- The request log is newest first. Older entries at the tail are dropped once a
          -- second, so the list stays near one minute's worth.
          if new_second then
            local oldest = redis.call('LINDEX', log_key, -1)
            while oldest and tonumber(oldest) <= now - 60000 do
              redis.call('RPOP', log_key)
              oldest = redis.call('LINDEX', log_key, -1)
            end
          end
          -- Booked first, taken back if the key turns out full: one call when it has room. With
          -- this request at index 0, index rpm holds the rpm-th most recent request before it,
          -- and the key is full while that one is inside the minute.
          pushed = true
          if redis.call('LPUSH', log_key, now) > rpm then
            local boundary = tonumber(redis.call('LINDEX', log_key, rpm))
            if boundary > now - 60000 then consider(boundary + 60000); skip = true end
          end
        end
        -- The day counted is the newest one seen: an instance whose clock is still before
        -- midnight counts into the new day instead of restarting the old one.
        local count_day, day_count = day, 0
        if not skip then
          if ps[4] and ps[4] > day then count_day = ps[4] end
          if ps[4] == count_day then day_count = tonumber(ps[5] or '0') or 0 end
          if day_count >= rpd then consider(next_day); skip = true end
        end
        local used = 0
        if not skip then
          local sum = tonumber(ps[2] or '0') or 0
          used = tokens_used(tok_key, secs_key, sum, new_second, now_sec)
          if used > 0 and used + est > tpm then
            consider(tokens_free_at(tok_key, secs_key, used, tpm, est, now_sec)); skip = true
          end
          if skip and used ~= sum then redis.call('HSET', pk, 'tok_sum', used) end
        end
        if skip and pushed then redis.call('LPOP', log_key) end
        if not skip then
          -- An instance whose clock lags books into the newest slot.
          local slot = last
          if new_second then
            slot = now_sec
            redis.call('RPUSH', secs_key, slot)
          end
          redis.call('HINCRBY', tok_key, slot, est)
          redis.call('HSET', pk, 'tok_sum', used + est, 'tok_last', slot, 'day', count_day, 'day_count', day_count + 1)
          if new_second then
            redis.call('LTRIM', log_key, 0, rpm - 1)
            -- The log gets 61 s, so that an entry booked later in this second outlives its minute.
            redis.call('PEXPIRE', log_key, 61000)
            redis.call('PEXPIRE', tok_key, 120000)
            redis.call('PEXPIRE', secs_key, 120000)
            -- The project hash holds the day's count and may hold a rest until the next day.
            redis.call('PEXPIRE', pk, 172800000)
          end
          if probe == 1 then redis.call('HSET', k, 'probe_until', now + probe_lease) end
          return {1, id, f[1], slot, probe, tonumber(f[10] or '0') or 0}
        end
      end
    end
  end
  return {0, earliest, 0}
end

local results = {}
for i = 2, #ARGV, 7 do
  results[#results + 1] = acquire(tonumber(ARGV[i]), ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3],
    tonumber(ARGV[i + 4]), tonumber(ARGV[i + 5]), ARGV[i + 6])
end
return results
