-- An instance's heartbeat (FailoverStore, STORE_FAILURE_MODE=local), and what the instance needs
-- to go on alone should Redis become unreachable: how many instances share the budgets, and the
-- use of every budget now (each instance then serves its share of what is left).
-- KEYS[1]: the generation key (routes the call in a Cluster; not read).
-- ARGV: prefix, member (the instance's id and state: FailoverStore), ttl_ms, snapshot start (''
--       for none, else the index in the key list where this slice of the snapshot starts),
--       action ('leave': the instance stops, its member is removed and nothing else is done),
--       the instance's previous member (removed when it differs; '' for none), slice size (keys).
-- A snapshot of a large pool is read in slices (each call holds Redis for a short time only).
-- Answer, one text: Redis's clock (ms), then the live members with the end of their life
-- ("member=until_ms", comma-separated); with a
-- snapshot, then `g <global backoff until>`, a line per key with state to carry (k, id,
-- disabled reason, disabled_at, unverified (1 or empty), open_until) and a line per (project,
-- model) budget in use (b, project, model, day, day_count, rest_until (0: none), rest_reason,
-- request times of the last minute by second (",sec:count,..."), token seconds of the last
-- minute (",sec:tokens,...")) of the slice's keys' projects, tab-separated, and last `c <start of
-- the next slice, or -1>`. The global backoff comes with the first slice only.
local P = ARGV[1]
local set = P .. 'instances'
if ARGV[5] == 'leave' then
  redis.call('ZREM', set, ARGV[2])
  return ''
end
local now = redis_now()
local ttl = tonumber(ARGV[3])
-- Members are scored with the end of their heartbeat's life: the ones past it are gone.
redis.call('ZREMRANGEBYSCORE', set, '-inf', int(now))
if ARGV[6] and ARGV[6] ~= '' and ARGV[6] ~= ARGV[2] then redis.call('ZREM', set, ARGV[6]) end
redis.call('ZADD', set, int(now + ttl), ARGV[2])
redis.call('PEXPIRE', set, int(ttl * 2))
local members = redis.call('ZRANGE', set, 0, -1, 'WITHSCORES')
local live = {}
for i = 1, #members, 2 do live[#live + 1] = members[i] .. '=' .. members[i + 1] end
local out = {int(now), table.concat(live, ',')}
if ARGV[4] == '' then return table.concat(out, '\n') end

local first, size = tonumber(ARGV[4]), tonumber(ARGV[7])
if first == 0 then out[#out + 1] = 'g\t' .. (redis.call('GET', P .. 'global_backoff') or '0') end
local function clean(s) return (string.gsub(s or '', '[\t\n\r]', ' ')) end
local projects, seen = {}, {}
local ids = redis.call('LRANGE', P .. 'keys', first, first + size - 1)
for _, id in ipairs(ids) do
  local f = redis.call('HMGET', P .. 'k:' .. id, 'project', 'disabled', 'disabled_at', 'unverified', 'open_until')
  if f[1] and not seen[f[1]] then
    seen[f[1]] = true
    projects[#projects + 1] = f[1]
  end
  local open_until = tonumber(f[5] or '0') or 0
  if (f[2] and f[2] ~= '') or f[4] == '1' or open_until > 0 then
    out[#out + 1] = 'k\t' .. id .. '\t' .. clean(f[2]) .. '\t' .. (f[3] or '') .. '\t' .. (f[4] or '') .. '\t' .. int(open_until)
  end
end
local now_sec = math.floor(now / 1000)
for _, project in ipairs(projects) do
  for _, model in ipairs(redis.call('SMEMBERS', P .. 'pm:' .. project)) do
    local pk = budget_key(P, project, model)
    local h = redis.call('HMGET', pk, 'day', 'day_count', 'rest_until', 'rest_reason')
    -- The log is newest first: seconds come out newest first too.
    local secs, counts = {}, {}
    for _, t in ipairs(redis.call('LRANGE', pk .. ':log', 0, -1)) do
      local tn = tonumber(t)
      if tn and tn > now - 60000 then
        local sec = math.floor(tn / 1000)
        if not counts[sec] then
          counts[sec] = 0
          secs[#secs + 1] = sec
        end
        counts[sec] = counts[sec] + 1
      end
    end
    local log = {}
    for _, sec in ipairs(secs) do log[#log + 1] = int(sec) .. ':' .. int(counts[sec]) end
    local tok = {}
    local t = redis.call('HGETALL', pk .. ':tok')
    for i = 1, #t, 2 do
      local n = tonumber(t[i + 1]) or 0
      if (tonumber(t[i]) or 0) > now_sec - 60 and n > 0 then tok[#tok + 1] = t[i] .. ':' .. t[i + 1] end
    end
    local rest = tonumber(h[3] or '0') or 0
    if rest <= now then rest = 0 end
    local count = tonumber(h[2] or '0') or 0
    if #log > 0 or #tok > 0 or count > 0 or rest > 0 then
      out[#out + 1] = 'b\t' .. project .. '\t' .. model .. '\t' .. (h[1] or '') .. '\t' .. int(count) .. '\t'
        .. int(rest) .. '\t' .. clean(h[4]) .. '\t' .. table.concat(log, ',') .. '\t' .. table.concat(tok, ',')
    end
  end
end
out[#out + 1] = 'c\t' .. (#ids == size and int(first + size) or '-1')
return table.concat(out, '\n')
