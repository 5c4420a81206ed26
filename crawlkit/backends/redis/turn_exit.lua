-- The headers arrived: note when, and release the host's send turn if this token holds it.
-- KEYS: none (built from P). ARGV: P, host, token. Returns 0.
redis.call('HSET', ARGV[1] .. 'turn', ARGV[2], string.format('%.0f', now_us()))
if redis.call('GET', ARGV[1] .. 'tl:' .. ARGV[2]) == ARGV[3] then redis.call('DEL', ARGV[1] .. 'tl:' .. ARGV[2]) end
return 0
