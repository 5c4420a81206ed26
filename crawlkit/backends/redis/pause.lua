-- No start for a host before `ms` from now (e.g. a Retry-After); never brings a start forward.
-- KEYS: none (built from P). ARGV: P, host, ms. Returns 0.
local resume = now_ms() + tonumber(ARGV[3])
local nxt = tonumber(redis.call('HGET', ARGV[1] .. 'next', ARGV[2]) or '0')
if resume > nxt then redis.call('HSET', ARGV[1] .. 'next', ARGV[2], resume) end
return 0
