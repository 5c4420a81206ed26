-- Lease the next request of a host to a node; drops the host from `hosts` once its queue is empty.
-- KEYS: none (built from P). ARGV: P, node, host. Returns {lease id, pickled request}, or false
-- when the host's queue is empty.
local P, node, host = ARGV[1], ARGV[2], ARGV[3]
local q = P .. 'q:' .. host
local blob = redis.call('LPOP', q)
if redis.call('LLEN', q) == 0 then redis.call('SREM', P .. 'hosts', host) end
if not blob then return false end
local id = redis.call('INCR', P .. 'seq')
redis.call('HSET', P .. 'lease:' .. node, id, host .. '\n' .. blob)
redis.call('DECR', P .. 'queued')
redis.call('INCR', P .. 'inflight')
return {id, blob}
