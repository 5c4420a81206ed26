"""The Lua scripts of a shared crawl (keys: see ``redis.py``).

Every change to shared state is one script: Redis runs it atomically, in one round trip, and
reads the time from its own clock (``TIME``), so the machines' clocks need not agree. Entries
that name a host and a request are "<host>\\n<pickled request>" (``split``).
"""

ENTRY = """
local function split(v)
  local a = string.find(v, '\\n', 1, true)
  return string.sub(v, 1, a - 1), string.sub(v, a + 1)
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function enqueue(P, host, blob, front)
  if front then redis.call('LPUSH', P .. 'q:' .. host, blob) else redis.call('RPUSH', P .. 'q:' .. host, blob) end
  redis.call('SADD', P .. 'hosts', host)
end
local function give_back(P, node)
  local key = P .. 'lease:' .. node
  local all = redis.call('HGETALL', key)
  for i = 2, #all, 2 do
    local host, blob = split(all[i])
    enqueue(P, host, blob, true)
  end
  local n = #all / 2
  redis.call('DEL', key)
  redis.call('INCRBY', P .. 'queued', n)
  redis.call('DECRBY', P .. 'inflight', n)
  return n
end
"""

# ARGV: P, delay ms, then (host, front 0/1, blob) triples.
PUSH = ENTRY + """
local P, delay = ARGV[1], tonumber(ARGV[2])
local due = 0
if delay > 0 then due = now_ms() + delay end
local n = 0
for i = 3, #ARGV, 3 do
  if delay > 0 then
    local id = redis.call('INCR', P .. 'seq')
    redis.call('ZADD', P .. 'delayed', due, id .. '\\n' .. ARGV[i] .. '\\n' .. ARGV[i + 2])
  else
    enqueue(P, ARGV[i], ARGV[i + 2], ARGV[i + 1] == '1')
  end
  n = n + 1
end
redis.call('INCRBY', P .. 'queued', n)
return n
"""

# ARGV: P, node, host -> {lease id, blob} or false when the host's queue is empty.
TAKE = """
local P, node, host = ARGV[1], ARGV[2], ARGV[3]
local q = P .. 'q:' .. host
local blob = redis.call('LPOP', q)
if redis.call('LLEN', q) == 0 then redis.call('SREM', P .. 'hosts', host) end
if not blob then return false end
local id = redis.call('INCR', P .. 'seq')
redis.call('HSET', P .. 'lease:' .. node, id, host .. '\\n' .. blob)
redis.call('DECR', P .. 'queued')
redis.call('INCR', P .. 'inflight')
return {id, blob}
"""

# ARGV: P, node, lease ids...; a lease already given back (this node was taken for dead) is skipped.
DONE = """
local P, key = ARGV[1], ARGV[1] .. 'lease:' .. ARGV[2]
local n = 0
for i = 3, #ARGV do n = n + redis.call('HDEL', key, ARGV[i]) end
redis.call('DECRBY', P .. 'inflight', n)
return n
"""

RECLAIM = ENTRY + """
local P, key = ARGV[1], ARGV[1] .. 'lease:' .. ARGV[2]
local n = 0
for i = 3, #ARGV do
  local v = redis.call('HGET', key, ARGV[i])
  if v then
    local host, blob = split(v)
    enqueue(P, host, blob, true)
    redis.call('HDEL', key, ARGV[i])
    n = n + 1
  end
end
redis.call('INCRBY', P .. 'queued', n)
redis.call('DECRBY', P .. 'inflight', n)
return n
"""

# ARGV: P, node, lease ms. Registers the node and gives back the leases of dead nodes.
BEAT = ENTRY + """
local P, node, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local now = now_ms()
local dead = redis.call('ZRANGEBYSCORE', P .. 'nodes', '-inf', now)
local n = 0
for _, other in ipairs(dead) do
  if other ~= node then n = n + give_back(P, other) end
  redis.call('ZREM', P .. 'nodes', other)
end
redis.call('ZADD', P .. 'nodes', now + ttl, node)
return n
"""

LEAVE = ENTRY + """
local n = give_back(ARGV[1], ARGV[2])
redis.call('ZREM', ARGV[1] .. 'nodes', ARGV[2])
return n
"""

# ARGV: P, sample size -> {queued, inflight, ms until the next delayed request is due or -1, hosts...}
POLL = ENTRY + """
local P = ARGV[1]
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', P .. 'delayed', '-inf', now, 'LIMIT', 0, 1000)
for _, m in ipairs(due) do
  local a = string.find(m, '\\n', 1, true)
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
"""

# ARGV: P, host, member, per_host, lease ms, default delay ms -> {1, 0} granted, {0, ms} wait, {0, -1} cap full.
ACQUIRE = ENTRY + """
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
return {1, 0}
"""

# ARGV: P, node prefix "<node>:", lease ms, hosts... : extends this node's slots still held.
RENEW = ENTRY + """
local P, mine, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local expiry = now_ms() + ttl
for i = 4, #ARGV do
  local key = P .. 'l:' .. ARGV[i]
  for _, m in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    if string.sub(m, 1, #mine) == mine then redis.call('ZADD', key, 'XX', expiry, m) end
  end
end
return 0
"""

# ARGV: P, host, ms from now: no start for the host before then.
PAUSE = ENTRY + """
local resume = now_ms() + tonumber(ARGV[3])
local nxt = tonumber(redis.call('HGET', ARGV[1] .. 'next', ARGV[2]) or '0')
if resume > nxt then redis.call('HSET', ARGV[1] .. 'next', ARGV[2], resume) end
return 0
"""

NOW_US = """
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
"""

# ARGV: P, host, token, lock ms, delay µs -> -1 if another fetch has the host's turn, else µs to
# wait before sending: ``delay`` after the previous response's headers, as ``limiter.Turn`` does.
TURN_ENTER = NOW_US + """
if not redis.call('SET', ARGV[1] .. 'tl:' .. ARGV[2], ARGV[3], 'NX', 'PX', ARGV[4]) then return -1 end
local last = tonumber(redis.call('HGET', ARGV[1] .. 'turn', ARGV[2]) or '0')
return math.max(0, last + tonumber(ARGV[5]) - now_us())
"""

# ARGV: P, host, token: the headers arrived; the next fetch may take its turn.
TURN_EXIT = NOW_US + """
redis.call('HSET', ARGV[1] .. 'turn', ARGV[2], string.format('%.0f', now_us()))
if redis.call('GET', ARGV[1] .. 'tl:' .. ARGV[2]) == ARGV[3] then redis.call('DEL', ARGV[1] .. 'tl:' .. ARGV[2]) end
return 0
"""

# ARGV: P, then (shard, signed fingerprint) pairs -> the 1-based positions of the new ones.
SEEN_ADD = """
local P = ARGV[1]
local new = {}
for i = 2, #ARGV, 2 do
  if redis.call('SADD', P .. 's:' .. ARGV[i], ARGV[i + 1]) == 1 then new[#new + 1] = i / 2 end
end
if #new > 0 then redis.call('INCRBY', P .. 'seen', #new) end
return new
"""

# The scripts RedisCrawl.call runs by name.
SCRIPTS = {
    "push": PUSH, "take": TAKE, "done": DONE, "reclaim": RECLAIM, "beat": BEAT, "leave": LEAVE,
    "poll": POLL, "acquire": ACQUIRE, "renew": RENEW, "pause": PAUSE,
}
