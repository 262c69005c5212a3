-- The shared frontier's scripts (crawler/engine/shared/redis_frontier.py loads them).
--
-- Every change to a crawl's state in Redis happens in one of these scripts, so each step is
-- atomic, and every time comes from one clock: Redis's TIME, in milliseconds.
-- KEYS[1] is the crawl's meta hash (it routes the call in Redis Cluster); ARGV[1] is the
-- crawl's key prefix, "crawler:{<name>}:"; every key a script touches starts with it, so all
-- of a crawl's keys hash to one slot.
--
-- Keys (P = the prefix):
--   P meta            hash: schema, crawl_id, run_number, run_status, run_started, scope
--   P counts          hash: queued, leased, done, failed
--   P seen:<b>        set of 64-bit URL fingerprints (integers), bucket b = the top bits
--   P q:<host>:<d>    list of "url<TAB>referrer" queued at depth d
--   P qd:<host>       zset of the depths that have a queue on host (score = depth)
--   P hosts           zset host -> URLs queued (for status and for readiness)
--   P ready           zset host -> when its next request may start, for hosts that have
--                     queued URLs and a free slot
--   P host:<host>     hash: next (ms), delay (ms: robots Crawl-delay, if longer), floor (ms:
--                     its [[fetch.hosts]] delay, in place of per_host_delay), adapt (ms:
--                     AutoThrottle's delay, if longer)
--   P inflight:<host> zset lease id -> expiry of the request slot it holds
--   P leases          hash lease id -> "worker<TAB>incarnation<TAB>host<TAB>depth<TAB>url<TAB>referrer"
--   P deadlines       zset lease id -> when the lease expires unless renewed
--   P moved           hash lease id -> the host whose slot it holds, when not its own ("" = none)
--   P seq             counter of lease ids
--   P workers         hash worker id -> incarnation
--   P wseq            hash worker id -> the sequence number of its last applied commit
--   P shards          hash worker id -> its shard's committed size and tail (JSON)
--   P done            hash fingerprint -> what a later run needs of a done URL (JSON)
--   P beats           hash worker id -> its last heartbeat (JSON)

--- prelude
local P = ARGV[1]
local META = KEYS[1]
local COUNTS = P .. 'counts'
local READY = P .. 'ready'
local LEASES = P .. 'leases'
local DEADLINES = P .. 'deadlines'
local MOVED = P .. 'moved'
local clock = redis.call('TIME')
local NOW = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

local function need_crawl()
  if redis.call('EXISTS', META) == 0 then
    return redis.error_reply('CRAWLLOST the crawl ' .. P .. ' is not in this Redis')
  end
end

local function split(s)
  local out = {}
  for field in string.gmatch(s .. '\t', '([^\t]*)\t') do out[#out + 1] = field end
  return out
end

local function host_next(host)
  return tonumber(redis.call('HGET', P .. 'host:' .. host, 'next') or '0')
end

local function in_flight(host)
  local key = P .. 'inflight:' .. host
  redis.call('ZREMRANGEBYSCORE', key, '-inf', NOW)
  return redis.call('ZCARD', key)
end

-- Put host in the ready set if it has queued URLs and a free slot.
local function make_ready(host, conc)
  if redis.call('EXISTS', P .. 'qd:' .. host) == 1 and in_flight(host) < conc then
    redis.call('ZADD', READY, 'NX', math.max(host_next(host), NOW), host)
  end
end

-- The host's delay: per_host_delay (or its own floor), or its robots Crawl-delay or
-- AutoThrottle's delay if longer.
local function host_delay(host, default)
  local h = redis.call('HMGET', P .. 'host:' .. host, 'delay', 'floor', 'adapt')
  return math.max(tonumber(h[2] or '') or default, tonumber(h[1] or '0'), tonumber(h[3] or '0'))
end

local function push(host, depth, entry, front)
  redis.call(front and 'LPUSH' or 'RPUSH', P .. 'q:' .. host .. ':' .. depth, entry)
  redis.call('ZADD', P .. 'qd:' .. host, depth, depth)
  redis.call('ZINCRBY', P .. 'hosts', 1, host)
  redis.call('HINCRBY', COUNTS, 'queued', 1)
end

-- The shallowest queued entry of host (breadth-first), or nil.
local function pop(host)
  local depths = P .. 'qd:' .. host
  while true do
    local depth = redis.call('ZRANGE', depths, 0, 0)[1]
    if not depth then return nil end
    local key = P .. 'q:' .. host .. ':' .. depth
    local entry = redis.call('LPOP', key)
    if redis.call('EXISTS', key) == 0 then redis.call('ZREM', depths, depth) end
    if entry then
      if tonumber(redis.call('ZINCRBY', P .. 'hosts', -1, host)) <= 0 then redis.call('ZREM', P .. 'hosts', host) end
      redis.call('HINCRBY', COUNTS, 'queued', -1)
      return entry, depth
    end
  end
end

-- Lease id back to the front of its host's queue, its slot freed.
local function requeue(id, lease, conc)
  local f = split(lease)
  push(f[3], f[4], f[5] .. '\t' .. (f[6] or ''), true)
  redis.call('HDEL', LEASES, id)
  redis.call('ZREM', DEADLINES, id)
  local slot = redis.call('HGET', MOVED, id) or f[3]
  redis.call('HDEL', MOVED, id)
  if slot ~= '' then redis.call('ZREM', P .. 'inflight:' .. slot, id) end
  redis.call('HINCRBY', COUNTS, 'leased', -1)
  make_ready(f[3], conc)
  if slot ~= '' and slot ~= f[3] then make_ready(slot, conc) end
end

-- The lease if worker (in this incarnation) holds it, else nil.
local function owned(id, worker, inc)
  local lease = redis.call('HGET', LEASES, id)
  if not lease then return nil end
  local f = split(lease)
  if f[1] ~= worker or f[2] ~= inc then return nil end
  return lease
end

local function fenced(worker, inc)
  return redis.call('HGET', P .. 'workers', worker) ~= inc
end

--- script: init
-- ARGV: P, schema, crawl_id, started, scope. Creates the crawl if it is not there yet.
-- Returns {created (0/1), meta as a flat list}.
if redis.call('EXISTS', META) == 1 then
  return {0, redis.call('HGETALL', META)}
end
if redis.call('EXISTS', COUNTS) == 1 then
  return redis.error_reply('CRAWLLOST the crawl ' .. P .. ' lost its meta data')
end
redis.call('HSET', META, 'schema', ARGV[2], 'crawl_id', ARGV[3], 'run_number', '1',
           'run_status', 'running', 'run_started', ARGV[4], 'scope', ARGV[5])
redis.call('HSET', COUNTS, 'queued', 0, 'leased', 0, 'done', 0, 'failed', 0)
return {1, redis.call('HGETALL', META)}

--- script: register
-- ARGV: P, worker, conc. A new incarnation of worker: the leases of earlier incarnations go
-- back to the queue at once. Returns {incarnation, leases requeued, shard (or false)}.
local err = need_crawl() if err then return err end
local worker, conc = ARGV[2], tonumber(ARGV[3])
local inc = redis.call('HINCRBY', P .. 'workers', worker, 1)
local leases = redis.call('HGETALL', LEASES)
local n = 0
for i = 1, #leases, 2 do
  if split(leases[i + 1])[1] == worker then
    requeue(leases[i], leases[i + 1], conc)
    n = n + 1
  end
end
return {inc, n, redis.call('HGET', P .. 'shards', worker)}

--- script: add
-- ARGV: P, conc, then per URL: bucket, fingerprint, host, depth, url, referrer.
-- Queues the URLs never seen before; returns how many.
local err = need_crawl() if err then return err end
local conc = tonumber(ARGV[2])
local added = 0
for i = 3, #ARGV, 6 do
  if redis.call('SADD', P .. 'seen:' .. ARGV[i], ARGV[i + 1]) == 1 then
    push(ARGV[i + 2], ARGV[i + 3], ARGV[i + 4] .. '\t' .. ARGV[i + 5], false)
    make_ready(ARGV[i + 2], conc)
    added = added + 1
  end
end
return added

--- script: see
-- ARGV: P, then bucket, fingerprint pairs. Marks URLs seen without queueing them (redirect
-- targets fetched through their redirect); returns 1/0 per URL: 1 if it was new.
local err = need_crawl() if err then return err end
local out = {}
for i = 2, #ARGV, 2 do
  out[#out + 1] = redis.call('SADD', P .. 'seen:' .. ARGV[i], ARGV[i + 1])
end
return out

--- script: lease
-- ARGV: P, worker, incarnation, n, conc, delay_ms, lease_ms, slot_ms, max_pages.
-- Reclaims expired leases, then leases up to n URLs of hosts whose turn it is, each with its
-- host's request slot and turn taken. Returns {hint_ms, then id, host, depth, url, referrer
-- per URL}; hint_ms is when the next host will be due (-1: none is waiting).
local err = need_crawl() if err then return err end
local worker, inc = ARGV[2], ARGV[3]
local n, conc, delay_ms = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local lease_ms, slot_ms, max_pages = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
if fenced(worker, inc) then return redis.error_reply('FENCED worker ' .. worker .. ' was restarted elsewhere') end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', DEADLINES, '-inf', NOW, 'LIMIT', 0, 200)) do
  local lease = redis.call('HGET', LEASES, id)
  if lease then requeue(id, lease, conc) else redis.call('ZREM', DEADLINES, id) end
end
if max_pages > 0 then
  local c = redis.call('HMGET', COUNTS, 'done', 'leased')
  n = math.min(n, max_pages - tonumber(c[1]) - tonumber(c[2]))
end
local out = {0}
local got = 0
while got < n do
  local hosts = redis.call('ZRANGEBYSCORE', READY, '-inf', NOW, 'LIMIT', 0, n - got)
  if #hosts == 0 then break end
  for _, host in ipairs(hosts) do
    local entry, depth = nil, nil
    if got < n and in_flight(host) < conc then entry, depth = pop(host) end
    if entry then
      local id = redis.call('INCR', P .. 'seq')
      local url, referrer = string.match(entry, '^([^\t]*)\t(.*)$')
      redis.call('HSET', LEASES, id, table.concat({worker, inc, host, depth, url, referrer}, '\t'))
      redis.call('ZADD', DEADLINES, NOW + lease_ms, id)
      redis.call('ZADD', P .. 'inflight:' .. host, NOW + slot_ms, id)
      local nxt = NOW + host_delay(host, delay_ms)
      redis.call('HSET', P .. 'host:' .. host, 'next', nxt)
      redis.call('HINCRBY', COUNTS, 'leased', 1)
      out[#out + 1] = id
      out[#out + 1] = host
      out[#out + 1] = depth
      out[#out + 1] = url
      out[#out + 1] = referrer
      got = got + 1
      if redis.call('EXISTS', P .. 'qd:' .. host) == 1 and in_flight(host) < conc then
        redis.call('ZADD', READY, nxt, host)
      else
        redis.call('ZREM', READY, host)
      end
    elseif got < n then
      redis.call('ZREM', READY, host)  -- nothing queued, or every slot taken: finish() re-adds it
    end
  end
end
local first = redis.call('ZRANGE', READY, 0, 0, 'WITHSCORES')
out[1] = first[2] and math.max(0, tonumber(first[2]) - NOW) or -1
return out

--- script: turn
-- ARGV: P, worker, incarnation, id, host, conc, delay_ms, slot_ms, is_lease (1/0).
-- A further request start for lease id (a retry, a redirect hop, the request after
-- robots.txt) or for a token (is_lease = 0: a sitemap request), on host. Returns 0 when the
-- turn is taken (the id then holds a slot on host), the milliseconds to wait before asking
-- again, or -1 if the lease is no longer this worker's.
local err = need_crawl() if err then return err end
local worker, inc, id, host = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local conc, delay_ms, slot_ms = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local held = redis.call('HGET', MOVED, id)
if ARGV[9] == '1' then
  local lease = owned(id, worker, inc)
  if not lease then return -1 end
  if not held then held = split(lease)[3] end
end
held = held or ''
if held ~= host then
  if held ~= '' then
    redis.call('ZREM', P .. 'inflight:' .. held, id)
    make_ready(held, conc)
  end
  redis.call('HSET', MOVED, id, '')
  if in_flight(host) >= conc then return 50 end
  local nxt = host_next(host)
  if NOW < nxt then return nxt - NOW end
  redis.call('HSET', MOVED, id, host)
else
  local nxt = host_next(host)
  if NOW < nxt then return nxt - NOW end
end
redis.call('ZADD', P .. 'inflight:' .. host, NOW + slot_ms, id)
local nxt = NOW + host_delay(host, delay_ms)
redis.call('HSET', P .. 'host:' .. host, 'next', nxt)
redis.call('ZADD', READY, 'XX', 'GT', nxt, host)
return 0

--- script: finish
-- ARGV: P, conc, then id, host pairs: the requests of these ids are over; free their slots.
local err = need_crawl() if err then return err end
local conc = tonumber(ARGV[2])
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  local held = redis.call('HGET', MOVED, id) or ARGV[i + 1]
  redis.call('HDEL', MOVED, id)
  if held ~= '' then
    redis.call('ZREM', P .. 'inflight:' .. held, id)
    make_ready(held, conc)
  end
end
return 0

--- script: hostctl
-- ARGV: P, op, host, ms, delay_ms. op "defer": no request to host for ms; "delay": the
-- host's Crawl-delay is ms; "floor": its [[fetch.hosts]] delay is ms; "adapt": AutoThrottle's
-- delay for it is ms; "started": a request to host started ms ago. When "delay", "floor"
-- or "adapt" lengthen the host's delay, the start planned with the shorter one moves back
-- by the difference (robots.txt's Crawl-delay is learnt after the request that fetched it
-- was spaced by per_host_delay alone, and the next one must still wait the whole delay).
local err = need_crawl() if err then return err end
local op, host, ms, delay_ms = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local key = P .. 'host:' .. host
local nxt = host_next(host)
if op == 'delay' or op == 'floor' or op == 'adapt' then
  local before = host_delay(host, delay_ms)
  redis.call('HSET', key, op, ms)
  local after = host_delay(host, delay_ms)
  if after <= before or nxt == 0 then return 0 end
  nxt = nxt + after - before
elseif op == 'defer' then
  nxt = math.max(nxt, NOW + ms)
else
  nxt = math.max(nxt, NOW - ms + host_delay(host, delay_ms))
end
redis.call('HSET', key, 'next', nxt)
redis.call('ZADD', READY, 'XX', 'GT', nxt, host)
return 0

--- script: commit
-- ARGV: P, worker, incarnation, seq, shard, failed, then id, fingerprint, facts triples.
-- The exactly-once point: the leases become done, and the shard's committed size is stored,
-- in one step. A commit already applied (same seq, sent again after a lost reply) is not
-- applied twice; one holding a lease this worker no longer owns is refused whole.
local err = need_crawl() if err then return err end
local worker, inc, seq = ARGV[2], ARGV[3], ARGV[4]
if redis.call('HGET', P .. 'wseq', worker) == seq then return 'dup' end
if fenced(worker, inc) then return redis.error_reply('FENCED worker ' .. worker .. ' was restarted elsewhere') end
local count = 0
for i = 7, #ARGV, 3 do
  if not owned(ARGV[i], worker, inc) then
    return redis.error_reply('LOST lease ' .. ARGV[i] .. ' of worker ' .. worker .. ' expired and was reclaimed')
  end
end
for i = 7, #ARGV, 3 do
  local id = ARGV[i]
  local held = redis.call('HGET', MOVED, id) or split(redis.call('HGET', LEASES, id))[3]
  if held ~= '' then redis.call('ZREM', P .. 'inflight:' .. held, id) end
  redis.call('HDEL', LEASES, id)
  redis.call('HDEL', MOVED, id)
  redis.call('ZREM', DEADLINES, id)
  redis.call('HSET', P .. 'done', ARGV[i + 1], ARGV[i + 2])
  count = count + 1
end
redis.call('HINCRBY', COUNTS, 'leased', 0 - count)
redis.call('HINCRBY', COUNTS, 'done', count)
redis.call('HINCRBY', COUNTS, 'failed', tonumber(ARGV[6]))
redis.call('HSET', P .. 'shards', worker, ARGV[5])
redis.call('HSET', P .. 'wseq', worker, seq)
return 'ok'

--- script: release
-- ARGV: P, worker, incarnation, conc, ids. Leases given back unfetched (a drained stop).
local err = need_crawl() if err then return err end
local worker, inc, conc = ARGV[2], ARGV[3], tonumber(ARGV[4])
local n = 0
for i = 5, #ARGV do
  local lease = owned(ARGV[i], worker, inc)
  if lease then
    requeue(ARGV[i], lease, conc)
    n = n + 1
  end
end
return n

--- script: renew
-- ARGV: P, worker, incarnation, lease_ms, ids. Extends the leases; returns the ids this
-- worker no longer holds (reclaimed while it was silent), or error FENCED.
local err = need_crawl() if err then return err end
local worker, inc, lease_ms = ARGV[2], ARGV[3], tonumber(ARGV[4])
if fenced(worker, inc) then return redis.error_reply('FENCED worker ' .. worker .. ' was restarted elsewhere') end
local lost = {}
for i = 5, #ARGV do
  if owned(ARGV[i], worker, inc) then
    redis.call('ZADD', DEADLINES, 'XX', NOW + lease_ms, ARGV[i])
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost

--- script: revisit
-- ARGV: P, conc, then host, depth, url, referrer per URL: a new run queues done URLs again
-- (they stay seen).
local err = need_crawl() if err then return err end
local conc = tonumber(ARGV[2])
local n = 0
for i = 3, #ARGV, 4 do
  push(ARGV[i], ARGV[i + 1], ARGV[i + 2] .. '\t' .. ARGV[i + 3], false)
  make_ready(ARGV[i], conc)
  n = n + 1
end
redis.call('HINCRBY', COUNTS, 'done', 0 - n)
return n

--- script: begin_run
-- ARGV: P, expected run number, crawl_id, started. Starts the next run if the current one
-- finished and nobody started it meanwhile; returns 1 if this caller did.
local err = need_crawl() if err then return err end
local meta = redis.call('HMGET', META, 'run_number', 'run_status')
if meta[1] ~= ARGV[2] or meta[2] ~= 'finished' or tonumber(redis.call('HGET', COUNTS, 'leased')) > 0 then
  return 0
end
redis.call('HSET', META, 'run_number', tonumber(ARGV[2]) + 1, 'crawl_id', ARGV[3], 'run_status', 'revisiting',
           'run_started', ARGV[4])
redis.call('HSET', COUNTS, 'failed', 0)
return 1
