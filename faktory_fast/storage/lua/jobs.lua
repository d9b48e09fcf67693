-- The core of the job lifecycle: push, fetch (reserve), ack, fail, release, and the moves of
-- the scheduled, retries and dead sets.
--
-- The Enterprise features. A job that has a "custom" object may belong to a batch, be tracked,
-- unique or expiring: the functions here decode such jobs only (`with_custom`), and call each
-- feature's hooks, defined before this file (ent.lua, batch.lua):
--   batch_push(doc) / ent_push(doc, lock, ms): a job is being pushed (lock, ms: its unique
--     lock's name and milliseconds, nil if it is not unique); return an error line ("CODE
--     message") to refuse it, or nil. A refused job is not stored, and no hook after the one
--     that refused it runs.
--   batch_pushed(doc): every hook accepted the job (it is stored): count it in its batch.
--   batch_done(doc, outcome) / ent_done(doc, outcome, text): a reservation of the job ended by
--     ACK (outcome 'ack') or FAIL ('retry', 'dead' or 'discard').
--   ent_fetch(doc, now, text): ff_fetch popped the job (see ent.lua).
-- Hooks that need the time read Redis's clock (TIME): ACK does not pass one.

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
register('ff_push', ff_push)

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

local EXPIRED_PER_FETCH = 100  -- expired jobs one ff_fetch discards at most (FETCHED.MORE)

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
register('ff_fetch', ff_fetch)

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
register('ff_push_to', ff_push_to)

-- ff_ack(n, [jid, flag] * n): finish n reservations successfully (the ACKs a server process
-- had in one turn of its loop: one call for all of them). Returns a list of n outcomes:
-- OUTCOME.DONE, or OUTCOME.GONE if there is no such reservation. flag '1' (plain): the caller
-- fetched the job and saw no custom object in it: unless throttles are configured (the record
-- may hold a throttle lock), its record is not read, and the plain ones are deleted together,
-- first. flag 'r': the caller did not reserve the job; the record it read comes back in place
-- of DONE (for the caller's job metrics). The counters move once for all of them.
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
        out[i] = args[2 * i + 1] == 'r' and record or OUTCOME.DONE
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
register('ff_ack', ff_ack)

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
register('ff_fail', ff_fail)

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
register('ff_release', ff_release)

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
register('ff_expired', ff_expired)

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
register('ff_set_aside', ff_set_aside)

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
register('ff_enqueue_from', ff_enqueue_from)

-- ff_reservations(limit): up to `limit` reservation records, soonest to expire first (for the
-- web UI's jobs in progress). KEYS: working, ff:res.
local function ff_reservations(keys, args)
  local jids = redis.call('ZRANGE', keys[1], 0, tonumber(args[1]) - 1)
  if #jids == 0 then return {} end
  return redis.call('HMGET', keys[2], unpack(jids))
end
read_only('ff_reservations', ff_reservations)
