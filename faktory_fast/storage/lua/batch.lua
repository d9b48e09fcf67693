-- Batches and job tracking (docs/enterprise.md, "Batches" and "Job tracking"): their
-- functions, and the hooks the core functions of jobs.lua call (its header has their
-- contract).
--
-- A batch `bid` is three keys (keys.py): BATCH_PREFIX..bid, a hash of its fields (state 'new'
-- | 'open' | 'committed', description, parent_bid, created_at, the counters, complete_st and
-- success_st, and per callback its job, queue, priority and jid); BATCH_JOBS_PREFIX..bid, its
-- jobs (jid -> unit state); BATCH_KIDS_PREFIX..bid, its child batches (bid -> unit state).
-- A unit (a job, or a child batch: one unit of its parent) is 'pending' until it has run
-- once, then 'success', 'failed' or 'dead' (a job) or 'ran' (a child batch whose complete
-- phase is over). Counters: total, pending (not succeeded) and failed (failed and not yet
-- succeeded) count jobs only, as Faktory's BATCH STATUS does; unrun (not run once) and waiting
-- (not succeeded) count every unit, children included: the callbacks wait for them.
-- BATCHES lists every batch by creation time (the web UI's list; entries of expired batches
-- are dropped as the list meets them), BATCHES_OPEN the ones whose callbacks have not all
-- succeeded, BATCH_STATS counts callbacks fired ('callbacks').
-- A tracked job (custom.track = 1) has TRACK_PREFIX..jid, a hash: state (enqueued | failed |
-- success | dead; 'working' is read from its reservation), percent, desc, updated_at.

local UNCOMMITTED_TTL = 1800  -- a batch not committed within 30 minutes of NEW / OPEN goes
local TRACK_FINISHED_TTL = 1800  -- tracking data is kept 30 minutes after the job finished
local TRACK_LIVE_TTL = 30 * 86400  -- a tracked job that never finishes is forgotten after that
local DEFAULT_RETENTION = 30 * 86400  -- (COMMIT sets each batch's: --batch-retention)

-- Redis's clock as RFC3339 (UTC, microseconds), the format of the jobs' timestamps.
local function now_rfc3339()
  local t = redis.call('TIME')
  local sec, usec = tonumber(t[1]), tonumber(t[2])
  local days = math.floor(sec / 86400)
  local rem = sec - days * 86400
  -- Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%06dZ', y, m, d, math.floor(rem / 3600),
    math.floor(rem % 3600 / 60), rem % 60, usec)
end

local function batch_keys(bid)
  return BATCH_PREFIX .. bid, BATCH_JOBS_PREFIX .. bid, BATCH_KIDS_PREFIX .. bid
end

-- Keep a batch's three keys `ttl` seconds.
local function batch_expire(bid, ttl)
  for _, k in ipairs({batch_keys(bid)}) do redis.call('EXPIRE', k, ttl) end
end

-- A batch's jobs or children hash, just created, expires with the batch (if it expires).
local function expire_with(units, key)
  local ttl = redis.call('PTTL', key)
  if ttl > 0 then redis.call('PEXPIRE', units, ttl) end
end

-- How long the batch's data is kept: set by its COMMIT (the server's --batch-retention).
local function retention(key)
  return tonumber(redis.call('HGET', key, 'retention')) or DEFAULT_RETENTION
end

local unit_event  -- (defined below: phases and units call each other)

-- Enqueue the batch's `which` callback ('complete' | 'success'), if it has one: true if it
-- did. Its job was stored by NEW without enqueued_at (added here, last).
local function fire(bid, key, which)
  local f = redis.call('HMGET', key, which, which .. '_q', which .. '_p')
  if not f[1] then return false end
  local job = string.sub(f[1], 1, -2) .. ',"enqueued_at":"' .. now_rfc3339() .. '"}'
  enqueue(QUEUES_KEY, PRIORITY_QUEUES_KEY, f[2], tonumber(f[3]), job, 'LPUSH')
  redis.call('HSET', key, which .. '_st', '1')
  redis.call('HINCRBY', BATCH_STATS, 'callbacks', 1)
  return true
end

-- The batch's complete phase is over (its callback succeeded, or it has none): for its parent,
-- this child unit has run.
local function complete_done(bid, key)
  redis.call('HSET', key, 'complete_st', '2')
  batch_expire(bid, retention(key))
  local parent = redis.call('HGET', key, 'parent_bid')
  if parent and parent ~= '' then unit_event(parent, BATCH_KIDS_PREFIX .. parent, bid, 'ran') end
end

-- The success phase is over: the batch is finished; its parent counts it as succeeded.
local function success_done(bid, key)
  redis.call('HSET', key, 'success_st', '2')
  redis.call('SREM', BATCHES_OPEN, bid)
  batch_expire(bid, retention(key))
  local parent = redis.call('HGET', key, 'parent_bid')
  if parent and parent ~= '' then unit_event(parent, BATCH_KIDS_PREFIX .. parent, bid, 'ack') end
end

-- Move a committed batch on as far as its counters allow: complete when every unit has run
-- once, then (only after the complete callback succeeded) success when every unit succeeded.
-- Runs in the same function call that changed the counters: each phase happens once.
local function batch_check(bid)
  local key = BATCH_PREFIX .. bid
  local b = redis.call('HMGET', key, 'state', 'unrun', 'waiting', 'complete_st', 'success_st')
  if b[1] ~= 'committed' then return end
  if (b[4] or '') == '' then
    if (tonumber(b[2]) or 0) > 0 then return end
    if fire(bid, key, 'complete') then return end
    complete_done(bid, key)
  elseif b[4] ~= '2' then
    return
  end
  if (b[5] or '') == '' and (tonumber(b[3]) or 0) <= 0 then
    if not fire(bid, key, 'success') then success_done(bid, key) end
  end
end

-- A unit of batch `bid` (`member` of the hash `units`: its jobs' or its children's) ran:
-- event 'ack' (succeeded), 'fail' / 'dead' (a job failed; 'dead': it will not be retried) or
-- 'ran' (a child batch's complete phase is over). A unit the batch does not know (its data
-- expired) changes nothing.
unit_event = function(bid, units, member, event)
  local prev = redis.call('HGET', units, member)
  if not prev or prev == 'success' then return end
  local key = BATCH_PREFIX .. bid
  local job = units == BATCH_JOBS_PREFIX .. bid
  if event == 'ack' then
    redis.call('HSET', units, member, 'success')
    redis.call('HINCRBY', key, 'waiting', -1)
    if job then
      redis.call('HINCRBY', key, 'pending', -1)
      if prev == 'failed' or prev == 'dead' then redis.call('HINCRBY', key, 'failed', -1) end
    end
    if prev == 'pending' then
      -- The usual ACK: while other units have not run (waiting >= unrun > 0), no phase can
      -- end, and the check is skipped.
      if redis.call('HINCRBY', key, 'unrun', -1) > 0 then return end
    end
  elseif event == 'ran' then
    if prev ~= 'pending' then return end
    redis.call('HSET', units, member, 'ran')
    redis.call('HINCRBY', key, 'unrun', -1)
  else
    if prev == 'pending' then
      redis.call('HINCRBY', key, 'unrun', -1)
      redis.call('HINCRBY', key, 'failed', 1)
    end
    if event == 'dead' or prev == 'pending' then
      redis.call('HSET', units, member, event == 'dead' and 'dead' or 'failed')
    end
  end
  batch_check(bid)
end

local function tracked(custom)
  local t = custom['track']
  return t == 1 or t == true or t == '1'
end

local function track_state(jid, state, ttl)
  local key = TRACK_PREFIX .. jid
  redis.call('HSET', key, 'state', state, 'updated_at', now_rfc3339())
  redis.call('EXPIRE', key, ttl)
end

-- Hook: may this job join its batch? Refuses an unknown bid or a committed batch.
-- The batch a job's custom object names, or nil (no bid, a null or an empty one: not in a
-- batch).
local function bid_of(custom)
  local bid = custom['bid']
  if type(bid) == 'string' and bid ~= '' then return bid end
  return nil
end

local function batch_push(doc)
  local bid = doc['custom']['bid']
  if bid == nil or bid == cjson.null or bid == '' then return nil end
  if type(bid) ~= 'string' then return 'ERR custom.bid must be a string' end
  local state = redis.call('HGET', BATCH_PREFIX .. bid, 'state')
  if not state then return 'ERR No such batch ' .. bid end
  if state == 'committed' then
    return 'ERR Batch ' .. bid .. ' is committed: BATCH OPEN it to add jobs'
  end
  return nil
end

-- Hook: the job was stored (every hook accepted it): count it in its batch, start tracking.
local function batch_pushed(doc)
  local custom = doc['custom']
  local bid = bid_of(custom)
  if bid then
    local key, jobs = batch_keys(bid)
    if redis.call('HSETNX', jobs, doc['jid'], 'pending') == 1 then
      if redis.call('HLEN', jobs) == 1 then expire_with(jobs, key) end
      redis.call('HINCRBY', key, 'total', 1)
      redis.call('HINCRBY', key, 'pending', 1)
      redis.call('HINCRBY', key, 'unrun', 1)
      redis.call('HINCRBY', key, 'waiting', 1)
    end
  end
  if tracked(custom) then track_state(doc['jid'], 'enqueued', TRACK_LIVE_TTL) end
end

-- Hook: a reservation ended. Counts the job in its batch, finishes a callback (custom._bid)
-- when it is ACKed, records a tracked job's state.
local function batch_done(doc, outcome)
  local custom, jid = doc['custom'], doc['jid']
  local event = outcome == 'ack' and 'ack' or (outcome == 'retry' and 'fail' or 'dead')
  local bid = bid_of(custom)
  if bid then unit_event(bid, BATCH_JOBS_PREFIX .. bid, jid, event) end
  local cb = custom['_bid']
  if type(cb) == 'string' and outcome == 'ack' then
    local key = BATCH_PREFIX .. cb
    local f = redis.call('HMGET', key, 'complete_jid', 'complete_st', 'success_jid', 'success_st')
    if jid == f[1] and f[2] == '1' then
      complete_done(cb, key)
      batch_check(cb)
    elseif jid == f[3] and f[4] == '1' then
      success_done(cb, key)
    end
  end
  if tracked(custom) then
    if event == 'ack' then
      track_state(jid, 'success', TRACK_FINISHED_TTL)
    elseif event == 'fail' then
      track_state(jid, 'failed', TRACK_LIVE_TTL)
    else
      track_state(jid, 'dead', TRACK_FINISHED_TTL)
    end
  end
end

-- ff_batch_new(bid, created, score, description, parent, [which, job, queue, priority, jid]
-- * n) (created: RFC3339; score: the same time as unix seconds, its rank in ff:batches):
-- create batch `bid` (state 'new', expiring after UNCOMMITTED_TTL) with its callbacks
-- (which: complete | success; the job JSON without enqueued_at, custom._bid set). A parent
-- must exist and not be committed; the new batch is one more unit of it (not counted in its
-- total: see above). Returns '' or an
-- error line. KEYS: ff:batches, ff:bopen, ff:b:<bid>; also the parent's ff:b and ff:bk.
local function ff_batch_new(keys, args)
  local batches, open, key = keys[1], keys[2], keys[3]
  local bid, created, desc, parent = args[1], args[2], args[4], args[5]
  if redis.call('EXISTS', key) == 1 then return 'ERR Batch ' .. bid .. ' exists' end
  if parent ~= '' then
    local pkey, _, pkids = batch_keys(parent)
    local state = redis.call('HGET', pkey, 'state')
    if not state then return 'ERR No such parent batch ' .. parent end
    if state == 'committed' then
      return 'ERR Parent batch ' .. parent .. ' is committed: BATCH OPEN it to add a child'
    end
    redis.call('HSET', pkids, bid, 'pending')
    expire_with(pkids, pkey)
    redis.call('HINCRBY', pkey, 'unrun', 1)
    redis.call('HINCRBY', pkey, 'waiting', 1)
  end
  redis.call('HSET', key, 'bid', bid, 'state', 'new', 'created_at', created, 'description', desc,
    'parent_bid', parent, 'total', 0, 'pending', 0, 'failed', 0, 'unrun', 0, 'waiting', 0,
    'complete_st', '', 'success_st', '')
  for i = 6, #args - 4, 5 do
    local which = args[i]
    redis.call('HSET', key, which, args[i + 1], which .. '_q', args[i + 2],
      which .. '_p', args[i + 3], which .. '_jid', args[i + 4])
  end
  redis.call('EXPIRE', key, UNCOMMITTED_TTL)
  redis.call('ZADD', batches, args[3], bid)
  redis.call('SADD', open, bid)
  return ''
end
register('ff_batch_new', ff_batch_new)

-- ff_batch_commit(bid, retention): the batch may fire its callbacks (at once if its units are
-- done); its data is kept `retention` seconds from now and from the end of each phase
-- (complete, success). OUTCOME.DONE or
-- OUTCOME.GONE (no such batch). KEYS: ff:b:<bid>, ff:bj:<bid>, ff:bk:<bid>.
local function ff_batch_commit(keys, args)
  local bid = args[1]
  local state = redis.call('HGET', keys[1], 'state')
  if not state then return OUTCOME.GONE end
  if state ~= 'committed' then
    redis.call('HSET', keys[1], 'state', 'committed', 'retention', args[2])
    -- Kept `retention` seconds from now, and again from the end of each phase: a batch whose
    -- jobs never all run (deleted by hand) does not stay for good.
    batch_expire(bid, tonumber(args[2]))
    batch_check(bid)
  end
  return OUTCOME.DONE
end
register('ff_batch_commit', ff_batch_commit)

-- ff_batch_open(bid): re-open a batch to add jobs (it must be committed again, within
-- UNCOMMITTED_TTL). Callbacks that have fired do not fire again. OUTCOME.DONE or
-- OUTCOME.GONE. KEYS: ff:b:<bid>, ff:bj:<bid>, ff:bk:<bid>.
local function ff_batch_open(keys, args)
  local state = redis.call('HGET', keys[1], 'state')
  if not state then return OUTCOME.GONE end
  if state == 'committed' then
    redis.call('HSET', keys[1], 'state', 'open')
    batch_expire(args[1], UNCOMMITTED_TTL)
  end
  return OUTCOME.DONE
end
register('ff_batch_open', ff_batch_open)

local BATCH_FIELDS = {'bid', 'parent_bid', 'description', 'created_at', 'total', 'pending',
  'failed', 'complete_st', 'success_st', 'state', 'complete_jid', 'success_jid'}

-- ff_batch_status(bid): the batch's fields as {name, value, ...} ({} if unknown).
-- KEYS: ff:b:<bid>.
local function ff_batch_status(keys, args)
  if redis.call('EXISTS', keys[1]) == 0 then return {} end
  local values = redis.call('HMGET', keys[1], unpack(BATCH_FIELDS))
  local out = {}
  for i, name in ipairs(BATCH_FIELDS) do
    out[#out + 1] = name
    out[#out + 1] = values[i] or ''
  end
  return out
end
read_only('ff_batch_status', ff_batch_status)

-- ff_batch_page(start, skip, want, text, scan_cap, budget): batches newest first, from rank
-- `start` of the index (ff:batches): skips `skip` of those matching `text` (lower case, '' =
-- any) in their description or bid, then takes up to `want`. Looks at the index 200 entries at
-- a time while start < scan_cap and this call has looked at fewer than `budget` (a caller
-- going on from the start and skip it returns, until it has its page, the end or scan_cap,
-- gets what one call without a budget would). Entries of expired batches are dropped from the
-- index. Returns {next start, skip left, reached the end (0/1), {{fields}, ...}}.
-- KEYS: ff:batches, ff:bopen; also ff:b:<bid> of each batch looked at.
local function ff_batch_page(keys, args)
  local batches, open = keys[1], keys[2]
  local start, skip, want, text = tonumber(args[1]), tonumber(args[2]), tonumber(args[3]), args[4]
  local cap, budget = tonumber(args[5]), tonumber(args[6])
  local out, looked, ended = {}, 0, 0
  while #out < want and start < cap and looked < budget do
    local bids = redis.call('ZREVRANGE', batches, start, start + 199)
    if #bids == 0 then ended = 1 break end
    looked = looked + #bids
    local gone = 0
    for _, bid in ipairs(bids) do
      local key = BATCH_PREFIX .. bid
      -- every batch has a state: its fields are read for the ones taken only
      local head = redis.call('HMGET', key, 'state', 'description')
      if not head[1] and redis.call('EXISTS', key) == 0 then
        redis.call('ZREM', batches, bid)
        redis.call('SREM', open, bid)
        gone = gone + 1
      elseif text == '' or string.find(string.lower((head[2] or '') .. ' ' .. bid), text, 1,
          true) then
        if skip > 0 then skip = skip - 1
        elseif #out < want then out[#out + 1] = ff_batch_status({key}, {}) end
      end
    end
    start = start + #bids - gone
  end
  return {start, skip, ended, out}
end
register('ff_batch_page', ff_batch_page)

-- ff_batch_detail(bid, cursor, want, state, budget, children): {fields, next cursor ('0': the
-- end), {jid, state, ...}, {child bid, state, ...}} ({} if unknown): its jobs from HSCAN
-- `cursor` on, in the hash's order, stopping once `want` are found or about `budget` were
-- scanned (a small hash, stored as a listpack, comes whole: HSCAN returns it in one go); only
-- those in `state` if it is not ''. The children only if `children` is '1' (else {}).
-- KEYS: ff:b:<bid>, ff:bj:<bid>, ff:bk:<bid>.
local function ff_batch_detail(keys, args)
  local f = ff_batch_status(keys, args)
  if #f == 0 then return {} end
  local cursor, want, state, budget = args[2], tonumber(args[3]), args[4], tonumber(args[5])
  local jobs, scanned = {}, 0
  repeat
    local reply = redis.call('HSCAN', keys[2], cursor, 'COUNT', 100)
    cursor = reply[1]
    scanned = scanned + #reply[2] / 2
    for i = 1, #reply[2], 2 do
      if state == '' or reply[2][i + 1] == state then
        jobs[#jobs + 1] = reply[2][i]
        jobs[#jobs + 1] = reply[2][i + 1]
      end
    end
  until cursor == '0' or #jobs >= 2 * want or scanned >= budget
  return {f, cursor, jobs, args[6] == '1' and redis.call('HGETALL', keys[3]) or {}}
end
read_only('ff_batch_detail', ff_batch_detail)

-- ff_batch_stats(cursor, count): drops the expired batches of one SSCAN page of ff:bopen (about
-- `count` from `cursor`). Returns {next cursor ('0': the last page), batches open (its size
-- now), callbacks fired}: a caller going on until the cursor is '0' has swept the whole set,
-- and the last reply's count of open batches is the one a single sweep would give.
-- KEYS: ff:bopen, ff:bstats; also ff:b:<bid> of each batch of the page.
local function ff_batch_stats(keys, args)
  local page = redis.call('SSCAN', keys[1], args[1], 'COUNT', args[2])
  for _, bid in ipairs(page[2]) do
    if redis.call('EXISTS', BATCH_PREFIX .. bid) == 0 then redis.call('SREM', keys[1], bid) end
  end
  return {page[1], redis.call('SCARD', keys[1]),
    tonumber(redis.call('HGET', keys[2], 'callbacks')) or 0}
end
register('ff_batch_stats', ff_batch_stats)

-- ff_track_set(jid, has_percent, percent, has_desc, desc, reserve_until): update a tracked
-- job's progress; reserve_until (unix seconds, '' = none) moves its live reservation's expiry
-- later (never earlier). Returns OUTCOME.GONE if the job is not tracked, else OUTCOME.DONE.
-- KEYS: ff:t:<jid>, ff:res, working; also the throttle lock set the reservation holds a lock in.
local function ff_track_set(keys, args)
  local key, res, working = keys[1], keys[2], keys[3]
  local jid = args[1]
  if redis.call('EXISTS', key) == 0 then return OUTCOME.GONE end
  redis.call('HSET', key, 'updated_at', now_rfc3339())
  if args[2] == '1' then redis.call('HSET', key, 'percent', args[3]) end
  if args[4] == '1' then redis.call('HSET', key, 'desc', args[5]) end
  local untl = tonumber(args[6])
  if untl then
    local record = redis.call('HGET', res, jid)
    local current = record and tonumber(string.match(record, '"expires_at":([%d%.]+)'))
    if current and untl > current then
      -- expires_at comes before the job in the record (ff_fetch), so the first match is it.
      record = string.gsub(record, '"expires_at":[%d%.]+', '"expires_at":' .. args[6], 1)
      redis.call('HSET', res, jid, record)
      redis.call('ZADD', working, 'XX', untl, jid)
      -- A throttle lock held for it lasts as long (its timeout would free it while it runs).
      local lock = throttle_lock(record)
      if lock then redis.call('ZADD', lock, 'XX', 'GT', untl, jid) end
    end
  end
  return OUTCOME.DONE
end
register('ff_track_set', ff_track_set)

-- ff_track_get(jid): {reserved (0/1), field, value, ...} of a tracked job ({0} if unknown).
-- KEYS: ff:t:<jid>, ff:res.
local function ff_track_get(keys, args)
  local fields = redis.call('HGETALL', keys[1])
  table.insert(fields, 1, redis.call('HEXISTS', keys[2], args[1]))
  return fields
end
read_only('ff_track_get', ff_track_get)
