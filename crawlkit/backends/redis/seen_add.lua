-- Mark fingerprints seen in one atomic call (SADD's answer says which are new) and count them.
-- KEYS: none (built from P). ARGV: P, then (shard, signed fingerprint) pairs. Returns the
-- 1-based positions of the new ones.
local P = ARGV[1]
local new = {}
for i = 2, #ARGV, 2 do
  if redis.call('SADD', P .. 's:' .. ARGV[i], ARGV[i + 1]) == 1 then new[#new + 1] = i / 2 end
end
if #new > 0 then redis.call('INCRBY', P .. 'seen', #new) end
return new
