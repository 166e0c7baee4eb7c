-- Round-robin choice of a key with budget and reservation of that budget, atomically, for a
-- batch of requests (RedisStore gathers acquires into batches: see RedisStore.acquire).
-- Mirrors MemoryStore.acquire; test/contract runs one suite against both.
-- ARGV: prefix, the generation the instance knows (registry.lua), then the requests: a line
--       each, its fields separated by tabs: now_ms ('' = Redis's clock, what production sends),
--       est_tokens, day, next_day_ms, probe_lease_ms, exclude (",id1,id2,"), pin ('' or
--       'p:<project>' or 'k:<key id>': only that project's keys, or that key), model (last: the
--       rest of the line). One argument for the batch costs both ends less than eight per request.
-- Returns one text: first line Redis's clock (ms; every window is measured on it), then a line
-- per request, in order, its fields separated by tabs (one string costs both ends less than
-- nested arrays): 1, id, project, token_slot, probe, failures, or 0, retry_at_ms (-1 = never),
-- global_backoff. When the generation is not the instance's (Redis lost its data, or another
-- instance already re-seeded it): only `R <generation in force or empty>`, and nothing is booked.
-- ARGV[4], when given: the batch's deadline on Redis's clock. A batch that Redis received but
-- runs only later (it was stopped or stalled), when its callers have already given up, books
-- nothing and answers only `X <Redis's clock>` (a caller that is still waiting hears it as a
-- timeout, and learns the clock).
local P = ARGV[1]
local gen = redis.call('GET', P .. 'gen')
if gen ~= ARGV[2] then return 'R\t' .. (gen or '') end
local redis_ms = redis_now()
if ARGV[4] and ARGV[4] ~= '' and redis_ms > tonumber(ARGV[4]) then return 'X\t' .. redis_ms end
-- Numbers cross into Redis as text: Lua's own number-to-text (%.14g) and text-to-number are a
-- large share of this script's time, so values Redis stores are passed on as the text they came
-- as, integers are written with %d, and fields that are absent or '0' are not parsed.
local function num(s)
  if not s or s == '' or s == '0' then return 0 end
  return tonumber(s) or 0
end
local FIELDS = '^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$'
local requests = {}
for line in string.gmatch(ARGV[3], '[^\n]+') do requests[#requests + 1] = {string.match(line, FIELDS)} end
local gb = num(redis.call('GET', P .. 'global_backoff'))
-- Keys are read one at a time from the ring (a hash: position -> the key's configuration, so
-- reading a position costs the same wherever it is): a free key is usually the first one looked
-- at. An entry is id, project, models (",m1,m2," or empty), enabled (0/1), rpm, rpd, tpm (every
-- model's budget), then the budgets of named models (",model=rpm:rpd:tpm,...," or empty),
-- tab-separated (syncKeys writes it; configuration keeps tabs out of ids, projects and models).
local ring = P .. 'ring'
local RING_FIELDS = '^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)$'
local n = redis.call('HLEN', ring)
-- The round-robin counter moves once per request that looks at the ring: one INCRBY for the
-- batch, and each such request takes the next value in order (as if each had done its own INCR).
local rr = 0
if n > 0 then
  local looking = #requests
  if gb > 0 then
    looking = 0
    for _, r in ipairs(requests) do
      if gb <= clock_now(r[1]) then looking = looking + 1 end
    end
  end
  if looking > 0 then rr = redis.call('INCRBY', P .. 'rr', looking) - looking end
end

-- Budget state: one hash per (project, model) (budget_key) with rest_until/rest_reason (report.lua), the day's
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

local function acquire(given_now, model, est_s, day, next_day_s, probe_lease_s, exclude, pin)
  local pin_project, pin_key = nil, nil
  if pin ~= '' then
    if string.sub(pin, 1, 2) == 'p:' then pin_project = string.sub(pin, 3) else pin_key = string.sub(pin, 3) end
  end
  local now = given_now == '' and redis_ms or tonumber(given_now)
  local now_s = int(now)
  local est = tonumber(est_s)
  if gb > now then return '0\t' .. int(gb) .. '\t1' end
  if n == 0 then return '0\t-1\t0' end
  rr = rr + 1
  local start = rr % n
  local now_sec = math.floor(now / 1000)
  -- The earliest time a skipped key frees up (-1: none), for the refusal's retry time.
  local earliest = -1
  local function consider(t)
    if earliest < 0 or t < earliest then earliest = t end
  end

  for i = 0, n - 1 do
    -- The ring entry holds the key's configuration; its hash holds what reports change.
    local id, project, models, enabled, rpm_s, rpd_s, tpm_s, named = string.match(redis.call('HGET', ring, int((start + i) % n)), RING_FIELDS)
    if enabled == '1' and (exclude == '' or not string.find(exclude, ',' .. id .. ',', 1, true))
      and (pin == '' or (pin_project and project == pin_project) or (pin_key and id == pin_key))
      and (model == '' or models == '' or string.find(models, ',' .. model .. ',', 1, true)) then
      local k = P .. 'k:' .. id
      local f = redis.call('HMGET', k, 'disabled', 'open_until', 'probe_until', 'failures', 'unverified')
      if f[1] == false or f[1] == '' then
        local skip = false
        local probe = 0
        local open_until = num(f[2])
        if open_until > now then
          consider(open_until); skip = true
        elseif open_until > 0 or f[5] == '1' then
          -- Half-open, or not verified yet: one request at a time.
          local probe_until = num(f[3])
          if probe_until > now then consider(probe_until); skip = true else probe = 1 end
        end
        -- The model's own budget when the key names it, else the key's budget for every model.
        if named ~= '' and model ~= '' then
          local at = string.find(named, ',' .. model .. '=', 1, true)
          if at then rpm_s, rpd_s, tpm_s = string.match(named, '^(%d+):(%d+):(%d+)', at + #model + 2) end
        end
        local pk = budget_key(P, project, model)
        local ps
        if not skip then
          ps = redis.call('HMGET', pk, 'rest_until', 'tok_sum', 'tok_last', 'day', 'day_count')
          local rest_until = num(ps[1])
          if rest_until > now then consider(rest_until); skip = true end
        end
        local rpm = tonumber(rpm_s)
        local log_key, tok_key, secs_key = pk .. ':log', pk .. ':tok', pk .. ':secs'
        -- Seconds are booked in order; housekeeping (dropping what left the rolling minute,
        -- refreshing expiries) runs on the project's first acquire of a second, not on every one.
        local last, new_second, pushed = -1, false, false
        if not skip then
          last = ps[3] and tonumber(ps[3]) or -1
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
          if redis.call('LPUSH', log_key, now_s) > rpm then
            local boundary = tonumber(redis.call('LINDEX', log_key, rpm))
            if boundary > now - 60000 then consider(boundary + 60000); skip = true end
          end
        end
        -- The day counted is the newest one seen: an instance whose clock is still before
        -- midnight counts into the new day instead of restarting the old one.
        local count_day, day_count = day, 0
        if not skip then
          if ps[4] and ps[4] > day then count_day = ps[4] end
          if ps[4] == count_day then day_count = num(ps[5]) end
          if day_count >= tonumber(rpd_s) then consider(tonumber(next_day_s)); skip = true end
        end
        local used = 0
        if not skip then
          local sum = num(ps[2])
          used = tokens_used(tok_key, secs_key, sum, new_second, now_sec)
          if used > 0 and used + est > tonumber(tpm_s) then
            consider(tokens_free_at(tok_key, secs_key, used, tonumber(tpm_s), est, now_sec)); skip = true
          end
          if skip and used ~= sum then redis.call('HSET', pk, 'tok_sum', int(used)) end
        end
        if skip and pushed then redis.call('LPOP', log_key) end
        if not skip then
          -- An instance whose clock lags books into the newest slot.
          local slot_s = ps[3]
          if new_second then
            slot_s = int(now_sec)
            redis.call('RPUSH', secs_key, slot_s)
          end
          redis.call('HINCRBY', tok_key, slot_s, est_s)
          redis.call('HSET', pk, 'tok_sum', int(used + est), 'tok_last', slot_s, 'day', count_day, 'day_count', int(day_count + 1))
          if new_second then
            redis.call('LTRIM', log_key, '0', int(rpm - 1))
            -- The log gets 61 s, so that an entry booked later in this second outlives its minute.
            redis.call('PEXPIRE', log_key, '61000')
            redis.call('PEXPIRE', tok_key, '120000')
            redis.call('PEXPIRE', secs_key, '120000')
            -- The project hash holds the day's count and may hold a rest until the next day.
            redis.call('PEXPIRE', pk, '172800000')
            -- The project's models with a budget in use, for the admin views (budgetStates).
            redis.call('SADD', P .. 'pm:' .. project, model)
            redis.call('PEXPIRE', P .. 'pm:' .. project, '172800000')
          end
          if probe == 1 then redis.call('HSET', k, 'probe_until', int(now + tonumber(probe_lease_s))) end
          return '1\t' .. id .. '\t' .. project .. '\t' .. slot_s .. '\t' .. probe .. '\t' .. (f[4] or '0')
        end
      end
    end
  end
  return '0\t' .. int(earliest) .. '\t0'
end

local results = {int(redis_ms)}
for _, r in ipairs(requests) do
  results[#results + 1] = acquire(r[1], r[8], r[2], r[3], r[4], r[5], r[6], r[7])
end
return table.concat(results, '\n')
