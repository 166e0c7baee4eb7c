-- Round-robin choice of a key with budget and reservation of that budget, atomically.
-- Mirrors MemoryStore.acquire; test/contract runs one suite against both.
-- ARGV: prefix, now_ms, model, est_tokens, day, next_day_ms, probe_lease_ms, exclude (",id1,id2,")
-- Returns {1, id, project, token_slot, probe, failures} or {0, retry_at_ms (-1 = never), global_backoff}
local P = ARGV[1]
local now = tonumber(ARGV[2])
local model = ARGV[3]
local est = tonumber(ARGV[4])
local day = ARGV[5]
local next_day = tonumber(ARGV[6])
local probe_lease = tonumber(ARGV[7])
local exclude = ARGV[8]

local gb = tonumber(redis.call('GET', P .. 'global_backoff') or '0') or 0
if gb > now then return {0, gb, 1} end

-- Keys are read one at a time from the ring: a free key is usually the first one looked at.
local ring = P .. 'keys'
local n = redis.call('LLEN', ring)
if n == 0 then return {0, -1, 0} end
local start = redis.call('INCR', P .. 'rr') % n
local now_sec = math.floor(now / 1000)
local earliest = -1
local function consider(t)
  if earliest < 0 or t < earliest then earliest = t end
end

-- Sums the rolling minute's token slots (dropping expired ones); returns used, sorted slots.
local function tokens_used(tok_key)
  local raw = redis.call('HGETALL', tok_key)
  local used, slots = 0, {}
  for j = 1, #raw, 2 do
    local sec, t = tonumber(raw[j]), tonumber(raw[j + 1])
    if sec <= now_sec - 60 then
      redis.call('HDEL', tok_key, raw[j])
    else
      used = used + t
      slots[#slots + 1] = {sec, t}
    end
  end
  return used, slots
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
      if not skip then
        local rest_until = tonumber(redis.call('HGET', pk, 'rest_until') or '0') or 0
        if rest_until > now then consider(rest_until); skip = true end
      end
      local rpm, rpd, tpm = tonumber(f[4]), tonumber(f[5]), tonumber(f[6])
      local log_key = pk .. ':log'
      if not skip and redis.call('LLEN', log_key) >= rpm then
        -- newest first: index rpm-1 is the rpm-th most recent request
        local boundary = tonumber(redis.call('LINDEX', log_key, rpm - 1))
        if boundary > now - 60000 then consider(boundary + 60000); skip = true end
      end
      local day_key = pk .. ':d:' .. day
      if not skip and (tonumber(redis.call('GET', day_key) or '0') or 0) >= rpd then
        consider(next_day); skip = true
      end
      local tok_key = pk .. ':tok'
      if not skip then
        local used, slots = tokens_used(tok_key)
        if used > 0 and used + est > tpm then
          table.sort(slots, function(a, b) return a[1] < b[1] end)
          local remaining, at = used, (now_sec + 60) * 1000
          for _, s in ipairs(slots) do
            remaining = remaining - s[2]
            if remaining == 0 or remaining + est <= tpm then at = (s[1] + 60) * 1000; break end
          end
          consider(at); skip = true
        end
      end
      if not skip then
        redis.call('LPUSH', log_key, now)
        redis.call('LTRIM', log_key, 0, rpm - 1)
        redis.call('PEXPIRE', log_key, 60000)
        redis.call('INCR', day_key)
        redis.call('EXPIRE', day_key, 172800)
        redis.call('HINCRBY', tok_key, now_sec, est)
        redis.call('PEXPIRE', tok_key, 120000)
        if probe == 1 then redis.call('HSET', k, 'probe_until', now + probe_lease) end
        return {1, id, f[1], now_sec, probe, tonumber(f[10] or '0') or 0}
      end
    end
  end
end
return {0, earliest, 0}
