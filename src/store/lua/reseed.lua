-- Heals a store that lost its data (restarted empty, flushed, failed over to a stale replica).
-- Every instance keeps a journal of what it sent in the last minute and today (store/journal.ts);
-- each one that finds the generation changed adds its journal to the new copy once, so no
-- (project, model) budget forgets what was spent before the loss.
-- ARGV: prefix, the instance's generation, a new generation id (used when none is in force),
--       unverified (0/1, for the registry), ring entries (registry.lua), journal, the instance's now_ms.
-- Journal lines: b, project, model, day, day_count, rest_until_ms (instance clock, 0 = none),
--       rest_reason, log (",ms,ms" Redis clock), tokens (",sec:n,..."), tab-separated; or d, key id, reason.
-- Returns the generation in force.
local P = ARGV[1]
local cur = redis.call('GET', P .. 'gen')
if cur == ARGV[2] then return cur end
if not cur then
  write_registry(P, ARGV[5], ARGV[4])
  cur = ARGV[3]
  redis.call('SET', P .. 'gen', cur)
end
local rnow = redis_now()
local skew = rnow - tonumber(ARGV[7])
local BUDGET = '^b\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)$'

local function desc(a, b) return tonumber(a) > tonumber(b) end
local function asc(a, b) return tonumber(a) < tonumber(b) end
local function rewrite_list(key, items)
  redis.call('DEL', key)
  for i = 1, #items, 1000 do redis.call('RPUSH', key, unpack(items, i, math.min(i + 999, #items))) end
end

for line in string.gmatch(ARGV[6], '[^\n]+') do
  if string.sub(line, 1, 2) == 'b\t' then
    local project, model, day, count, rest_until, rest_reason, log, toks = string.match(line, BUDGET)
    local pk = budget_key(P, project, model)
    local d = redis.call('HGET', pk, 'day')
    if not d or d < day then
      redis.call('HSET', pk, 'day', day, 'day_count', count)
    elseif d == day then
      redis.call('HINCRBY', pk, 'day_count', count)
    end
    local ru = tonumber(rest_until)
    if ru > 0 then
      local u = ru + skew
      local cur_rest = tonumber(redis.call('HGET', pk, 'rest_until') or '0') or 0
      if u > cur_rest then redis.call('HSET', pk, 'rest_until', int(u), 'rest_reason', rest_reason) end
    end
    if log ~= '' then
      -- The log is newest first (acquire.lua reads its rpm-th entry): merged and sorted again.
      local entries = redis.call('LRANGE', pk .. ':log', 0, -1)
      for t in string.gmatch(log, '[^,]+') do entries[#entries + 1] = t end
      table.sort(entries, desc)
      rewrite_list(pk .. ':log', entries)
      redis.call('PEXPIRE', pk .. ':log', '61000')
    end
    if toks ~= '' then
      local tok_key, secs_key = pk .. ':tok', pk .. ':secs'
      for sec, n in string.gmatch(toks, '(%d+):(%d+)') do redis.call('HINCRBY', tok_key, sec, n) end
      local secs = redis.call('HKEYS', tok_key)
      table.sort(secs, asc)
      rewrite_list(secs_key, secs)
      local sum = 0
      for _, v in ipairs(redis.call('HVALS', tok_key)) do sum = sum + tonumber(v) end
      redis.call('HSET', pk, 'tok_sum', int(sum), 'tok_last', secs[#secs])
      redis.call('PEXPIRE', tok_key, '120000')
      redis.call('PEXPIRE', secs_key, '120000')
    end
    redis.call('PEXPIRE', pk, '172800000')
    redis.call('SADD', P .. 'pm:' .. project, model)
    redis.call('PEXPIRE', P .. 'pm:' .. project, '172800000')
  elseif string.sub(line, 1, 2) == 'd\t' then
    local id, reason = string.match(line, '^d\t([^\t]*)\t(.*)$')
    local k = P .. 'k:' .. id
    if redis.call('EXISTS', k) == 1 then redis.call('HSET', k, 'disabled', reason, 'disabled_at', rnow) end
  end
end
return cur
