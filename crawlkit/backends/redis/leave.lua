-- A node leaves the crawl: its leases go back into the queues and it is no longer a node.
-- KEYS: none (built from P). ARGV: P, node. Returns how many leases were given back.
local n = give_back(ARGV[1], ARGV[2])
redis.call('ZREM', ARGV[1] .. 'nodes', ARGV[2])
return n
