-- Local functions the other scripts share; scripts.py puts this file before each of them.
-- Not run alone. split(v): "<host>\n<request>" -> host, request. now_ms()/now_us(): Redis' TIME.
-- enqueue(P, host, blob, front): onto the host's queue. give_back(P, node): a node's leases back
-- into the queues (front), returning how many. lease_next(P, node, host): the host's next request,
-- leased to the node ({lease id, pickled request}), or false when its queue is empty.
-- put_back(P, key, lease): a lease of the node's lease HASH `key` back at the front of its
-- queue, unfinished, returning 1 (0 if it is not there: given back already).
local function split(v)
  local a = string.find(v, '\n', 1, true)
  return string.sub(v, 1, a - 1), string.sub(v, a + 1)
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function enqueue(P, host, blob, front)
  if front then redis.call('LPUSH', P .. 'q:' .. host, blob) else redis.call('RPUSH', P .. 'q:' .. host, blob) end
  redis.call('SADD', P .. 'hosts', host)
end
local function give_back(P, node)
  local key = P .. 'lease:' .. node
  local all = redis.call('HGETALL', key)
  for i = 2, #all, 2 do
    local host, blob = split(all[i])
    enqueue(P, host, blob, true)
  end
  local n = #all / 2
  redis.call('DEL', key)
  redis.call('INCRBY', P .. 'queued', n)
  redis.call('DECRBY', P .. 'inflight', n)
  return n
end
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local function lease_next(P, node, host)
  local q = P .. 'q:' .. host
  local blob = redis.call('LPOP', q)
  if redis.call('LLEN', q) == 0 then redis.call('SREM', P .. 'hosts', host) end
  if not blob then return false end
  local id = redis.call('INCR', P .. 'seq')
  redis.call('HSET', P .. 'lease:' .. node, id, host .. '\n' .. blob)
  redis.call('DECR', P .. 'queued')
  redis.call('INCR', P .. 'inflight')
  return {id, blob}
end
local function put_back(P, key, lease)
  local v = redis.call('HGET', key, lease)
  if not v then return 0 end
  local host, blob = split(v)
  enqueue(P, host, blob, true)
  redis.call('HDEL', key, lease)
  return 1
end
