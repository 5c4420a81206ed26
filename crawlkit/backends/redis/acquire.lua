-- Take one of a host's per-host slots, if its cap and its delay between starts allow it, and with
-- it (given a node) lease the host's next request: a start costs one round trip, not two. Asked
-- for more, it leases up to `want` requests, each with a slot of its own, while the cap allows
-- (one only if the host has a delay between starts).
-- KEYS: none (built from P). ARGV: P, host, node, first grant, the host's per_host, lease ms, its
-- delay ms, want (0: the slot alone). The cap adaptive politeness set (`P cap`) lowers the cap, a
-- delay it or a Crawl-delay set (`P delay`) replaces the delay. Slot members are "<node>:<grant>",
-- grants counting up from the first. Returns {1, 0, lease id, pickled request, ...}: granted,
-- with what it leased (nothing: the queue is empty, or want was 0; the first slot is held all
-- the same); {0, ms}: wait that long; {0, -1}: the cap is full.
local P, host, node, first = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local cap, want = tonumber(ARGV[5]), tonumber(ARGV[8])
cap = math.min(cap, tonumber(redis.call('HGET', P .. 'cap', host) or cap))
local key = P .. 'l:' .. host
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
local nxt = tonumber(redis.call('HGET', P .. 'next', host) or '0')
if nxt > now then return {0, nxt - now} end
if redis.call('ZCARD', key) >= cap then return {0, -1} end
local expiry = now + tonumber(ARGV[6])
redis.call('ZADD', key, expiry, node .. ':' .. first)
local delay = tonumber(redis.call('HGET', P .. 'delay', host) or ARGV[7])
if delay > 0 then
  redis.call('HSET', P .. 'next', host, now + delay)
  want = math.min(want, 1)
end
local out = {1, 0}
for i = 0, want - 1 do
  if i > 0 then
    if redis.call('ZCARD', key) >= cap then break end
    redis.call('ZADD', key, expiry, node .. ':' .. (first + i))
  end
  local got = lease_next(P, node, host)
  if not got then
    if i > 0 then redis.call('ZREM', key, node .. ':' .. (first + i)) end
    break
  end
  out[#out + 1] = got[1]
  out[#out + 1] = got[2]
end
return out
