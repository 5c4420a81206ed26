-- Take a host's send turn (held from a fetch's send to its response headers), as limiter.Turn does.
-- KEYS: none (built from P). ARGV: P, host, token, lock ms, delay µs. Returns -1 if another fetch
-- has the turn, else the µs to wait before sending: `delay` after the previous response's headers.
if not redis.call('SET', ARGV[1] .. 'tl:' .. ARGV[2], ARGV[3], 'NX', 'PX', ARGV[4]) then return -1 end
local last = tonumber(redis.call('HGET', ARGV[1] .. 'turn', ARGV[2]) or '0')
return math.max(0, last + tonumber(ARGV[5]) - now_us())
