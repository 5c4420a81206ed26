-- Take one of a host's per-host slots, if its cap and its delay between starts allow it, and with
-- it (given a node) lease the host's next request: a start costs one round trip, not two.
-- KEYS: none (built from P). ARGV: P, host, member "<node>:<grant>", per_host, lease ms, default
-- delay ms[, node]. Returns {1, 0[, lease id, pickled request]} granted (no request: the queue is
-- empty or no node was given), {0, ms} wait that long, {0, -1} the cap is full.
local P, host, member = ARGV[1], ARGV[2], ARGV[3]
local key = P .. 'l:' .. host
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
local nxt = tonumber(redis.call('HGET', P .. 'next', host) or '0')
if nxt > now then return {0, nxt - now} end
if redis.call('ZCARD', key) >= tonumber(ARGV[4]) then return {0, -1} end
redis.call('ZADD', key, now + tonumber(ARGV[5]), member)
local delay = tonumber(redis.call('HGET', P .. 'delay', host) or ARGV[6])
if delay > 0 then redis.call('HSET', P .. 'next', host, now + delay) end
if ARGV[7] then
  local got = lease_next(P, ARGV[7], host)
  if got then return {1, 0, got[1], got[2]} end
end
return {1, 0}
