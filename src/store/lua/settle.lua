-- Applies a batch of token settlements: ARGV = prefix, then (project, slot, delta) triples.
-- A slot that already left the rolling minute is not brought back; the project's tok_sum
-- follows its slots.
local P = ARGV[1]
for i = 2, #ARGV, 3 do
  local pk = P .. 'p:' .. ARGV[i]
  local tok_key = pk .. ':tok'
  local slot = ARGV[i + 1]
  if redis.call('HEXISTS', tok_key, slot) == 1 then
    local delta = tonumber(ARGV[i + 2])
    local v = redis.call('HINCRBY', tok_key, slot, delta)
    if v < 0 then
      redis.call('HSET', tok_key, slot, 0)
      delta = delta - v
    end
    redis.call('HINCRBY', pk, 'tok_sum', delta)
  end
end
return 1
