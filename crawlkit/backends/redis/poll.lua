-- Move due delayed requests into their queues and report the crawl's state.
-- KEYS: none (built from P). ARGV: P, sample size. Returns {queued, inflight, ms until the next
-- delayed request is due or -1, then up to `sample size` hosts with queued requests}.
local P = ARGV[1]
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', P .. 'delayed', '-inf', now, 'LIMIT', 0, 1000)
for _, m in ipairs(due) do
  local a = string.find(m, '\n', 1, true)
  local host, blob = split(string.sub(m, a + 1))
  enqueue(P, host, blob, false)
  redis.call('ZREM', P .. 'delayed', m)
end
local wake = -1
local first = redis.call('ZRANGE', P .. 'delayed', 0, 0, 'WITHSCORES')
if first[2] then wake = tonumber(first[2]) - now end
local out = {tonumber(redis.call('GET', P .. 'queued') or 0), tonumber(redis.call('GET', P .. 'inflight') or 0), wake}
for _, h in ipairs(redis.call('SRANDMEMBER', P .. 'hosts', tonumber(ARGV[2]))) do out[#out + 1] = h end
return out
