-- Add a node's counter deltas to the crawl's totals.
-- KEYS: none (built from P). ARGV: P, then (counter, delta) pairs. Returns 0.
local P = ARGV[1]
for i = 2, #ARGV, 2 do redis.call('HINCRBY', P .. 'stats', ARGV[i], ARGV[i + 1]) end
return 0
