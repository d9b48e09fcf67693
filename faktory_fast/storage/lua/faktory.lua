#!lua name=faktory_fast
-- faktory_fast's Redis function library: every state change a protocol command makes is one
-- FCALL of one function here, so any number of server processes can share one Redis.
--
-- Keys. Each function is called with the keys it always touches as KEYS, in the order its
-- comment gives (faktory_fast/storage/store.py's table of functions passes them, named by
-- faktory_fast/storage/keys.py), followed by the per-item keys the caller knows (a queue's list and
-- waiters set, a worker's hash, a day's counter): declared for ACL key patterns (and a later
-- Cluster layout). The hot functions (ff_push, ff_fetch, ff_enqueue_from, ff_release) use the
-- declared per-item keys; the others build those names from the prefixes below. Some keys
-- depend on data the function reads, and cannot be declared by the caller: the priority lists
-- of a queue (q:<name>:p<N>, when ff:prioq lists it), the queues named inside jobs, every known
-- queue ('*', INFO) and every registered worker (ff:wids); each function's comment says which.
--
-- Times are passed in by the caller (unix seconds as decimal strings) so that every process
-- and the tests agree on "now". Job JSON is never re-encoded here: cjson would reorder keys
-- and round big numbers, so jobs are only decoded to read fields and stored byte for byte.

-- Names from Python, written here by store.library_source() when the library is loaded:
-- QUEUE_PREFIX, PRIORITY_SUFFIX, WAITERS_PREFIX, WORKER_PREFIX (keys.py's key names),
-- WAKE_PREFIX, CONTROL_CHANNEL (its pub/sub channels), and the named results OUTCOME
-- (GONE: no such record, nothing changed; DONE; CHANGED: not the record the caller read) and
-- FETCHED (what ff_fetch found instead of a job: EMPTY, QUIET, ALL_PAUSED, SOME_PAUSED, MORE).
--@names from python

local PRIORITIES_HIGH = {9, 8, 7, 6}
local EXPIRED_PER_FETCH = 100  -- expired jobs one ff_fetch discards at most (FETCHED.MORE)
local PRIORITIES_LOW = {4, 3, 2, 1}

-- The list of queue `name`'s jobs of priority `prio` (keys.queue_list).
local function qkey(name, prio)
  if prio == 5 then return QUEUE_PREFIX .. name end
  return QUEUE_PREFIX .. name .. PRIORITY_SUFFIX .. prio
end

-- Tell every process with a FETCH waiting on `name` (listed in `wkey`, its ff:wait:<name>)
-- that it has a job; one-shot. Publishes on WAKE_PREFIX<process>.
local function wake(name, wkey)
  local procs = redis.call('SMEMBERS', wkey)
  if #procs > 0 then
    for _, p in ipairs(procs) do redis.call('PUBLISH', WAKE_PREFIX .. p, name) end
    redis.call('DEL', wkey)
  end
end

-- The value of the JSON string whose text between the quotes is `raw` (no '"' inside).
local function json_string(raw)
  if string.find(raw, '\\', 1, true) then return cjson.decode('"' .. raw .. '"') end
  return raw
end

-- `s` as the text between the quotes of a JSON string, with \u0022 for '"' (as jobs.encode
-- writes the strings job_head reads): it ends at the next '"'.
local function quote_safe(s)
  if not string.find(s, '[%c"\\/\127]') then return s end
  return (string.gsub(string.sub(cjson.encode(s), 2, -2), '"', 'u0022'))
end

-- Add `job` to queue `name` at priority `prio`: `queues` and `prioq` are the caller's KEYS for
-- the queues set and ff:prioq; `list` and `waiting` the queue's q:<name>[:p<N>] and
-- ff:wait:<name> (nil: built here). `push` is LPUSH (the far end: it runs after those
-- waiting) or RPUSH (the near end: it runs next).
local function enqueue(queues, prioq, name, prio, job, push, list, waiting)
  -- Only a list that was empty can belong to an unregistered queue or one with waiters (a
  -- FETCH waits only when all of a queue's lists are empty, and QUEUE REMOVE deletes them):
  -- pushes onto a backlog cost one call.
  if redis.call(push, list or qkey(name, prio), job) == 1 then
    redis.call('SADD', queues, name)
    if prio ~= 5 then redis.call('SADD', prioq, name) end
    wake(name, waiting or (WAITERS_PREFIX .. name))
  end
end

-- Pop the next job of queue `name` (whose main list is `base`, q:<name>): priority 9 first,
-- FIFO within a priority. Touches q:<name>:p<N> too if `prioq` lists the queue.
local function pop(prioq, name, base)
  if redis.call('SISMEMBER', prioq, name) == 0 then
    return redis.call('RPOP', base)
  end
  for _, p in ipairs(PRIORITIES_HIGH) do
    local job = redis.call('RPOP', base .. PRIORITY_SUFFIX .. p)
    if job then return job end
  end
  local job = redis.call('RPOP', base)
  if job then return job end
  for _, p in ipairs(PRIORITIES_LOW) do
    job = redis.call('RPOP', base .. PRIORITY_SUFFIX .. p)
    if job then return job end
  end
  redis.call('SREM', prioq, name)
  return false
end

-- Number of jobs in queue `name` over all priorities. Touches q:<name>[:p<N>].
local function qsize(prioq, name)
  local n = redis.call('LLEN', QUEUE_PREFIX .. name)
  if redis.call('SISMEMBER', prioq, name) == 1 then
    for p = 1, 9 do
      if p ~= 5 then n = n + redis.call('LLEN', qkey(name, p)) end
    end
  end
  return n
end

-- The Enterprise features. A job that has a "custom" object may belong to a batch, be tracked,
-- unique or expiring: the core functions below decode such jobs only (`with_custom`), and call
-- each feature's hooks, which live in files of their own (pasted here by store.library_source)
-- and may use the helpers above:
--   batch_push(doc) / ent_push(doc, lock, ms): a job is being pushed (lock, ms: its unique
--     lock's name and milliseconds, nil if it is not unique); return an error line ("CODE
--     message") to refuse it, or nil. A refused job is not stored, and no hook after the one that refused it
--     runs.
--   batch_pushed(doc): every hook accepted the job (it is stored): count it in its batch.
--   batch_done(doc, outcome) / ent_done(doc, outcome, text): a reservation of the job ended by
--     ACK (outcome 'ack') or FAIL ('retry', 'dead' or 'discard').
-- Hooks that need the time read Redis's clock (TIME): ACK does not pass one.
--@include ent.lua
--@include batch.lua

-- Jobs as this server writes them (jobs.encode) are read without decoding them, whatever the
-- size of their args: they begin '{"jid":"<jid>","retry":<n>', then ',"reserve_for":<n>' if
-- they have one, then ',"custom":{' if they have a custom object, whose first members are the
-- hook keys (jobs.HOOK_KEYS, below) that have scalar values, in that order. A '"' inside the
-- jid or one of those strings is written \u0022, so each string ends at the next '"'.
local HOOK_KEYS = {'bid', '_bid', 'track', 'unique_for', 'unique_until', 'expires_at'}

-- The head of the job whose JSON text starts at index `at` of `text` (1 if nil), if the job
-- is in the form above: its jid, its reserve_for (or nil) and, if it has a custom object, a
-- table of its hook keys' values (Lua values; a null is absent). nil if the job is not in
-- that form (written by an older server or by Faktory: see with_custom).
local function job_head(text, at)
  local raw, p = string.match(text, '^{"jid":"([^"]*)","retry":[^,}]*()', at or 1)
  if not raw then return nil end
  local reserve, q = string.match(text, '^,"reserve_for":(%-?%d+)()', p)
  if reserve then reserve, p = tonumber(reserve), q end
  local custom = nil
  -- (byte 99 is the c of custom: most jobs have none, and no substring is made for them)
  if string.byte(text, p + 2) == 99 and string.sub(text, p, p + 10) == ',"custom":{' then
    custom = {}
    p = p + 11
    for _, name in ipairs(HOOK_KEYS) do
      local key = '"' .. name .. '":'
      if string.sub(text, p, p + #key - 1) == key then
        local value, after = string.match(text, '^"([^"]*)"()', p + #key)
        if value then
          value = json_string(value)
        else
          value, after = string.match(text, '^([^,}]*)()', p + #key)
          if value == 'true' then value = true
          elseif value == 'false' then value = false
          else value = tonumber(value) end  -- a number; nil for null
        end
        custom[name] = value
        if string.byte(text, after) ~= 44 then break end  -- not ',': the object ended
        p = after + 1
      end
    end
  end
  return json_string(raw), reserve, custom
end

-- What the hooks are given of a job: {jid, custom = its hook keys' values, head = true}, or,
-- for a job not in the form above, the decoded job (nil if it has no "custom" object: then
-- it is not the features'). `at`: where the job's text starts in `text`.
local function with_custom(text, at)
  local jid, _, custom = job_head(text, at)
  if jid then
    if custom then return {jid = jid, custom = custom, head = true} end
    return nil
  end
  if not string.find(text, '"custom":', at or 1, true) then return nil end
  local ok, doc = pcall(cjson.decode, at and string.sub(text, at, -2) or text)
  if ok and type(doc) == 'table' and type(doc['custom']) == 'table' then return doc end
  return nil
end

-- The job of a reservation record ('{"rid":N,...,"job":<job>}') as with_custom gives it, and
-- (for a decoded one only: the hooks read no more of the others) the job's JSON text.
local function record_custom(record)
  local at = string.find(record, ',"job":', 1, true)
  if not at then return nil end
  local doc = with_custom(record, at + 7)
  if not doc or doc['head'] then return doc end
  return doc, string.sub(record, at + 7, -2)
end

-- Store one validated job of queue `name` at priority `prio`: enqueue it now (score '') or
-- schedule it (in `scheduled`). `hooks`, from the server process: '' for a job without a
-- custom object (no hook concerns it: its text is not read), '+' for one with a custom
-- object, '<lock name>:<ms>' for a unique one (jobs.unique_name, and how long its lock
-- lasts); a job with a custom object passes the Enterprise hooks first.
-- Returns the refusal ("CODE message") of a hook that refused it (nothing stored), or nil.
-- `list`, `waiting`: the queue's q:<name>[:p<N>] and ff:wait:<name>, as enqueue takes them.
local function push_one(scheduled, queues, prioq, name, prio, job, score, hooks, list, waiting)
  local doc = hooks ~= '' and with_custom(job)
  if doc then
    local refusal = batch_push(doc) or ent_push(doc, string.match(hooks, '^(%x+):(%d+)$'))
    if refusal then return refusal end
    batch_pushed(doc)
  end
  if score ~= '' then
    redis.call('ZADD', scheduled, score, job)
  else
    enqueue(queues, prioq, name, prio, job, 'LPUSH', list, waiting)
  end
  return nil
end

-- ff_push(m, [queue, priority] * m, n, [list, job, score, hooks] * n): store n validated jobs
-- (the PUSHes of a turn, or a PUSHB), each of queue and priority number `list` (1 .. m) of the
-- m given first; score '' enqueues now, otherwise the job waits in `scheduled` until that
-- time; hooks: see push_one. Returns n when every job was stored; otherwise a list of n
-- entries: '' for a stored job, the refusal ("CODE message") of one an Enterprise hook refused.
-- KEYS: scheduled, queues, ff:prioq; per queue and priority 1 .. m: q:<queue>[:p<N>],
-- ff:wait:<queue>. Also the keys of the Enterprise hooks (batch.lua, ent.lua).
local function ff_push(keys, args)
  local scheduled, queues, prioq = keys[1], keys[2], keys[3]
  local m = tonumber(args[1])
  local prios = {tonumber(args[3])}
  for j = 2, m do prios[j] = tonumber(args[1 + 2 * j]) end
  local n = tonumber(args[2 + 2 * m])
  local refused = nil
  for i = 0, n - 1 do
    local b = 3 + 2 * m + i * 4
    local j = m == 1 and 1 or tonumber(args[b])
    local refusal = push_one(scheduled, queues, prioq, args[2 * j], prios[j], args[b + 1],
      args[b + 2], args[b + 3], keys[2 + 2 * j], keys[3 + 2 * j])
    if refusal then
      if not refused then
        refused = {}
        for k = 1, i do refused[k] = '' end
      end
      refused[i + 1] = refusal
    elseif refused then
      refused[i + 1] = ''
    end
  end
  return refused or n
end

--@include cron.lua

-- Is the worker whose hash is `wkey` (ff:w:<wid>) quiet or terminating (it fetches nothing)?
local function stopping(wkey)
  local state = redis.call('HGET', wkey, 'state')
  return state == 'quiet' or state == 'terminate'
end

-- The reservations one call makes: reserve_job gathers them, write_reservations writes them
-- at the end, with one INCRBY of ff:rseq for their tokens, one HSET and one ZADD for all
-- (each Redis command a function makes costs about as much as a reservation's Lua work).
-- `now`: the caller's time string; `default`: the reserve_for of jobs without one.
-- KEYS (the caller's): ff:rseq (`rseq`), ff:res (`res`), working.
local function reservations(rseq, res, working, now, default)
  local now_sec, now_frac = string.match(now, '^(%d+)(%.?%d*)$')
  -- Its array: per reservation the answer, its record's middle and its deadline.
  return {rseq = rseq, res = res, working = working, now = now, now_sec = tonumber(now_sec),
    now_frac = now_frac, default = tonumber(default)}
end

-- Reserve `job` (whose jid is `jid`) for worker `wid` from the call's `now` for `secs`
-- seconds (the job's reserve_for; nil or <= 0: the default; kept within 60..86400), in
-- `acc` (reservations'): its record goes to ff:res, its deadline to `working`, its token is
-- the next of ff:rseq. `lock`: the throttle lock set the reservation takes a lock in, for
-- `lock_timeout` seconds (nil: none); the record then names it second
-- ('{"rid":N,"thr":"<lock set>",...}', written by quote_safe), where ff_ack/ff_fail find it
-- with one anchored match. Returns what ff_fetch returns for a job, {job, token, jid}, whose
-- token write_reservations fills in.
local function reserve_job(acc, wid, secs, jid, job, lock, lock_timeout)
  if secs == nil or secs <= 0 then secs = acc.default end
  if secs < 60 then secs = 60 end
  if secs > 86400 then secs = 86400 end
  -- The record's middle ('"wid":..,"reserved_at":..,"expires_at":..,"job":'), built as a
  -- string (number formatting and cjson.encode are the slow part of a FETCH); the last one
  -- is kept (the FETCHes of a call are mostly of one worker, or of none).
  local middle, expires = acc.middle, acc.expires
  if secs ~= acc.secs or wid ~= acc.wid then
    expires = (acc.now_sec + math.floor(secs)) .. acc.now_frac
    local quoted = string.find(wid, '[%c"\\]') and cjson.encode(wid) or ('"' .. wid .. '"')
    middle = '"wid":' .. quoted .. ',"reserved_at":' .. acc.now .. ',"expires_at":' .. expires ..
      ',"job":'
    acc.secs, acc.wid, acc.middle, acc.expires = secs, wid, middle, expires
  end
  if lock then
    local lapse = acc.now_sec + lock_timeout
    redis.call('ZADD', lock, lapse, jid)
    redis.call('ZADD', THROTTLE_LAPSES_KEY, 'LT', lapse, lock)  -- for ff_throttle_lapsed
    middle = '"thr":"' .. quote_safe(lock) .. '",' .. middle
  end
  local found = {job, 0, jid}
  local n = #acc
  acc[n + 1], acc[n + 2], acc[n + 3] = found, middle, expires
  return found
end

-- Reservation `i` of `acc` gets token `rid`: its answer is filled in; returns its jid and its
-- record ('{"rid":N,' then the middle reserve_job built, then the job).
local function token_record(acc, i, rid)
  local found = acc[3 * i - 2]
  found[2] = rid
  return found[3], '{"rid":' .. rid .. ',' .. acc[3 * i - 1] .. found[1] .. '}'
end

-- Write the reservations gathered in `acc`, and fill in their tokens.
local function write_reservations(acc)
  local n = #acc / 3
  if n == 0 then return end
  local rid = redis.call('INCRBY', acc.rseq, n) - n
  if n == 1 then  -- (no tables for a call of one)
    local jid, record = token_record(acc, 1, rid + 1)
    redis.call('HSET', acc.res, jid, record)
    redis.call('ZADD', acc.working, acc[3], jid)
    return
  end
  local records, deadlines = {}, {}
  for i = 1, n do
    local jid, record = token_record(acc, i, rid + i)
    records[2 * i - 1], records[2 * i] = jid, record
    deadlines[2 * i - 1], deadlines[2 * i] = acc[3 * i], jid
  end
  for i = 1, 2 * n, 1000 do  -- unpack's limit: a few thousand arguments a command
    local last = math.min(i + 999, 2 * n)
    redis.call('HSET', acc.res, unpack(records, i, last))
    redis.call('ZADD', acc.working, unpack(deadlines, i, last))
  end
end

-- One FETCH of ff_fetch: worker `wid`'s FETCH of the queues named args[a] .. args[b], in that
-- order; `where[name]`: the position of a queue's q:<name> in `keys` (its ff:wait:<name>
-- follows it). `acc`: the call's reservations (the caller writes them), `now_number`: its
-- time as a number. `plain`: no quiet worker, paused queue, priority list or throttle anywhere
-- (the caller asked Redis once). Returns its answer, as ff_fetch describes.
local function fetch_one(keys, args, plain, wid, proc_id, acc, now_number, a, b, where)
  local prioq, throttles = keys[3], keys[7]
  local paused = nil
  local throttled = false
  if not plain then
    if wid ~= '' and stopping(WORKER_PREFIX .. wid) then return FETCHED.QUIET end
    paused = {}
    if redis.call('EXISTS', keys[2]) == 1 then  -- the queues asked for, not all paused ones
      for i = a, b do
        if redis.call('SISMEMBER', keys[2], args[i]) == 1 then paused[args[i]] = true end
      end
    end
    throttled = redis.call('EXISTS', throttles) == 1
  end
  local expired = nil  -- jids of expired jobs discarded on the way
  for i = a, b do
    local name = args[i]
    if not (paused and paused[name]) then
      local base = keys[where[name]]  -- q:<name>
      local lock, lock_timeout = nil, nil
      if throttled then
        local spec = redis.call('HGET', throttles, name)
        if spec then lock, lock_timeout = throttle_check(spec, name, wid, acc.now) end
      end
      while lock ~= false do
        local job
        if plain then job = redis.call('RPOP', base) else job = pop(prioq, name, base) end
        if not job then break end
        local jid, reserve, custom = job_head(job)
        local keep = true
        if jid then
          if custom then
            keep = ent_fetch({jid = jid, custom = custom, head = true}, now_number)
          end
        else  -- a job written by an older server or by Faktory: decoded
          local ok, decoded = pcall(cjson.decode, job)
          if ok and type(decoded) == 'table' then
            jid = decoded['jid']
            reserve = tonumber(decoded['reserve_for'])
            if type(decoded['custom']) == 'table' and type(jid) == 'string' then
              keep = ent_fetch(decoded, now_number, job)
            end
          end
        end
        if not keep then
          expired = expired or {}
          expired[#expired + 1] = jid
          -- A long run of expired jobs must not hold Redis (and every other client) for
          -- long: the caller asks again.
          if #expired >= EXPIRED_PER_FETCH then return {FETCHED.MORE, expired} end
        elseif type(jid) ~= 'string' then
          -- Not a job we can track: hand it out unreserved rather than lose it silently.
          return {job, 0, ''}
        else
          local found = reserve_job(acc, wid, reserve, jid, job, lock, lock_timeout)
          if expired then found[4] = expired end
          return found
        end
      end
    end
  end
  local found = FETCHED.EMPTY
  local waited = 0  -- wait on every queue searched (the ones not paused)
  for i = a, b do
    if paused and paused[args[i]] then
      found = FETCHED.SOME_PAUSED
    else
      redis.call('SADD', keys[where[args[i]] + 1], proc_id)
      waited = waited + 1
    end
  end
  if waited == 0 then found = FETCHED.ALL_PAUSED end
  if expired then return {found, expired} end
  return found
end

-- ff_fetch(proc_id, now, default_reserve, m, q1 .. q<m>, n, [wid, count, queue1 .. queue<count>]
-- * n): n FETCHes of server process `proc_id` (the ones it had in one turn of its loop: one call
-- for all, group commit), each of worker `wid` (may be '') and naming `count` of the queues
-- q1 .. q<m> in its order. Each reserves the first job found in its queues (strict order);
-- answered in order, as a list of n answers, each {job, token, jid}, or what it found instead:
-- FETCHED.EMPTY when nothing is there (and the process is registered as waiting on every
-- searched queue), FETCHED.QUIET when the worker is quiet or terminating, FETCHED.ALL_PAUSED
-- when every queue is paused, FETCHED.SOME_PAUSED when nothing is there and some are paused
-- (registered for the others).
-- Enterprise: a queue whose throttle (ff:throttles) is full is skipped (and waited on, as an
-- empty one); expired jobs met on the way are discarded (ent_fetch), and their jids follow
-- the answer: {job, token, jid, {jid...}} or {FETCHED.x, {jid...}}; after EXPIRED_PER_FETCH of
-- them it stops with {FETCHED.MORE, {jid...}} (the caller asks again).
-- KEYS: ff:quiet, paused, ff:prioq, ff:rseq, ff:res, working, ff:throttles; per queue q1 ..
-- q<m>: q:<q>, ff:wait:<q>. Also ff:w:<wid> (a worker's state, when ff:quiet exists),
-- q:<q>:p<N> of the queues ff:prioq lists, and the keys of ent.lua (unique locks, throttle
-- locks, ff:expired).
local function ff_fetch(keys, args)
  -- With no quiet worker, paused queue, priority list or throttle anywhere (the usual case),
  -- one call answers all four questions.
  local plain = redis.call('EXISTS', keys[1], keys[2], keys[3], keys[7]) == 0
  local acc = reservations(keys[4], keys[5], keys[6], args[2], args[3])
  local now_number = tonumber(args[2])
  local m = tonumber(args[4])
  local where = {}
  for j = 1, m do where[args[4 + j]] = 6 + 2 * j end
  local out = {}
  local a = 6 + m
  for f = 1, tonumber(args[5 + m]) do
    local count = tonumber(args[a + 1])
    out[f] = fetch_one(keys, args, plain, args[a], args[1], acc, now_number, a + 2,
      a + 1 + count, where)
    a = a + 2 + count
  end
  write_reservations(acc)
  return out
end

-- ff_push_to(queue, wid, reserve_for, default_reserve, job, jid, now): PUSH of a job that this
-- process has a FETCH of worker `wid` parked for (the job is due now, of priority 5 and has no
-- custom object; the caller checked): if `queue` is empty and not paused and the worker is not
-- quiet, the job is reserved for that FETCH at once, as ff_fetch would (returns {job, token,
-- jid}: one call instead of a push, a wake-up and a FETCH). Otherwise it is enqueued as ff_push
-- enqueues (waking the waiters) and 0 is returned.
-- A queue with a throttle (ff:throttles) is never handed over: the job is enqueued, and the
-- woken FETCH takes the throttle's rules.
-- KEYS: queues, ff:prioq, paused, ff:quiet, ff:rseq, ff:res, working, ff:throttles, ff:w:<wid>,
-- q:<queue>, ff:wait:<queue>.
local function ff_push_to(keys, args)
  local queues, prioq, paused, quiet = keys[1], keys[2], keys[3], keys[4]
  local name, wid, job = args[1], args[2], args[5]
  local take = redis.call('LLEN', keys[10]) == 0 and redis.call('SISMEMBER', prioq, name) == 0
    and redis.call('SISMEMBER', paused, name) == 0 and redis.call('HEXISTS', keys[8], name) == 0
  if take and wid ~= '' and redis.call('EXISTS', quiet) == 1 then
    take = not stopping(keys[9])
  end
  if not take then
    enqueue(queues, prioq, name, 5, job, 'LPUSH', keys[10], keys[11])
    return 0
  end
  redis.call('SADD', queues, name)
  local acc = reservations(keys[5], keys[6], keys[7], args[7], args[4])
  local found = reserve_job(acc, wid, tonumber(args[3]), args[6], job)
  write_reservations(acc)
  return found
end

-- ff_ack(n, [jid, plain] * n): finish n reservations successfully (the ACKs a server process
-- had in one turn of its loop: one call for all of them). Returns a list of n outcomes:
-- OUTCOME.DONE, or OUTCOME.GONE if there is no such reservation. plain '1': the caller fetched
-- the job and saw no custom object in it: unless throttles are configured (the record may hold
-- a throttle lock), its record is not read, and the plain ones are deleted together, first.
-- The counters move once for all of them.
-- KEYS: ff:res, working, processed, ff:throttles, processed:<day>; also the keys of the
-- Enterprise hooks.
local function ff_ack(keys, args)
  local res, working = keys[1], keys[2]
  local n = tonumber(args[1])
  local unthrottled = redis.call('EXISTS', keys[4]) == 0
  -- out[i]: ACK i's outcome; 0 for a plain one (a jid's first) until its HDEL is done
  local out, jids = {}, {}
  local seen = n > 1 and {} or nil
  if unthrottled then
    for i = 1, n do
      local jid = args[2 * i]
      if args[2 * i + 1] == '1' and not (seen and seen[jid]) then
        if seen then seen[jid] = true end
        out[i] = 0
        jids[#jids + 1] = jid
      end
    end
  end
  local done = jids  -- the jids whose reservation ended (all the plain ones, usually)
  if #jids > 0 then
    local deleted = 0
    for i = 1, #jids, 1000 do  -- unpack's limit: a few thousand arguments a command
      deleted = deleted + redis.call('HDEL', res, unpack(jids, i, math.min(i + 999, #jids)))
    end
    if deleted == #jids then
      for i = 1, n do
        if out[i] == 0 then out[i] = OUTCOME.DONE end
      end
    else
      -- Some had no reservation: the ones without a deadline (a record and its deadline come
      -- and go together; the deadlines of the others go below).
      done = {}
      local k = 0
      for i = 1, #jids, 1000 do
        local part = redis.call('ZMSCORE', working, unpack(jids, i, math.min(i + 999, #jids)))
        for _, score in ipairs(part) do
          repeat k = k + 1 until out[k] == 0
          if score then
            out[k] = OUTCOME.DONE
            done[#done + 1] = args[2 * k]
          else
            out[k] = OUTCOME.GONE
          end
        end
      end
    end
  end
  for i = 1, n do
    if not out[i] then
      local jid = args[2 * i]
      local record = redis.call('HGET', res, jid)
      if record then
        redis.call('HDEL', res, jid)
        out[i] = OUTCOME.DONE
        done[#done + 1] = jid
        local doc, text = record_custom(record)
        if doc then
          batch_done(doc, 'ack')
          ent_done(doc, 'ack', text)
        end
        throttle_release(record, jid)
      else
        out[i] = OUTCOME.GONE
      end
    end
  end
  if #done > 0 then
    for i = 1, #done, 1000 do
      redis.call('ZREM', working, unpack(done, i, math.min(i + 999, #done)))
    end
    redis.call('INCRBY', keys[3], #done)
    redis.call('INCRBY', keys[5], #done)
  end
  return out
end

-- ff_fail(jid, token, outcome, payload, score): end a reservation as failed. The caller
-- computed `payload` (the job with its failure) from the reservation with this token; if the
-- stored reservation has another token (or token is ''), nothing changes and
-- {OUTCOME.CHANGED, record} is returned so the caller can compute again. outcome: retry | dead
-- | discard. Returns {OUTCOME.DONE}, {OUTCOME.GONE} (no such reservation) or that.
-- KEYS: ff:res, working, processed, failures, retries, dead, processed:<day>, failures:<day>;
-- also the keys of the Enterprise hooks.
local function ff_fail(keys, args)
  local jid, rid = args[1], args[2]
  local record = redis.call('HGET', keys[1], jid)
  if not record then return {OUTCOME.GONE} end
  local prefix = '{"rid":' .. rid .. ','
  if rid == '' or string.sub(record, 1, #prefix) ~= prefix then
    return {OUTCOME.CHANGED, record}
  end
  redis.call('HDEL', keys[1], jid)
  redis.call('ZREM', keys[2], jid)
  for _, counter in ipairs({keys[3], keys[4], keys[7], keys[8]}) do redis.call('INCR', counter) end
  local outcome = args[3]
  if outcome == 'retry' then
    redis.call('ZADD', keys[5], args[5], args[4])
  elseif outcome == 'dead' then
    redis.call('ZADD', keys[6], args[5], args[4])
  end
  local doc, text = record_custom(record)
  if doc then
    batch_done(doc, outcome)
    ent_done(doc, outcome, text)
  end
  throttle_release(record, jid)
  return {OUTCOME.DONE}
end

-- ff_release(jid, queue, priority, job): undo a reservation whose client left before the job
-- could be sent: the job goes back to the end its queue is fetched from, so it runs next.
-- OUTCOME.DONE, or OUTCOME.GONE if there was no such reservation.
-- KEYS: ff:res, working, queues, ff:prioq, q:<queue>[:p<N>], ff:wait:<queue>.
local function ff_release(keys, args)
  local record = redis.call('HGET', keys[1], args[1])
  if not record then return OUTCOME.GONE end
  redis.call('HDEL', keys[1], args[1])
  redis.call('ZREM', keys[2], args[1])
  throttle_release(record, args[1])
  enqueue(keys[3], keys[4], args[2], tonumber(args[3]), args[4], 'RPUSH', keys[5], keys[6])
  return OUTCOME.DONE
end

-- ff_expired(now, limit): reservations whose time is up, as {jid, record, jid, record, ...}
-- (read by the reaper, which then fails each through ff_fail with its token). Drops `working`
-- entries with no record, except ones that look like data (Faktory's reservation JSON as the
-- member): those come with record '' for the reaper to set aside. KEYS: working, ff:res.
local function ff_expired(keys, args)
  local working, res = keys[1], keys[2]
  local jids = redis.call('ZRANGEBYSCORE', working, '-inf', args[1], 'LIMIT', 0, tonumber(args[2]))
  local out = {}
  for _, jid in ipairs(jids) do
    local record = redis.call('HGET', res, jid)
    if record or string.sub(jid, 1, 1) == '{' then
      out[#out + 1] = jid
      out[#out + 1] = record or ''
    else
      redis.call('ZREM', working, jid)
    end
  end
  return out
end

-- ff_set_aside(key, record, dead_score, entry, reason, now): move one record the server cannot
-- use out of the way. KEYS[1] is the sorted set holding it (key: the member) or `working` (key:
-- the jid; record: its ff:res record as the caller read it, '' if it had none). With an entry
-- (the job with a failure saying why) it goes to `dead`; without, the raw record is kept in the
-- ff:bad stream with the reason. OUTCOME.DONE, or OUTCOME.CHANGED if the record had changed or
-- gone. KEYS: <source>, working, ff:res, dead, ff:bad.
local function ff_set_aside(keys, args)
  local source, working, res, dead, bad = keys[1], keys[2], keys[3], keys[4], keys[5]
  local key, raw = args[1], args[1]
  if source == working then
    local record = redis.call('HGET', res, key)
    if (record or '') ~= args[2] then return OUTCOME.CHANGED end
    if redis.call('ZREM', working, key) == 0 and not record then return OUTCOME.CHANGED end
    if record then
      redis.call('HDEL', res, key)
      raw = record
    end
  elseif redis.call('ZREM', source, key) == 0 then
    return OUTCOME.CHANGED
  end
  if args[4] ~= '' then
    redis.call('ZADD', dead, args[3], args[4])
  elseif source == working then
    redis.call('XADD', bad, '*', 'source', source, 'reason', args[5], 'at', args[6],
      'record', raw, 'jid', key)
  else
    redis.call('XADD', bad, '*', 'source', source, 'reason', args[5], 'at', args[6],
      'record', raw)
  end
  return OUTCOME.DONE
end

-- ff_enqueue_from(n, [member, queue, priority, job] * n): move entries of a sorted set
-- (scheduled, retries, dead) to their queues as `job` (the caller applied jobs.requeue). Each
-- moves only if it is still in the set, so concurrent movers never enqueue one entry twice.
-- Returns how many moved.
-- KEYS: <set>, queues, ff:prioq; per entry: q:<queue>[:p<N>], ff:wait:<queue>.
local function ff_enqueue_from(keys, args)
  local set, queues, prioq = keys[1], keys[2], keys[3]
  local n, moved = tonumber(args[1]), 0
  for i = 0, n - 1 do
    local b = 2 + i * 4
    if redis.call('ZREM', set, args[b]) == 1 then
      enqueue(queues, prioq, args[b + 1], tonumber(args[b + 2]), args[b + 3], 'LPUSH',
        keys[4 + 2 * i], keys[5 + 2 * i])
      moved = moved + 1
    end
  end
  return moved
end

-- ff_hello(proc_id, max_conns, wid, hostname, pid, labels, v, now, addr): count an identified
-- connection and register its worker (addr: the client's address, for the Busy page).
-- Returns 0, or the would-be connection count when that exceeds max_conns (nothing is
-- changed then). KEYS: ff:conns, ff:wids, ff:w:<wid>.
local function ff_hello(keys, args)
  local conns, wids = keys[1], keys[2]
  local total = 0
  for _, c in ipairs(redis.call('HVALS', conns)) do total = total + tonumber(c) end
  if total + 1 > tonumber(args[2]) then return total + 1 end
  redis.call('HINCRBY', conns, args[1], 1)
  local wid = args[3]
  if wid ~= '' then
    local wkey = WORKER_PREFIX .. wid
    if redis.call('EXISTS', wkey) == 0 then
      redis.call('HSET', wkey, 'wid', wid, 'hostname', args[4], 'pid', args[5], 'labels', args[6],
        'v', args[7], 'started_at', args[8], 'state', 'running', 'rss_kb', 0, 'conns', 0,
        'addr', args[9])
      redis.call('ZADD', wids, args[8], wid)
    end
    redis.call('HINCRBY', wkey, 'conns', 1)
  end
  return 0
end

-- Forget worker `wid` (its hash, heartbeat and quiet flag). Touches ff:w:<wid>.
local function forget_worker(wids, quiet, wid)
  redis.call('DEL', WORKER_PREFIX .. wid)
  redis.call('ZREM', wids, wid)
  redis.call('SREM', quiet, wid)
end

-- ff_bye(proc_id, wid): an identified connection closed; the worker goes when its last one does.
-- KEYS: ff:conns, ff:wids, ff:quiet, ff:w:<wid>.
local function ff_bye(keys, args)
  redis.call('HINCRBY', keys[1], args[1], -1)
  local wid = args[2]
  if wid ~= '' then
    local wkey = WORKER_PREFIX .. wid
    if redis.call('EXISTS', wkey) == 1 and redis.call('HINCRBY', wkey, 'conns', -1) <= 0 then
      forget_worker(keys[2], keys[3], wid)
    end
  end
  return 0
end

local STATE_ORDER = {running = 0, quiet = 1, terminate = 2}

-- Move a worker's state forward only (running -> quiet -> terminate); a worker that is not
-- running is listed in `quiet` (ff:quiet; every heartbeat says so again). Touches ff:w:<wid>.
local function advance(quiet, wid, state)
  local wkey = WORKER_PREFIX .. wid
  local current = redis.call('HGET', wkey, 'state') or 'running'
  if STATE_ORDER[state] and STATE_ORDER[state] > (STATE_ORDER[current] or 0) then
    redis.call('HSET', wkey, 'state', state)
    current = state
  end
  if current ~= 'running' then redis.call('SADD', quiet, wid) end
  return current
end

-- ff_beat(wid, now, state, rss_kb): heartbeat; returns the worker's state, or false if unknown.
-- KEYS: ff:wids, ff:quiet, ff:w:<wid>.
local function ff_beat(keys, args)
  local wid = args[1]
  local wkey = WORKER_PREFIX .. wid
  if redis.call('EXISTS', wkey) == 0 then return false end
  redis.call('ZADD', keys[1], args[2], wid)
  if args[4] ~= '' then redis.call('HSET', wkey, 'rss_kb', args[4]) end
  return advance(keys[2], wid, args[3])
end

-- ff_signal(state, cursor, count, wid...): quiet or terminate workers, as from the web UI;
-- wid '*': the registered ones of one ZSCAN page of ff:wids (about `count` from `cursor`).
-- Returns {next cursor ('0': done), how many were signalled}.
-- KEYS: ff:wids, ff:quiet; per wid: ff:w:<wid>.
local function ff_signal(keys, args)
  local wids, cursor = {}, '0'
  for i = 4, #args do
    if args[i] == '*' then
      local page = redis.call('ZSCAN', keys[1], args[2], 'COUNT', args[3])
      cursor, wids = page[1], {}
      for j = 1, #page[2], 2 do wids[#wids + 1] = page[2][j] end
      break
    end
    wids[#wids + 1] = args[i]
  end
  local n = 0
  for _, wid in ipairs(wids) do
    if redis.call('EXISTS', WORKER_PREFIX .. wid) == 1 then
      advance(keys[2], wid, args[1])
      n = n + 1
    end
  end
  return {cursor, n}
end

-- Is `s` well-formed UTF-8 (as Python's strict decoder sees it)?
local function utf8_ok(s)
  if not string.find(s, '[\128-\255]') then return true end
  local i, n = 1, #s
  while i <= n do
    local c = string.byte(s, i)
    local len, lo, hi = 1, 128, 191
    if c >= 128 then
      if c >= 194 and c <= 223 then len = 2
      elseif c >= 224 and c <= 239 then
        len = 3
        if c == 224 then lo = 160 elseif c == 237 then hi = 159 end
      elseif c >= 240 and c <= 244 then
        len = 4
        if c == 240 then lo = 144 elseif c == 244 then hi = 143 end
      else return false end
      for j = i + 1, i + len - 1 do
        local b = string.byte(s, j)
        if not b or b < 128 or b > 191 or (j == i + 1 and (b < lo or b > hi)) then return false end
      end
    end
    i = i + len
  end
  return true
end

-- ff_reap_workers(cutoff, limit): forget workers whose last heartbeat is older than cutoff and tell
-- every process to close their connections. A wid that is not UTF-8 (never one a client sent:
-- HELLO is JSON) is forgotten without a broadcast the processes could not decode. Returns how
-- many were forgotten: at most `limit` (the caller asks again when it is that many).
-- KEYS: ff:wids, ff:quiet; also ff:w:<wid> of each (read from ff:wids).
-- Publishes on CONTROL_CHANNEL.
local function ff_reap_workers(keys, args)
  local wids = redis.call('ZRANGEBYSCORE', keys[1], '-inf', '(' .. args[1], 'LIMIT', 0, args[2])
  for _, wid in ipairs(wids) do
    forget_worker(keys[1], keys[2], wid)
    if utf8_ok(wid) then redis.call('PUBLISH', CONTROL_CHANNEL, 'reap ' .. wid) end
  end
  return #wids
end

-- ff_process_gone(proc_id): a server process ended; drop its connection count and keep its
-- command count in the '-' field. KEYS: ff:conns, ff:cmds.
local function ff_process_gone(keys, args)
  redis.call('HDEL', keys[1], args[1])
  local cmds = redis.call('HGET', keys[2], args[1])
  if cmds then
    redis.call('HINCRBY', keys[2], '-', cmds)
    redis.call('HDEL', keys[2], args[1])
  end
  return 0
end

-- ff_info(cursor, count): everything INFO reports that lives in Redis, the queue sizes of one
-- SSCAN page (about `count` queues from `cursor`) of `queues`: {next cursor ('0': the last
-- page), {processed, failures, scheduled, retries, dead, working, workers, connections,
-- commands, {task fields...}, {queue, size, ...}, expired}}.
-- KEYS: processed, failures, scheduled, retries, dead, working, ff:wids, ff:conns, ff:cmds,
-- ff:tasks, queues, ff:prioq, ff:expired; also the lists of the queues of the page.
local function ff_info(keys, args)
  local conns, cmds = 0, 0
  for _, c in ipairs(redis.call('HVALS', keys[8])) do conns = conns + tonumber(c) end
  for _, c in ipairs(redis.call('HVALS', keys[9])) do cmds = cmds + tonumber(c) end
  local page = redis.call('SSCAN', keys[11], args[1], 'COUNT', args[2])
  local queues = {}
  for _, name in ipairs(page[2]) do
    queues[#queues + 1] = name
    queues[#queues + 1] = qsize(keys[12], name)
  end
  return {page[1], {
    tonumber(redis.call('GET', keys[1]) or 0),
    tonumber(redis.call('GET', keys[2]) or 0),
    redis.call('ZCARD', keys[3]), redis.call('ZCARD', keys[4]),
    redis.call('ZCARD', keys[5]), redis.call('ZCARD', keys[6]),
    redis.call('ZCARD', keys[7]), conns, cmds,
    redis.call('HGETALL', keys[10]), queues,
    tonumber(redis.call('GET', keys[13]) or 0),
  }}
end

-- ff_flush(): FLUSHDB, but the live registry of processes, connections and workers survives
-- (they are still connected); everything about jobs and queues is gone. Publishes 'flush' on
-- CONTROL_CHANNEL so processes drop what they cached about empty queues.
-- KEYS: ff:conns, ff:cmds, ff:tasks (kept), ff:wids, ff:quiet (kept, with the ff:w:<wid> of
-- each registered worker), ff:throttles, ff:cron:entries (kept: configuration); FLUSHDB
-- drops every other key.
local function ff_flush(keys, args)
  local wids, quiet = keys[4], keys[5]
  local keep = {}
  for _, i in ipairs({1, 2, 3, 6, 7}) do keep[keys[i]] = redis.call('HGETALL', keys[i]) end
  local beats = redis.call('ZRANGE', wids, 0, -1, 'WITHSCORES')
  local quiet_wids = redis.call('SMEMBERS', quiet)
  local workers = {}
  for i = 1, #beats, 2 do workers[beats[i]] = redis.call('HGETALL', WORKER_PREFIX .. beats[i]) end
  redis.call('FLUSHDB', 'ASYNC')  -- the data is freed in the background, not in this call
  for k, fields in pairs(keep) do
    if #fields > 0 then redis.call('HSET', k, unpack(fields)) end
  end
  for i = 1, #beats, 2 do
    redis.call('ZADD', wids, beats[i + 1], beats[i])
    local fields = workers[beats[i]]
    if #fields > 0 then redis.call('HSET', WORKER_PREFIX .. beats[i], unpack(fields)) end
  end
  if #quiet_wids > 0 then redis.call('SADD', quiet, unpack(quiet_wids)) end
  redis.call('PUBLISH', CONTROL_CHANNEL, 'flush')
  return 0
end

-- ff_queue(sub, cursor, count, names...): QUEUE PAUSE | RESUME | REMOVE; name '*': the queues
-- of one SSCAN page of `queues` (about `count` from `cursor`). PAUSE ignores unknown queues.
-- Returns {next cursor ('0': done), how many queues were named}.
-- KEYS: queues, paused, ff:prioq; per name: q:<name> (REMOVE: and its q:<name>:p<N>).
local function ff_queue(keys, args)
  local queues, paused, prioq = keys[1], keys[2], keys[3]
  local sub = args[1]
  local names, cursor = {}, '0'
  for i = 4, #args do
    if args[i] == '*' then
      local page = redis.call('SSCAN', queues, args[2], 'COUNT', args[3])
      cursor, names = page[1], page[2]
      break
    end
    names[#names + 1] = args[i]
  end
  for _, name in ipairs(names) do
    if sub == 'PAUSE' then
      if redis.call('SISMEMBER', queues, name) == 1 then redis.call('SADD', paused, name) end
    elseif sub == 'RESUME' then
      redis.call('SREM', paused, name)
    elseif sub == 'REMOVE' then
      for p = 1, 9 do redis.call('UNLINK', qkey(name, p)) end
      redis.call('SREM', queues, name)
      redis.call('SREM', paused, name)
      redis.call('SREM', prioq, name)
    end
  end
  return {cursor, #names}
end

-- ff_queue_heads(names...): for each queue, the job that has waited longest in each of its
-- priority lists (the caller picks the oldest), for QUEUE LATENCY.
-- KEYS: ff:prioq; per name: q:<name> (and its q:<name>:p<N> when ff:prioq lists it).
local function ff_queue_heads(keys, args)
  local prioq = keys[1]
  local out = {}
  for i = 1, #args do
    local heads = {}
    local oldest = redis.call('LINDEX', QUEUE_PREFIX .. args[i], -1)
    if oldest then heads[#heads + 1] = oldest end
    if redis.call('SISMEMBER', prioq, args[i]) == 1 then
      for p = 1, 9 do
        if p ~= 5 then
          local job = redis.call('LINDEX', qkey(args[i], p), -1)
          if job then heads[#heads + 1] = job end
        end
      end
    end
    out[i] = heads
  end
  return out
end

-- Does `member` (a job's JSON) name one of the jids `wanted` (a table jid -> true) as
-- '"jid":"<jid>"', as Faktory's MUTATE matches? Each occurrence is looked up once.
local function names_a_jid(member, wanted)
  local at = 1
  while true do
    local _, e = string.find(member, '"jid":"', at, true)
    if not e then return false end
    local jid = string.match(member, '^[^"]*', e + 1)
    if string.find(jid, '\\', 1, true) then
      local ok, value = pcall(cjson.decode, '"' .. jid .. '"')
      if ok then jid = value end
    end
    if wanted[jid] then return true end
    at = e + 1
  end
end

-- One ZSCAN page (about `count` entries from `cursor`) of sorted set `set`: the members a
-- MUTATE filter selects, and the next cursor ('0': the end). mode 'all': every entry; 'jids':
-- entries naming one of the jids `extra` (names_a_jid); 'glob': ZSCAN MATCH pattern, and if
-- extra[1] is given the entry must also contain it ('"jobtype":"<type>"'). The caller asks
-- page after page: no call holds Redis for a whole set.
local function selected(set, cursor, count, mode, pattern, extra)
  local reply
  if mode == 'glob' then
    reply = redis.call('ZSCAN', set, cursor, 'MATCH', pattern, 'COUNT', count)
  else
    reply = redis.call('ZSCAN', set, cursor, 'COUNT', count)
  end
  local wanted = {}
  if mode == 'jids' then
    for _, jid in ipairs(extra) do wanted[jid] = true end
  end
  local found = {}
  local items = reply[2]
  for i = 1, #items, 2 do
    local member, keep = items[i], true
    if mode == 'jids' then
      keep = names_a_jid(member, wanted)
    elseif mode == 'glob' and extra[1] then
      keep = string.find(member, extra[1], 1, true) ~= nil
    end
    if keep then found[#found + 1] = member end
  end
  return found, reply[1]
end

-- ff_mutate(cmd, dead_score, cursor, count, mode, pattern, extra...): MUTATE clear | discard |
-- kill on the sorted set KEYS[1], over one page of entries selected as `selected` says
-- (requeue: ff_mutate_select, then ff_enqueue_from). Returns {next cursor ('0': done), how
-- many entries it removed (clear: all at once, 0)}. KEYS: <target>, dead.
local function ff_mutate(keys, args)
  local target, dead = keys[1], keys[2]
  local cmd, dead_score = args[1], args[2]
  if cmd == 'clear' then
    redis.call('UNLINK', target)
    return {'0', 0}
  elseif cmd ~= 'discard' and cmd ~= 'kill' then
    return redis.error_reply('ff_mutate: no such command: ' .. cmd)
  end
  local extra = {}
  for i = 7, #args do extra[#extra + 1] = args[i] end
  local found, cursor = selected(target, args[3], args[4], args[5], args[6], extra)
  local n = 0
  for _, member in ipairs(found) do
    if redis.call('ZREM', target, member) == 1 then
      n = n + 1
      if cmd == 'kill' then redis.call('ZADD', dead, dead_score, member) end
    end
  end
  return {cursor, n}
end

-- ff_mutate_select(cursor, count, mode, pattern, extra...): one page of the members of the
-- sorted set KEYS[1] a MUTATE filter selects (see `selected`), for a requeue: {next cursor,
-- {member...}}. KEYS: <target>.
local function ff_mutate_select(keys, args)
  local extra = {}
  for i = 5, #args do extra[#extra + 1] = args[i] end
  local found, cursor = selected(keys[1], args[1], args[2], args[3], args[4], extra)
  return {cursor, found}
end

-- ff_migrate_reservation(old_member, jid, record, score): replace a Faktory-format `working`
-- entry (the reservation JSON as member) by ours (jid member, record in ff:res).
-- OUTCOME.DONE, or OUTCOME.GONE if the old entry was not there. KEYS: working, ff:res.
local function ff_migrate_reservation(keys, args)
  if redis.call('ZREM', keys[1], args[1]) == 0 then return OUTCOME.GONE end
  redis.call('HSET', keys[2], args[2], args[3])
  redis.call('ZADD', keys[1], args[4], args[2])
  return OUTCOME.DONE
end

-- ff_migrate_queue(limit): Faktory <= 1.9 kept queue <name> in a list under its bare name; 1.10 and
-- we use q:<name>. Move it, older jobs (1.9's) to the right, the end FETCH pops first. Only a
-- list moves: a 1.9 queue named like one of Faktory's other keys could not have worked.
-- Onto an existing q:<name>, at most `limit` jobs a call. Returns the number of jobs moved
-- (the caller asks again while it is `limit`). KEYS: <name>, q:<name>.
local function ff_migrate_queue(keys, args)
  local bare, prefixed = keys[1], keys[2]
  if redis.call('TYPE', bare)['ok'] ~= 'list' then return 0 end
  local n = redis.call('LLEN', bare)
  if redis.call('EXISTS', prefixed) == 0 then
    redis.call('RENAME', bare, prefixed)
    return n
  end
  n = math.min(n, tonumber(args[1]))
  for _ = 1, n do redis.call('LMOVE', bare, prefixed, 'LEFT', 'RIGHT') end
  return n
end

-- ff_reservations(limit): up to `limit` reservation records, soonest to expire first (for the
-- web UI's jobs in progress). KEYS: working, ff:res.
local function ff_reservations(keys, args)
  local jids = redis.call('ZRANGE', keys[1], 0, tonumber(args[1]) - 1)
  if #jids == 0 then return {} end
  return redis.call('HMGET', keys[2], unpack(jids))
end

-- ff_workers(cursor, count): the registered workers of one ZSCAN page of ff:wids (about
-- `count` from `cursor`), each as a flat field/value list: {next cursor ('0': the last page),
-- {worker...}}. KEYS: ff:wids; also the ff:w:<wid> of each.
local function ff_workers(keys, args)
  local page = redis.call('ZSCAN', keys[1], args[1], 'COUNT', args[2])
  local out = {}
  for i = 1, #page[2], 2 do
    out[#out + 1] = redis.call('HGETALL', WORKER_PREFIX .. page[2][i])
  end
  return {page[1], out}
end

-- web UI ------------------------------------------------------------------------------------
-- Read-mostly helpers for the web UI (web/). Sorted-set entries are named by (score, jid): the
-- score string exactly as Redis returned it, and the entry's JSON containing '"jid":"<jid>"'.

-- Does member `m` sort before `prefix` in a sorted set's order of members of one score (bytes,
-- as memcmp), by its first #prefix bytes? (One that starts with `prefix` does not.)
local function sorts_before(m, prefix)
  for i = 1, #prefix do
    local a, b = string.byte(m, i), string.byte(prefix, i)
    if a ~= b then return a == nil or a < b end
  end
  return false
end

-- Members of `set` with exactly `score` whose JSON names `jid` ('"jid":"<jid>"'), reading about
-- `budget` members at most: however many share the score, no call reads them all. Members of
-- one score are in byte order, and a job as this server and Faktory write it begins
-- '{"jid":"<jid>"': from '' finds those by a binary search over the score's ranks (about
-- log2(n) members read). If there is none, the others are read a page at a time from offset
-- `from` ('0' first) among the members of that score, for the jid anywhere in them, until a
-- page has some. Returns the members found, the offset to go on from ('' = done: found, or
-- none left) and how many members were read (at least 1).
local function entries_at(set, score, jid, from, budget)
  local lo = redis.call('ZCOUNT', set, '-inf', '(' .. score)
  local hi = redis.call('ZCOUNT', set, '-inf', score)
  local found, read = {}, 1
  if hi <= lo then return found, '', read end
  if from == '' then
    local prefix = '{"jid":"' .. jid .. '"'
    local a, b = lo, hi
    while a < b do
      local mid = math.floor((a + b) / 2)
      read = read + 1
      if sorts_before(redis.call('ZRANGE', set, mid, mid)[1], prefix) then
        a = mid + 1
      else
        b = mid
      end
    end
    -- those that start with `prefix` follow each other from rank `a` (one, as a rule)
    while a < hi do
      local m = redis.call('ZRANGE', set, a, a)[1]
      read = read + 1
      if string.sub(m, 1, #prefix) ~= prefix then break end
      found[#found + 1] = m
      a = a + 1
      if read >= budget then break end
    end
    if #found > 0 then return found, '', read end
    from = '0'
  end
  local needle = '"jid":"' .. jid .. '"'
  local at = lo + tonumber(from)
  while at < hi do
    local ms = redis.call('ZRANGE', set, at, math.min(hi, at + math.max(1, budget - read)) - 1)
    read = read + #ms
    at = at + #ms
    for _, m in ipairs(ms) do
      if string.find(m, needle, 1, true) then found[#found + 1] = m end
    end
    if #found > 0 then return found, '', read end
    if read >= budget then break end
  end
  if at >= hi then return found, '', read end
  return found, tostring(at - lo), read
end

-- For ff_web_set_get and ff_web_set_remove: each entry (score, jid, from) of `args` from index
-- `first` on, its members found (entries_at) handed to `each(member, score)`, while the call has
-- read fewer than `budget` members (the first entry is always looked at). Returns the entries
-- to look at again, as {score, jid, from, ...}.
local function named_entries(set, args, first, budget, each)
  local read, again = 0, {}
  for i = first, #args - 2, 3 do
    local score, jid, from = args[i], args[i + 1], args[i + 2]
    if i > first and read >= budget then
      again[#again + 1] = score
      again[#again + 1] = jid
      again[#again + 1] = from
    else
      local found, next_from, n = entries_at(set, score, jid, from, budget - read)
      read = read + n
      for _, m in ipairs(found) do each(m, score) end
      if next_from ~= '' then
        again[#again + 1] = score
        again[#again + 1] = jid
        again[#again + 1] = next_from
      end
    end
  end
  return again
end

-- ff_web_set_page(offset, count): {size, {member, score, ...}} in score order. KEYS: <set>.
local function ff_web_set_page(keys, args)
  local offset = tonumber(args[1])
  local stop = offset + tonumber(args[2]) - 1
  return {redis.call('ZCARD', keys[1]), redis.call('ZRANGE', keys[1], offset, stop, 'WITHSCORES')}
end

-- ff_web_set_get(budget, [score, jid, from] * n): the members so named (entries_at; from ''
-- the first time), reading about `budget` members in all. Returns {{member, score, ...}, {score,
-- jid, from, ...}}: the members found (score as given), and the entries to ask for again, with
-- the offset to go on from. KEYS: <set>.
local function ff_web_set_get(keys, args)
  local out = {}
  local again = named_entries(keys[1], args, 2, tonumber(args[1]), function(m, score)
    out[#out + 1] = m
    out[#out + 1] = score
  end)
  return {out, again}
end

-- ff_web_set_remove(action, dead_score, budget, [score, jid, from] * n): delete the named
-- entries (as ff_web_set_get finds them), or with action 'kill' move them to `dead` with
-- dead_score. Returns {how many moved, {score, jid, from, ...}: the entries to ask for again}.
-- KEYS: <set>, dead.
local function ff_web_set_remove(keys, args)
  local set, dead, kill, n = keys[1], keys[2], args[1] == 'kill', 0
  local again = named_entries(set, args, 4, tonumber(args[3]), function(m)
    if redis.call('ZREM', set, m) == 1 then
      n = n + 1
      if kill then redis.call('ZADD', dead, args[2], m) end
    end
  end)
  return {n, again}
end

-- ff_web_set_filter(cursor, scan_cap, want, jobtype, queue, text): ZSCAN from `cursor` for
-- entries with that jobtype and queue ('' = any) containing `text` (lower case, '' = any),
-- stopping after about scan_cap entries (store.WEB_SET_SCAN at most: a filter's cap of more is
-- scanned over several calls, each from the cursor the last returned) or once `want` matched.
-- Returns {next_cursor ('0' = scanned everything), scanned, {member, score, ...}}. KEYS: <set>.
local function ff_web_set_filter(keys, args)
  local set, cursor, cap, want = keys[1], args[1], tonumber(args[2]), tonumber(args[3])
  local jobtype, queue, text = args[4], args[5], args[6]
  local jt = jobtype ~= '' and ('"jobtype":"' .. jobtype .. '"') or nil
  local qu = queue ~= '' and ('"queue":"' .. queue .. '"') or nil
  local out, scanned, matched = {}, 0, 0
  repeat
    local reply = redis.call('ZSCAN', set, cursor, 'COUNT', 100)
    cursor = reply[1]
    local items = reply[2]
    for i = 1, #items, 2 do
      local m = items[i]
      scanned = scanned + 1
      if (not jt or string.find(m, jt, 1, true)) and (not qu or string.find(m, qu, 1, true))
          and (text == '' or string.find(string.lower(m), text, 1, true)) then
        out[#out + 1] = m
        out[#out + 1] = items[i + 1]
        matched = matched + 1
      end
    end
  until cursor == '0' or scanned >= cap or matched >= want
  return {cursor, scanned, out}
end

-- Priorities of a queue in the order FETCH takes them.
local function fetch_order(prioq, name)
  if redis.call('SISMEMBER', prioq, name) == 0 then return {5} end
  return {9, 8, 7, 6, 5, 4, 3, 2, 1}
end

-- ff_web_queue_page(name, offset, count): {size, {priority, job, ...}}: the queue's jobs over
-- all its priority lists in the order they will be fetched, skipping `offset` of them.
-- KEYS: ff:prioq, q:<name> (and its q:<name>:p<N> when ff:prioq lists it).
local function ff_web_queue_page(keys, args)
  local name, skip, left = args[1], tonumber(args[2]), tonumber(args[3])
  local out, total = {}, 0
  for _, p in ipairs(fetch_order(keys[1], name)) do
    local key = qkey(name, p)
    local len = redis.call('LLEN', key)
    total = total + len
    if left > 0 and skip < len then
      -- The next job to run is at the right end (index -1).
      local jobs = redis.call('LRANGE', key, -(skip + left), -(skip + 1))
      for i = #jobs, 1, -1 do
        out[#out + 1] = p
        out[#out + 1] = jobs[i]
      end
      left = left - #jobs
      skip = 0
    else
      skip = skip - len
      if skip < 0 then skip = 0 end
    end
  end
  return {total, out}
end

-- ff_web_queue_delete(name, priority, job, position, half): remove one occurrence of `job` from
-- the queue's list of that priority, walking at most about half the list (LREM walks a list
-- from one end: one call must not walk a queue of millions). position: where the page saw the
-- job in fetch order (0: the next to be fetched; over all the queue's priority lists, as
-- ff_web_queue_page counts). If the job is still there, it is removed from the end nearer to
-- it. If not (jobs were fetched, pushed or deleted since), one half of the list is searched a
-- call (LPOS): half '' the first time (the half `position` is in), then 'tail' or 'head' (the
-- other one). Returns {1} (removed), {0} (not in the list) or {0, position, half}: call again
-- with those. KEYS: ff:prioq, q:<name>[:p<N>] (and the queue's other priority lists).
local function ff_web_queue_delete(keys, args)
  local name, prio, job, half = args[1], tonumber(args[2]), args[3], args[5]
  local key = keys[2]
  local len = redis.call('LLEN', key)
  if len == 0 then return {0} end
  -- the jobs fetched before this list's: those of the priorities before it
  local before = 0
  for _, p in ipairs(fetch_order(keys[1], name)) do
    if p > prio then before = before + redis.call('LLEN', qkey(name, p)) end
  end
  -- t: its index from the tail (the end FETCH takes from)
  local t = math.min(math.max(tonumber(args[4]) - before, 0), len - 1)
  if redis.call('LINDEX', key, -(t + 1)) == job then
    if t < len - t then redis.call('LREM', key, -1, job) else redis.call('LREM', key, 1, job) end
    return {1}
  end
  local mid = math.ceil(len / 2)
  local search = half
  if search == '' then search = t < mid and 'tail' or 'head' end
  -- LPOS answers the index from the head; walked: its distance from the end searched from
  local at, walked
  if search == 'tail' then
    at = redis.call('LPOS', key, job, 'RANK', -1, 'MAXLEN', mid)
    if at then walked = len - at end
  else
    at = redis.call('LPOS', key, job, 'MAXLEN', len - mid + 1)
    if at then walked = at + 1 end
  end
  if at then
    if 2 * walked > mid then return {0, before + len - 1 - at, ''} end  -- removed next call
    redis.call('LREM', key, search == 'tail' and -1 or 1, job)
    return {1}
  end
  if half == '' then return {0, args[4], search == 'tail' and 'head' or 'tail'} end
  return {0}
end

-- ff_web_queues(cursor, count): the known queues of one SSCAN page of `queues` (about `count`
-- from `cursor`), each as {name, size, paused (0/1), {oldest job of each of its priority
-- lists}}, for the queue list's size and latency columns: {next cursor ('0': the last page),
-- {queue...}}. KEYS: queues, paused, ff:prioq; also the lists of the queues of the page.
local function ff_web_queues(keys, args)
  local queues, paused, prioq = keys[1], keys[2], keys[3]
  local out = {}
  local page = redis.call('SSCAN', queues, args[1], 'COUNT', args[2])
  for _, name in ipairs(page[2]) do
    local heads = {}
    for _, p in ipairs(fetch_order(prioq, name)) do
      local job = redis.call('LINDEX', qkey(name, p), -1)
      if job then heads[#heads + 1] = job end
    end
    out[#out + 1] = {name, qsize(prioq, name), redis.call('SISMEMBER', paused, name), heads}
  end
  return {page[1], out}
end

local function read_only(name, fn)
  redis.register_function{function_name = name, callback = fn, flags = {'no-writes'}}
end

redis.register_function('ff_push', ff_push)
redis.register_function('ff_fetch', ff_fetch)
redis.register_function('ff_push_to', ff_push_to)
redis.register_function('ff_ack', ff_ack)
redis.register_function('ff_fail', ff_fail)
redis.register_function('ff_release', ff_release)
redis.register_function('ff_expired', ff_expired)
redis.register_function('ff_enqueue_from', ff_enqueue_from)
redis.register_function('ff_set_aside', ff_set_aside)
redis.register_function('ff_hello', ff_hello)
redis.register_function('ff_bye', ff_bye)
redis.register_function('ff_beat', ff_beat)
redis.register_function('ff_signal', ff_signal)
redis.register_function('ff_reap_workers', ff_reap_workers)
redis.register_function('ff_process_gone', ff_process_gone)
read_only('ff_info', ff_info)
redis.register_function('ff_flush', ff_flush)
redis.register_function('ff_queue', ff_queue)
read_only('ff_queue_heads', ff_queue_heads)
redis.register_function('ff_mutate', ff_mutate)
read_only('ff_mutate_select', ff_mutate_select)
redis.register_function('ff_migrate_reservation', ff_migrate_reservation)
redis.register_function('ff_migrate_queue', ff_migrate_queue)
read_only('ff_reservations', ff_reservations)
read_only('ff_workers', ff_workers)
read_only('ff_web_set_page', ff_web_set_page)
read_only('ff_web_set_get', ff_web_set_get)
redis.register_function('ff_web_set_remove', ff_web_set_remove)
read_only('ff_web_set_filter', ff_web_set_filter)
read_only('ff_web_queue_page', ff_web_queue_page)
redis.register_function('ff_web_queue_delete', ff_web_queue_delete)
read_only('ff_web_queues', ff_web_queues)
