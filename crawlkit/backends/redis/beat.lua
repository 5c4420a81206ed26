-- A node's heartbeat: keeps it alive for `lease ms` and gives back the leases of dead nodes.
-- KEYS: none (built from P). ARGV: P, node, lease ms. Returns how many leases were given back.
local P, node, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local now = now_ms()
local dead = redis.call('ZRANGEBYSCORE', P .. 'nodes', '-inf', now)
local n = 0
for _, other in ipairs(dead) do
  if other ~= node then n = n + give_back(P, other) end
  redis.call('ZREM', P .. 'nodes', other)
end
redis.call('ZADD', P .. 'nodes', now + ttl, node)
return n
