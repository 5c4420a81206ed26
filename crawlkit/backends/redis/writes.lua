-- The writes a node holds back for its next call (RedisCrawl.later), in one script: finish leases,
-- give leases back to the front of their queues, free per-host slots, add to the crawl's stats.
-- KEYS: none (built from P). ARGV: P, node, then four lists, each led by its length: lease ids
-- finished; lease ids given back; (host, member "<node>:<grant>") pairs of slots; (counter, delta)
-- pairs. A lease already given back (its node was taken for dead) is skipped. Returns 0.
local P, key = ARGV[1], ARGV[1] .. 'lease:' .. ARGV[2]
local at = 3
local function list()  -- the bounds of the next list in ARGV
  local first, last = at + 1, at + tonumber(ARGV[at])
  at = last + 1
  return first, last
end
local done, back = 0, 0
local first, last = list()
for i = first, last do done = done + redis.call('HDEL', key, ARGV[i]) end
first, last = list()
for i = first, last do back = back + put_back(P, key, ARGV[i]) end
first, last = list()
for i = first, last, 2 do redis.call('ZREM', P .. 'l:' .. ARGV[i], ARGV[i + 1]) end
first, last = list()
for i = first, last, 2 do redis.call('HINCRBY', P .. 'stats', ARGV[i], ARGV[i + 1]) end
if back > 0 then redis.call('INCRBY', P .. 'queued', back) end
if done + back > 0 then redis.call('DECRBY', P .. 'inflight', done + back) end
return 0
