-- Extend the lease of every slot this node still holds on the given hosts.
-- KEYS: none (built from P). ARGV: P, node prefix "<node>:", lease ms, hosts... Returns 0.
local P, mine, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local expiry = now_ms() + ttl
for i = 4, #ARGV do
  local key = P .. 'l:' .. ARGV[i]
  for _, m in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    if string.sub(m, 1, #mine) == mine then redis.call('ZADD', key, 'XX', expiry, m) end
  end
end
return 0
