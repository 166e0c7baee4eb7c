-- Replaces the key registry (write_registry in lib.lua) and makes sure the store has a
-- generation: the id of this copy of the state, which an instance compares on every acquire to
-- notice that Redis lost its data. ARGV: prefix, unverified (0/1), new generation id, entries.
-- Returns the generation in force.
local P = ARGV[1]
write_registry(P, ARGV[4], ARGV[2])
redis.call('SET', P .. 'gen', ARGV[3], 'NX')
return redis.call('GET', P .. 'gen')
