-- Finish a node's leases. A lease already given back (the node was taken for dead) is skipped.
-- KEYS: none (built from P). ARGV: P, node, lease ids... Returns how many leases were finished.
local P, key = ARGV[1], ARGV[1] .. 'lease:' .. ARGV[2]
local n = 0
for i = 3, #ARGV do n = n + redis.call('HDEL', key, ARGV[i]) end
redis.call('DECRBY', P .. 'inflight', n)
return n
