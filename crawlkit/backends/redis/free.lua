-- Free per-host slots whose exchanges are over (the engine hears of them and frees them in batches).
-- KEYS: none (built from P). ARGV: P, then (host, member "<node>:<grant>") pairs. Returns how many.
local P = ARGV[1]
local n = 0
for i = 2, #ARGV, 2 do n = n + redis.call('ZREM', P .. 'l:' .. ARGV[i], ARGV[i + 1]) end
return n
