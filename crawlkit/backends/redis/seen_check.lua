-- Which fingerprints are not seen yet, marking none: a node's admission asks this, and the push
-- that queues the new ones marks them (push.lua), so no node can die between marking a URL seen
-- and queueing it. KEYS: none (built from P). ARGV: P, then (shard, signed fingerprint) pairs.
-- Returns the 1-based positions of those not seen.
local P = ARGV[1]
local new = {}
for i = 2, #ARGV, 2 do
  if redis.call('SISMEMBER', P .. 's:' .. ARGV[i], ARGV[i + 1]) == 0 then new[#new + 1] = i / 2 end
end
return new
