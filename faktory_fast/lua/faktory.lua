#!lua name=faktory_fast
-- faktory_fast's Redis function library: every state change a protocol command makes is one
-- FCALL of one function here, so any number of server processes can share one Redis.
-- Key names are documented in faktory_fast/keys.py; each function lists the keys it touches.
-- Times are passed in by the caller (unix seconds as decimal strings) so that every process
-- and the tests agree on "now". Job JSON is never re-encoded here: cjson would reorder keys
-- and round big numbers, so jobs are only decoded to read fields and stored byte for byte.

local PRIORITIES_HIGH = {9, 8, 7, 6}
local PRIORITIES_LOW = {4, 3, 2, 1}

local function qkey(name, prio)
  if prio == 5 then return 'q:' .. name end
  return 'q:' .. name .. ':p' .. prio
end

-- Tell every process with a FETCH waiting on `name` that it has a job; one-shot.
-- Keys: ff:wait:<name>; publishes on ff:wake:<process>.
local function wake(name)
  local wkey = 'ff:wait:' .. name
  local procs = redis.call('SMEMBERS', wkey)
  if #procs > 0 then
    for _, p in ipairs(procs) do redis.call('PUBLISH', 'ff:wake:' .. p, name) end
    redis.call('DEL', wkey)
  end
end

-- Keys: queues, q:<name>[:p<N>], ff:prioq, ff:wait:<name>.
local function enqueue(name, prio, job)
  -- Only a list that was empty can belong to an unregistered queue or one with waiters (a
  -- FETCH waits only when all of a queue's lists are empty, and QUEUE REMOVE deletes them):
  -- pushes onto a backlog cost one call.
  if redis.call('LPUSH', qkey(name, prio), job) == 1 then
    redis.call('SADD', 'queues', name)
    if prio ~= 5 then redis.call('SADD', 'ff:prioq', name) end
    wake(name)
  end
end

-- Pop the next job of queue `name`: priority 9 first, FIFO within a priority.
-- Keys: ff:prioq, q:<name>[:p<N>].
local function pop(name)
  if redis.call('SISMEMBER', 'ff:prioq', name) == 0 then
    return redis.call('RPOP', 'q:' .. name)
  end
  for _, p in ipairs(PRIORITIES_HIGH) do
    local job = redis.call('RPOP', qkey(name, p))
    if job then return job end
  end
  local job = redis.call('RPOP', 'q:' .. name)
  if job then return job end
  for _, p in ipairs(PRIORITIES_LOW) do
    job = redis.call('RPOP', qkey(name, p))
    if job then return job end
  end
  redis.call('SREM', 'ff:prioq', name)
  return false
end

-- Number of jobs in queue `name` over all priorities. Keys: ff:prioq, q:<name>[:p<N>].
local function qsize(name)
  local n = redis.call('LLEN', 'q:' .. name)
  if redis.call('SISMEMBER', 'ff:prioq', name) == 1 then
    for p = 1, 9 do
      if p ~= 5 then n = n + redis.call('LLEN', qkey(name, p)) end
    end
  end
  return n
end

-- ff_push(n, [queue, priority, job, score] * n): store n validated jobs; score '' enqueues now,
-- otherwise the job waits in `scheduled` until that time.
-- Keys: scheduled, queues, q:<queue>[:p<N>], ff:prioq, ff:wait:<queue>.
local function ff_push(keys, args)
  local n = tonumber(args[1])
  for i = 0, n - 1 do
    local b = 2 + i * 4
    if args[b + 3] ~= '' then
      redis.call('ZADD', 'scheduled', args[b + 3], args[b + 2])
    else
      enqueue(args[b], tonumber(args[b + 1]), args[b + 2])
    end
  end
  return n
end

-- ff_fetch(wid, proc, now, default_reserve, q1, q2, ...): reserve the first job found in the
-- given queues (strict order). Returns {job, rid, jid} on success; 0 when nothing is there (and
-- the process is registered as waiting on every searched queue); -1 when the worker is quiet or
-- terminating; -2 when every queue is paused; -3 when nothing is there and some are paused.
-- Keys: ff:quiet, ff:w:<wid>, paused, ff:prioq, q:<q>[:p<N>], ff:wait:<q>, ff:rseq, ff:res,
-- working.
local function ff_fetch(keys, args)
  local wid, proc = args[1], args[2]
  local now_sec, now_frac = string.match(args[3], '^(%d+)(%.?%d*)$')
  now_sec = tonumber(now_sec)
  -- With no quiet worker, paused queue or priority list anywhere (the usual case), one call
  -- answers all three questions.
  local plain = redis.call('EXISTS', 'ff:quiet', 'paused', 'ff:prioq') == 0
  local paused = {}
  if not plain then
    if wid ~= '' then
      local state = redis.call('HGET', 'ff:w:' .. wid, 'state')
      if state == 'quiet' or state == 'terminate' then return -1 end
    end
    for _, p in ipairs(redis.call('SMEMBERS', 'paused')) do paused[p] = true end
  end
  local active = {}
  for i = 5, #args do
    local name = args[i]
    if not paused[name] then
      active[#active + 1] = name
      local job
      if plain then job = redis.call('RPOP', 'q:' .. name) else job = pop(name) end
      if job then
        -- Fast path for the common shape we encode (no failure, custom or reserve_for):
        -- the jid is the second key; otherwise decode the whole job.
        local jid = string.match(job, '^{"retry":%-?%d+,"jid":"([^"\\]*)"')
        local reserve = nil
        if jid == nil or string.find(job, '"reserve_for":', 1, true) then
          local ok, decoded = pcall(cjson.decode, job)
          jid = nil
          if ok and type(decoded) == 'table' then
            jid = decoded['jid']
            reserve = tonumber(decoded['reserve_for'])
          end
        end
        if type(jid) ~= 'string' then
          -- Not a job we can track: hand it out unreserved rather than lose it silently.
          return {job, 0, ''}
        end
        if reserve == nil or reserve <= 0 then reserve = tonumber(args[4]) end
        if reserve < 60 then reserve = 60 end
        if reserve > 86400 then reserve = 86400 end
        local rid = redis.call('INCR', 'ff:rseq')
        -- Built as strings: number formatting and cjson.encode are the slow part of this function.
        local expires = (now_sec + math.floor(reserve)) .. now_frac
        local quoted = string.find(wid, '[%c"\\]') and cjson.encode(wid) or ('"' .. wid .. '"')
        local record = '{"rid":' .. rid .. ',"wid":' .. quoted .. ',"reserved_at":' .. args[3] ..
          ',"expires_at":' .. expires .. ',"job":' .. job .. '}'
        redis.call('HSET', 'ff:res', jid, record)
        redis.call('ZADD', 'working', expires, jid)
        return {job, rid, jid}
      end
    end
  end
  if #active == 0 then return -2 end
  for _, name in ipairs(active) do redis.call('SADD', 'ff:wait:' .. name, proc) end
  if #active < #args - 4 then return -3 end
  return 0
end

-- ff_ack(jid, day): finish a reservation successfully; 1 if it existed, else 0.
-- Keys: ff:res, working, processed, processed:<day>.
local function ff_ack(keys, args)
  local jid = args[1]
  if redis.call('HDEL', 'ff:res', jid) == 0 then return 0 end
  redis.call('ZREM', 'working', jid)
  redis.call('INCR', 'processed')
  redis.call('INCR', 'processed:' .. args[2])
  return 1
end

-- ff_fail(jid, rid, day, outcome, payload, score): end a reservation as failed. The caller
-- computed `payload` (the job with its failure) from the reservation whose token is `rid`;
-- if the stored reservation has another token (or rid is ''), nothing changes and {2, record}
-- is returned so the caller can recompute. outcome: retry | dead | discard.
-- Returns {1} done, {0} no such reservation, {2, record} recompute.
-- Keys: ff:res, working, processed, failures, processed:<day>, failures:<day>, retries, dead.
local function ff_fail(keys, args)
  local jid, rid = args[1], args[2]
  local record = redis.call('HGET', 'ff:res', jid)
  if not record then return {0} end
  local prefix = '{"rid":' .. rid .. ','
  if rid == '' or string.sub(record, 1, #prefix) ~= prefix then return {2, record} end
  redis.call('HDEL', 'ff:res', jid)
  redis.call('ZREM', 'working', jid)
  redis.call('INCR', 'processed')
  redis.call('INCR', 'failures')
  redis.call('INCR', 'processed:' .. args[3])
  redis.call('INCR', 'failures:' .. args[3])
  local outcome = args[4]
  if outcome == 'retry' then
    redis.call('ZADD', 'retries', args[6], args[5])
  elseif outcome == 'dead' then
    redis.call('ZADD', 'dead', args[6], args[5])
  end
  return {1}
end

-- ff_release(jid, queue, priority, job): undo a reservation whose client left before the job
-- could be sent: the job goes back to the end its queue is fetched from, so it runs next.
-- Keys: ff:res, working, queues, q:<queue>[:p<N>], ff:prioq, ff:wait:<queue>.
local function ff_release(keys, args)
  if redis.call('HDEL', 'ff:res', args[1]) == 0 then return 0 end
  redis.call('ZREM', 'working', args[1])
  local name, prio = args[2], tonumber(args[3])
  if redis.call('RPUSH', qkey(name, prio), args[4]) == 1 then  -- as in enqueue
    redis.call('SADD', 'queues', name)
    if prio ~= 5 then redis.call('SADD', 'ff:prioq', name) end
    wake(name)
  end
  return 1
end

-- ff_expired(now, limit): reservations whose time is up, as {jid, record, jid, record, ...}
-- (read by the reaper, which then fails each through ff_fail with its token). Drops `working`
-- entries with no record, except ones that look like data (Faktory's reservation JSON as the
-- member): those come with record '' for the reaper to set aside. Keys: working, ff:res.
local function ff_expired(keys, args)
  local jids = redis.call('ZRANGEBYSCORE', 'working', '-inf', args[1], 'LIMIT', 0, tonumber(args[2]))
  local out = {}
  for _, jid in ipairs(jids) do
    local record = redis.call('HGET', 'ff:res', jid)
    if record or string.sub(jid, 1, 1) == '{' then
      out[#out + 1] = jid
      out[#out + 1] = record or ''
    else
      redis.call('ZREM', 'working', jid)
    end
  end
  return out
end

-- ff_set_aside(source, key, record, dead_score, entry, reason, now): move one record the server
-- cannot use out of the way. source is a sorted set (key: the member) or 'working' (key: the
-- jid; record: its ff:res record as the caller read it, '' if it had none). With an entry (the
-- job with a failure saying why) it goes to `dead`; without, the raw record is kept in the
-- ff:bad stream with the reason. Returns 1, or 0 if the record had changed or gone.
-- Keys: <source>, working, ff:res, dead, ff:bad.
local function ff_set_aside(keys, args)
  local source, key, raw = args[1], args[2], args[2]
  if source == 'working' then
    local record = redis.call('HGET', 'ff:res', key)
    if (record or '') ~= args[3] then return 0 end
    if redis.call('ZREM', 'working', key) == 0 and not record then return 0 end
    if record then
      redis.call('HDEL', 'ff:res', key)
      raw = record
    end
  elseif redis.call('ZREM', source, key) == 0 then
    return 0
  end
  if args[5] ~= '' then
    redis.call('ZADD', 'dead', args[4], args[5])
  elseif source == 'working' then
    redis.call('XADD', 'ff:bad', '*', 'source', source, 'reason', args[6], 'at', args[7],
      'record', raw, 'jid', key)
  else
    redis.call('XADD', 'ff:bad', '*', 'source', source, 'reason', args[6], 'at', args[7],
      'record', raw)
  end
  return 1
end

-- ff_enqueue_from(set, n, [member, queue, priority, job] * n): move entries of a sorted set
-- (scheduled, retries, dead) to their queues. Each moves only if it is still in the set, so
-- concurrent movers never enqueue one entry twice; queue '' just drops the entry.
-- Keys: <set>, queues, q:<queue>[:p<N>], ff:prioq, ff:wait:<queue>.
local function ff_enqueue_from(keys, args)
  local set, n, moved = args[1], tonumber(args[2]), 0
  for i = 0, n - 1 do
    local b = 3 + i * 4
    if redis.call('ZREM', set, args[b]) == 1 and args[b + 1] ~= '' then
      enqueue(args[b + 1], tonumber(args[b + 2]), args[b + 3])
      moved = moved + 1
    end
  end
  return moved
end

-- ff_hello(proc, max_conns, wid, hostname, pid, labels, v, now): count an identified
-- connection and register its worker. Returns 0, or the would-be connection count when
-- that exceeds max_conns (nothing is changed then).
-- Keys: ff:conns, ff:w:<wid>, ff:wids.
local function ff_hello(keys, args)
  local total = 0
  for _, c in ipairs(redis.call('HVALS', 'ff:conns')) do total = total + tonumber(c) end
  if total + 1 > tonumber(args[2]) then return total + 1 end
  redis.call('HINCRBY', 'ff:conns', args[1], 1)
  local wid = args[3]
  if wid ~= '' then
    local wkey = 'ff:w:' .. wid
    if redis.call('EXISTS', wkey) == 0 then
      redis.call('HSET', wkey, 'wid', wid, 'hostname', args[4], 'pid', args[5], 'labels', args[6],
        'v', args[7], 'started_at', args[8], 'state', 'running', 'rss_kb', 0, 'conns', 0)
      redis.call('ZADD', 'ff:wids', args[8], wid)
    end
    redis.call('HINCRBY', wkey, 'conns', 1)
  end
  return 0
end

-- ff_bye(proc, wid): an identified connection closed; the worker goes when its last one does.
-- Keys: ff:conns, ff:w:<wid>, ff:wids, ff:quiet.
local function ff_bye(keys, args)
  redis.call('HINCRBY', 'ff:conns', args[1], -1)
  local wid = args[2]
  if wid ~= '' then
    local wkey = 'ff:w:' .. wid
    if redis.call('EXISTS', wkey) == 1 and redis.call('HINCRBY', wkey, 'conns', -1) <= 0 then
      redis.call('DEL', wkey)
      redis.call('ZREM', 'ff:wids', wid)
      redis.call('SREM', 'ff:quiet', wid)
    end
  end
  return 0
end

local STATE_ORDER = {running = 0, quiet = 1, terminate = 2}

-- Move a worker's state forward only (running -> quiet -> terminate); a worker that is not
-- running is listed in ff:quiet (every heartbeat says so again). Keys: ff:w:<wid>, ff:quiet.
local function advance(wid, state)
  local wkey = 'ff:w:' .. wid
  local current = redis.call('HGET', wkey, 'state') or 'running'
  if STATE_ORDER[state] and STATE_ORDER[state] > (STATE_ORDER[current] or 0) then
    redis.call('HSET', wkey, 'state', state)
    current = state
  end
  if current ~= 'running' then redis.call('SADD', 'ff:quiet', wid) end
  return current
end

-- ff_beat(wid, now, state, rss_kb): heartbeat; returns the worker's state, or false if unknown.
-- Keys: ff:w:<wid>, ff:wids, ff:quiet.
local function ff_beat(keys, args)
  local wid = args[1]
  local wkey = 'ff:w:' .. wid
  if redis.call('EXISTS', wkey) == 0 then return false end
  redis.call('ZADD', 'ff:wids', args[2], wid)
  if args[4] ~= '' then redis.call('HSET', wkey, 'rss_kb', args[4]) end
  return advance(wid, args[3])
end

-- ff_signal(state, wid...): quiet or terminate workers (wid '*' = all), as from the web UI.
-- Keys: ff:wids, ff:w:<wid>, ff:quiet.
local function ff_signal(keys, args)
  local wids = {}
  for i = 2, #args do
    if args[i] == '*' then wids = redis.call('ZRANGE', 'ff:wids', 0, -1) break end
    wids[#wids + 1] = args[i]
  end
  local n = 0
  for _, wid in ipairs(wids) do
    local wkey = 'ff:w:' .. wid
    if redis.call('EXISTS', wkey) == 1 then advance(wid, args[1]) n = n + 1 end
  end
  return n
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

-- ff_reap_workers(cutoff): forget workers whose last heartbeat is older than cutoff and tell
-- every process to close their connections. A wid that is not UTF-8 (never one a client sent:
-- HELLO is JSON) is forgotten without a broadcast the processes could not decode.
-- Keys: ff:wids, ff:w:<wid>, ff:quiet; publishes on ff:ctl.
local function ff_reap_workers(keys, args)
  local wids = redis.call('ZRANGEBYSCORE', 'ff:wids', '-inf', '(' .. args[1])
  for _, wid in ipairs(wids) do
    redis.call('DEL', 'ff:w:' .. wid)
    redis.call('ZREM', 'ff:wids', wid)
    redis.call('SREM', 'ff:quiet', wid)
    if utf8_ok(wid) then redis.call('PUBLISH', 'ff:ctl', 'reap ' .. wid) end
  end
  return #wids
end

-- ff_process_gone(proc): a server process ended; drop its connection count and keep its
-- command count in the '-' field. Keys: ff:conns, ff:cmds.
local function ff_process_gone(keys, args)
  redis.call('HDEL', 'ff:conns', args[1])
  local cmds = redis.call('HGET', 'ff:cmds', args[1])
  if cmds then
    redis.call('HINCRBY', 'ff:cmds', '-', cmds)
    redis.call('HDEL', 'ff:cmds', args[1])
  end
  return 0
end

-- ff_info(): everything INFO reports that lives in Redis, as a flat list:
-- {processed, failures, scheduled, retries, dead, working, workers, connections, commands,
--  {task fields...}, {queue, size, ...}}.
-- Keys: processed, failures, scheduled, retries, dead, working, ff:wids, ff:conns, ff:cmds,
-- ff:tasks, queues, ff:prioq, q:<queue>[:p<N>].
local function ff_info(keys, args)
  local conns, cmds = 0, 0
  for _, c in ipairs(redis.call('HVALS', 'ff:conns')) do conns = conns + tonumber(c) end
  for _, c in ipairs(redis.call('HVALS', 'ff:cmds')) do cmds = cmds + tonumber(c) end
  local queues = {}
  for _, name in ipairs(redis.call('SMEMBERS', 'queues')) do
    queues[#queues + 1] = name
    queues[#queues + 1] = qsize(name)
  end
  return {
    tonumber(redis.call('GET', 'processed') or 0),
    tonumber(redis.call('GET', 'failures') or 0),
    redis.call('ZCARD', 'scheduled'), redis.call('ZCARD', 'retries'),
    redis.call('ZCARD', 'dead'), redis.call('ZCARD', 'working'),
    redis.call('ZCARD', 'ff:wids'), conns, cmds,
    redis.call('HGETALL', 'ff:tasks'), queues,
  }
end

-- ff_flush(): FLUSHDB, but the live registry of processes, connections and workers survives
-- (they are still connected); everything about jobs and queues is gone. Publishes 'flush' on
-- ff:ctl so processes drop what they cached about empty queues.
-- Keys: all; keeps ff:conns, ff:cmds, ff:tasks, ff:wids, ff:w:<wid>, ff:quiet.
local function ff_flush(keys, args)
  local keep = {}
  for _, k in ipairs({'ff:conns', 'ff:cmds', 'ff:tasks'}) do keep[k] = redis.call('HGETALL', k) end
  local beats = redis.call('ZRANGE', 'ff:wids', 0, -1, 'WITHSCORES')
  local quiet = redis.call('SMEMBERS', 'ff:quiet')
  local workers = {}
  for i = 1, #beats, 2 do workers[beats[i]] = redis.call('HGETALL', 'ff:w:' .. beats[i]) end
  redis.call('FLUSHDB')
  for k, fields in pairs(keep) do
    if #fields > 0 then redis.call('HSET', k, unpack(fields)) end
  end
  for i = 1, #beats, 2 do
    redis.call('ZADD', 'ff:wids', beats[i + 1], beats[i])
    local fields = workers[beats[i]]
    if #fields > 0 then redis.call('HSET', 'ff:w:' .. beats[i], unpack(fields)) end
  end
  if #quiet > 0 then redis.call('SADD', 'ff:quiet', unpack(quiet)) end
  redis.call('PUBLISH', 'ff:ctl', 'flush')
  return 0
end

-- Queue names given to QUEUE commands, '*' standing for every known queue. Keys: queues.
local function queue_names(args, from)
  local names = {}
  for i = from, #args do
    if args[i] == '*' then return redis.call('SMEMBERS', 'queues') end
    names[#names + 1] = args[i]
  end
  return names
end

-- ff_queue(sub, names...): QUEUE PAUSE | RESUME | REMOVE. PAUSE ignores unknown queues.
-- Keys: queues, paused, ff:prioq, q:<name>[:p<N>].
local function ff_queue(keys, args)
  local sub = args[1]
  local names = queue_names(args, 2)
  for _, name in ipairs(names) do
    if sub == 'PAUSE' then
      if redis.call('SISMEMBER', 'queues', name) == 1 then redis.call('SADD', 'paused', name) end
    elseif sub == 'RESUME' then
      redis.call('SREM', 'paused', name)
    elseif sub == 'REMOVE' then
      for p = 1, 9 do redis.call('UNLINK', qkey(name, p)) end
      redis.call('SREM', 'queues', name)
      redis.call('SREM', 'paused', name)
      redis.call('SREM', 'ff:prioq', name)
    end
  end
  return #names
end

-- ff_queue_heads(names...): for each queue, the job that has waited longest (the tail of each
-- of its priority lists, oldest first is decided by the caller), for QUEUE LATENCY.
-- Keys: ff:prioq, q:<name>[:p<N>].
local function ff_queue_heads(keys, args)
  local out = {}
  for i = 1, #args do
    local heads = {}
    local oldest = redis.call('LINDEX', 'q:' .. args[i], -1)
    if oldest then heads[#heads + 1] = oldest end
    if redis.call('SISMEMBER', 'ff:prioq', args[i]) == 1 then
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

-- Does a sorted-set member match a MUTATE filter? mode 'all': always; 'glob' (ZSCAN already
-- matched the pattern): it must also contain extra[1] if given; 'jids': any of `extra`.
local function matches(member, mode, extra)
  if mode == 'all' then return true end
  if mode == 'glob' then return extra[1] == nil or string.find(member, extra[1], 1, true) ~= nil end
  for _, p in ipairs(extra) do
    if string.find(member, p, 1, true) then return true end
  end
  return false
end

-- ff_mutate(cmd, target, dead_score, mode, pattern, extra...): MUTATE on a sorted set.
-- mode 'all': every entry; 'jids': entries containing any of the `extra` substrings
-- ('"jid":"<jid>"'); 'glob': ZSCAN MATCH pattern, and if extra[1] is given the entry must
-- also contain it ('"jobtype":"<type>"'). cmd: clear | discard | kill | requeue.
-- Keys: <target>, dead, queues, q:<queue>[:p<N>], ff:prioq, ff:wait:<queue>.
local function ff_mutate(keys, args)
  local cmd, target, dead_score, mode, pattern = args[1], args[2], args[3], args[4], args[5]
  if cmd == 'clear' then
    redis.call('UNLINK', target)
    return 0
  end
  local extra = {}
  for i = 6, #args do extra[#extra + 1] = args[i] end
  local found = {}
  local cursor = '0'
  repeat
    local reply
    if mode == 'glob' then
      reply = redis.call('ZSCAN', target, cursor, 'MATCH', pattern, 'COUNT', 100)
    else
      reply = redis.call('ZSCAN', target, cursor, 'COUNT', 100)
    end
    cursor = reply[1]
    local items = reply[2]
    for i = 1, #items, 2 do
      local member = items[i]
      if matches(member, mode, extra) then found[#found + 1] = member end
    end
  until cursor == '0'
  local n = 0
  for _, member in ipairs(found) do
    if redis.call('ZREM', target, member) == 1 then
      n = n + 1
      if cmd == 'kill' then
        redis.call('ZADD', 'dead', dead_score, member)
      elseif cmd == 'requeue' then
        local ok, job = pcall(cjson.decode, member)
        local name, prio = 'default', 5
        if ok and type(job) == 'table' then
          if type(job['queue']) == 'string' and job['queue'] ~= '' then name = job['queue'] end
          prio = tonumber(job['priority']) or 5
        end
        enqueue(name, prio, member)
      end
    end
  end
  return n
end

-- ff_migrate_reservation(old_member, jid, record, score): replace a Faktory-format `working`
-- entry (the reservation JSON as member) by ours (jid member, record in ff:res).
-- Keys: working, ff:res.
local function ff_migrate_reservation(keys, args)
  if redis.call('ZREM', 'working', args[1]) == 1 then
    redis.call('HSET', 'ff:res', args[2], args[3])
    redis.call('ZADD', 'working', args[4], args[2])
  end
  return 0
end

-- ff_migrate_queue(KEYS: <name>, q:<name>): Faktory <= 1.9 kept queue <name> in a list under
-- its bare name; 1.10 and we use q:<name>. Move it, older jobs (1.9's) to the right, the end
-- FETCH pops first. Only a list moves: a 1.9 queue named like one of Faktory's other keys
-- could not have worked. Returns the number of jobs moved.
local function ff_migrate_queue(keys, args)
  local bare, prefixed = keys[1], keys[2]
  if redis.call('TYPE', bare)['ok'] ~= 'list' then return 0 end
  local n = redis.call('LLEN', bare)
  if redis.call('EXISTS', prefixed) == 0 then
    redis.call('RENAME', bare, prefixed)
  else
    for _ = 1, n do redis.call('LMOVE', bare, prefixed, 'LEFT', 'RIGHT') end
  end
  return n
end

-- ff_reservations(limit): up to `limit` reservation records, soonest to expire first (for the
-- web UI's jobs in progress). Keys: working, ff:res.
local function ff_reservations(keys, args)
  local jids = redis.call('ZRANGE', 'working', 0, tonumber(args[1]) - 1)
  if #jids == 0 then return {} end
  return redis.call('HMGET', 'ff:res', unpack(jids))
end

-- ff_workers(): every registered worker as a flat field/value list. Keys: ff:wids, ff:w:<wid>.
local function ff_workers(keys, args)
  local out = {}
  for i, wid in ipairs(redis.call('ZRANGE', 'ff:wids', 0, -1)) do
    out[i] = redis.call('HGETALL', 'ff:w:' .. wid)
  end
  return out
end

-- web UI ------------------------------------------------------------------------------------
-- Read-mostly helpers for the web UI (web/). Sorted-set entries are named by (score, jid): the
-- score string exactly as Redis returned it, and the entry's JSON containing '"jid":"<jid>"'.

-- Members of `set` with exactly `score` whose JSON names `jid`. Keys: <set>.
local function entries_at(set, score, jid)
  local found = {}
  local needle = '"jid":"' .. jid .. '"'
  for _, m in ipairs(redis.call('ZRANGE', set, score, score, 'BYSCORE')) do
    if string.find(m, needle, 1, true) then found[#found + 1] = m end
  end
  return found
end

-- ff_web_set_page(set, offset, count): {size, {member, score, ...}} in score order.
-- Keys: <set>.
local function ff_web_set_page(keys, args)
  local offset = tonumber(args[2])
  local stop = offset + tonumber(args[3]) - 1
  return {redis.call('ZCARD', args[1]), redis.call('ZRANGE', args[1], offset, stop, 'WITHSCORES')}
end

-- ff_web_set_get(set, score, jid, score, jid, ...): the members so named, as {member, score, ...}.
-- Keys: <set>.
local function ff_web_set_get(keys, args)
  local out = {}
  for i = 2, #args - 1, 2 do
    for _, m in ipairs(entries_at(args[1], args[i], args[i + 1])) do
      out[#out + 1] = m
      out[#out + 1] = args[i]
    end
  end
  return out
end

-- ff_web_set_remove(set, action, dead_score, score, jid, ...): delete the named entries, or
-- with action 'kill' move them to `dead` with dead_score. Returns how many moved.
-- Keys: <set>, dead.
local function ff_web_set_remove(keys, args)
  local set, kill, n = args[1], args[2] == 'kill', 0
  for i = 4, #args - 1, 2 do
    for _, m in ipairs(entries_at(set, args[i], args[i + 1])) do
      if redis.call('ZREM', set, m) == 1 then
        n = n + 1
        if kill then redis.call('ZADD', 'dead', args[3], m) end
      end
    end
  end
  return n
end

-- ff_web_set_filter(set, cursor, scan_cap, want, jobtype, queue, text): ZSCAN from `cursor`
-- for entries with that jobtype and queue ('' = any) containing `text` (lower case, '' = any),
-- stopping after about scan_cap entries or once `want` matched. Returns
-- {next_cursor ('0' = scanned everything), scanned, {member, score, ...}}. Keys: <set>.
local function ff_web_set_filter(keys, args)
  local set, cursor, cap, want = args[1], args[2], tonumber(args[3]), tonumber(args[4])
  local jobtype, queue, text = args[5], args[6], args[7]
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

-- Priorities of a queue in the order FETCH takes them. Keys: ff:prioq.
local function fetch_order(name)
  if redis.call('SISMEMBER', 'ff:prioq', name) == 0 then return {5} end
  return {9, 8, 7, 6, 5, 4, 3, 2, 1}
end

-- ff_web_queue_page(name, offset, count): {size, {priority, job, ...}}: the queue's jobs over
-- all its priority lists in the order they will be fetched, skipping `offset` of them.
-- Keys: ff:prioq, q:<name>[:p<N>].
local function ff_web_queue_page(keys, args)
  local name, skip, left = args[1], tonumber(args[2]), tonumber(args[3])
  local out, total = {}, 0
  for _, p in ipairs(fetch_order(name)) do
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

-- ff_web_queue_delete(name, priority, job, ...): remove those jobs (one occurrence each).
-- Keys: q:<name>[:p<N>].
local function ff_web_queue_delete(keys, args)
  local n = 0
  for i = 2, #args - 1, 2 do
    n = n + redis.call('LREM', qkey(args[1], tonumber(args[i])), 1, args[i + 1])
  end
  return n
end

-- ff_web_queues(): every known queue as {name, size, paused (0/1), {oldest job of each of its
-- priority lists}}, for the queue list's size and latency columns.
-- Keys: queues, paused, ff:prioq, q:<name>[:p<N>].
local function ff_web_queues(keys, args)
  local out = {}
  for _, name in ipairs(redis.call('SMEMBERS', 'queues')) do
    local heads = {}
    for _, p in ipairs(fetch_order(name)) do
      local job = redis.call('LINDEX', qkey(name, p), -1)
      if job then heads[#heads + 1] = job end
    end
    out[#out + 1] = {name, qsize(name), redis.call('SISMEMBER', 'paused', name), heads}
  end
  return out
end

redis.register_function('ff_push', ff_push)
redis.register_function('ff_fetch', ff_fetch)
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
redis.register_function{function_name = 'ff_info', callback = ff_info, flags = {'no-writes'}}
redis.register_function('ff_flush', ff_flush)
redis.register_function('ff_queue', ff_queue)
redis.register_function{function_name = 'ff_queue_heads', callback = ff_queue_heads,
  flags = {'no-writes'}}
redis.register_function('ff_mutate', ff_mutate)
redis.register_function('ff_migrate_reservation', ff_migrate_reservation)
redis.register_function('ff_migrate_queue', ff_migrate_queue)
redis.register_function{function_name = 'ff_reservations', callback = ff_reservations,
  flags = {'no-writes'}}
redis.register_function{function_name = 'ff_workers', callback = ff_workers, flags = {'no-writes'}}
redis.register_function{function_name = 'ff_web_set_page', callback = ff_web_set_page,
  flags = {'no-writes'}}
redis.register_function{function_name = 'ff_web_set_get', callback = ff_web_set_get,
  flags = {'no-writes'}}
redis.register_function('ff_web_set_remove', ff_web_set_remove)
redis.register_function{function_name = 'ff_web_set_filter', callback = ff_web_set_filter,
  flags = {'no-writes'}}
redis.register_function{function_name = 'ff_web_queue_page', callback = ff_web_queue_page,
  flags = {'no-writes'}}
redis.register_function('ff_web_queue_delete', ff_web_queue_delete)
redis.register_function{function_name = 'ff_web_queues', callback = ff_web_queues,
  flags = {'no-writes'}}
