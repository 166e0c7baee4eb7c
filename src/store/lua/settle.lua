-- Applies a batch of token settlements: ARGV = prefix, then (project, model, slot, delta)
-- quadruples. A slot that already left the rolling minute is not brought back; the budget's
-- tok_sum follows its slots.
local P = ARGV[1]
for i = 2, #ARGV, 4 do
  local pk = budget_key(P, ARGV[i], ARGV[i + 1])
  local tok_key = pk .. ':tok'
  local slot = ARGV[i + 2]
  if redis.call('HEXISTS', tok_key, slot) == 1 then
    local delta = tonumber(ARGV[i + 3])
    local v = redis.call('HINCRBY', tok_key, slot, delta)
    if v < 0 then
      redis.call('HSET', tok_key, slot, 0)
      delta = delta - v
    end
    redis.call('HINCRBY', pk, 'tok_sum', delta)
  end
end
return 1
