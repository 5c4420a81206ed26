-- Queue requests, now or (retries) not before `delay` ms from now; counts them in `queued`.
-- KEYS: none (every key is built from the prefix P). ARGV: P, delay ms, then (host, front 0/1,
-- pickled request) triples. Returns how many were queued.
local P, delay = ARGV[1], tonumber(ARGV[2])
local due = 0
if delay > 0 then due = now_ms() + delay end
local n = 0
for i = 3, #ARGV, 3 do
  if delay > 0 then
    local id = redis.call('INCR', P .. 'seq')
    redis.call('ZADD', P .. 'delayed', due, id .. '\n' .. ARGV[i] .. '\n' .. ARGV[i + 2])
  else
    enqueue(P, ARGV[i], ARGV[i + 2], ARGV[i + 1] == '1')
  end
  n = n + 1
end
redis.call('INCRBY', P .. 'queued', n)
return n
