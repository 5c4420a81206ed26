-- Put a node's leases back at the front of their hosts' queues, unfinished (to be fetched again).
-- KEYS: none (built from P). ARGV: P, node, lease ids... Returns how many were put back.
local P, key = ARGV[1], ARGV[1] .. 'lease:' .. ARGV[2]
local n = 0
for i = 3, #ARGV do
  local v = redis.call('HGET', key, ARGV[i])
  if v then
    local host, blob = split(v)
    enqueue(P, host, blob, true)
    redis.call('HDEL', key, ARGV[i])
    n = n + 1
  end
end
redis.call('INCRBY', P .. 'queued', n)
redis.call('DECRBY', P .. 'inflight', n)
return n
