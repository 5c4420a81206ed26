-- Put a node's leases back at the front of their hosts' queues, unfinished (to be fetched again).
-- KEYS: none (built from P). ARGV: P, node, lease ids... Returns how many were put back.
local P, key = ARGV[1], ARGV[1] .. 'lease:' .. ARGV[2]
local n = 0
for i = 3, #ARGV do n = n + put_back(P, key, ARGV[i]) end
redis.call('INCRBY', P .. 'queued', n)
redis.call('DECRBY', P .. 'inflight', n)
return n
