-- Shared by the store's scripts (prepended to each by RedisStore): Redis's own clock and the
-- key layout. Windows compare times from one clock, Redis's, whichever instance's request it is.
local function redis_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- The time an instance gave ('' = none: Redis's clock). Only tests give one (RedisStore's
-- instanceClock), to drive the windows with a fake clock.
local function clock_now(given)
  if given == nil or given == '' then return redis_now() end
  return tonumber(given)
end
local function int(x) return string.format('%d', x) end
-- A (project, model) budget's hash; its request log, token slots and seconds hang off it.
-- Projects and models hold no tabs (config/keys.ts).
local function budget_key(P, project, model) return P .. 'p:' .. project .. '\t' .. model end

-- Writes the key registry: the list of ids, the acquire ring (position -> configuration, see
-- acquire.lua) and each key's hash (project, enabled; what reports change stays). Keys new to
-- the store start unverified when asked (one request at a time until verified). `entries`:
-- one ring entry per line, in ring order.
local function write_registry(P, entries, unverified)
  local previous = redis.call('LRANGE', P .. 'keys', 0, -1)
  local ids, keep = {}, {}
  local ring = {}
  local pos = 0
  for entry in string.gmatch(entries, '[^\n]+') do
    local id, project, _, enabled = string.match(entry, '^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t')
    ids[#ids + 1] = id
    keep[id] = true
    ring[#ring + 1] = int(pos)
    ring[#ring + 1] = entry
    pos = pos + 1
    local k = P .. 'k:' .. id
    if unverified == '1' and redis.call('EXISTS', k) == 0 then redis.call('HSET', k, 'unverified', '1') end
    redis.call('HSET', k, 'project', project, 'enabled', enabled)
  end
  for _, old in ipairs(previous) do
    if not keep[old] then redis.call('DEL', P .. 'k:' .. old) end
  end
  redis.call('DEL', P .. 'keys', P .. 'ring')
  -- In slices: unpack's arguments must fit Lua's C stack (about 8,000).
  for i = 1, #ids, 1000 do redis.call('RPUSH', P .. 'keys', unpack(ids, i, math.min(i + 999, #ids))) end
  for i = 1, #ring, 1000 do redis.call('HSET', P .. 'ring', unpack(ring, i, math.min(i + 999, #ring))) end
end
