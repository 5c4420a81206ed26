-- Queue requests, now or (retries) not before `delay` ms from now; counts them in `queued`.
-- A request given with a fingerprint is marked seen here and queued only if it was not seen
-- before (another node may have queued it since this one asked seen_check.lua): marking and
-- queueing are one atomic step, so a node's death cannot leave a URL seen but never queued.
-- KEYS: none (every key is built from the prefix P). ARGV: P, delay ms, then (host, front 0/1,
-- shard or "" for no fingerprint, signed fingerprint or "", pickled request) quintuples.
-- Returns how many were queued.
local P, delay = ARGV[1], tonumber(ARGV[2])
local due = 0
if delay > 0 then due = now_ms() + delay end
local n, seen = 0, 0
for i = 3, #ARGV, 5 do
  local new = true
  if ARGV[i + 2] ~= '' then
    new = redis.call('SADD', P .. 's:' .. ARGV[i + 2], ARGV[i + 3]) == 1
    if new then seen = seen + 1 end
  end
  if new then
    if delay > 0 then
      local id = redis.call('INCR', P .. 'seq')
      redis.call('ZADD', P .. 'delayed', due, id .. '\n' .. ARGV[i] .. '\n' .. ARGV[i + 4])
    else
      enqueue(P, ARGV[i], ARGV[i + 4], ARGV[i + 1] == '1')
    end
    n = n + 1
  end
end
redis.call('INCRBY', P .. 'queued', n)
if seen > 0 then redis.call('INCRBY', P .. 'seen', seen) end
return n
