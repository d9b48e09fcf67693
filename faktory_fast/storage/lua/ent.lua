-- Unique jobs, expiring jobs and throttling (docs/enterprise.md; cron is cron.lua): their
-- functions, and the hooks the core functions of jobs.lua call (its header has their
-- contract). Keys built here from prefixes or named by Python (not declared by
-- callers): ff:uniq:<name> (UNIQUE_PREFIX), ff:uniq-names (UNIQUE_NAMES_KEY),
-- ff:thr:<queue>[:<wid>] (THROTTLE_PREFIX), ff:expired (EXPIRED_KEY), and the queue lists and
-- waiters sets of the queues jobs name.

-- Redis's clock as unix seconds (ACK and PUSH are not given a time).
local function redis_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1e6
end

-- unique ---------------------------------------------------------------------------------------
-- A unique job's lock is UNIQUE_PREFIX .. <name>, holding the jid of the job that took it. The
-- name is computed by the server process (jobs.unique_name) and passed to ff_push, which
-- records it in UNIQUE_NAMES_KEY (jid -> name) for the release: no name is computed from a
-- job's args here. Jobs stored by older servers have no record: their names are computed
-- here as those servers did (legacy_unique_key), for jobs of up to LEGACY_UNIQUE_MAX bytes
-- (a larger one's lock lapses by itself).
local LEGACY_UNIQUE_MAX = 262144

-- Does a decoded JSON array or object hold an object (a table with string keys) anywhere?
-- `memo`: the answers so far, by table (each table is looked at once).
local function has_object(v, memo)
  local known = memo[v]
  if known ~= nil then return known end
  local found = false
  for k, x in pairs(v) do
    if type(k) ~= 'number' or (type(x) == 'table' and has_object(x, memo)) then
      found = true
      break
    end
  end
  memo[v] = found
  return found
end

-- A decoded JSON value as canonical text: object keys sorted, so that {"a":1,"b":2} and
-- {"b":2,"a":1} name the same lock (cjson's own encoding follows Lua's table order). Values
-- without objects (the usual args: arrays of scalars) are cjson's encoding, in one call.
-- Numbers pass through Lua's doubles and cjson's 14 digits: the fallback of canonical_text.
local function canonical(v, memo)
  if type(v) ~= 'table' or not has_object(v, memo) then return cjson.encode(v) end
  local names = {}
  for k in pairs(v) do names[#names + 1] = k end
  local parts = {}
  if #names == #v then  -- an array holding objects
    for i = 1, #v do parts[i] = canonical(v[i], memo) end
    return '[' .. table.concat(parts, ',') .. ']'
  end
  for i, k in ipairs(names) do names[i] = tostring(k) end
  table.sort(names)
  for i, k in ipairs(names) do parts[i] = cjson.encode(k) .. ':' .. canonical(v[k], memo) end
  return '{' .. table.concat(parts, ',') .. '}'
end

-- The JSON value that starts at index `i` of `s` (compact JSON, as orjson writes it) as
-- canonical text, and the index just past it; nil if it is not JSON. Object members sorted
-- (each key has one spelling in orjson's output), everything else as written, so numbers keep
-- every digit (two ids that differ in their 17th digit name two locks). One pass over `s`.
local function canonical_text(s, i)
  local c = string.byte(s, i)
  if c == 34 then  -- a string: up to the first quote that is not escaped
    local j = i + 1
    while true do
      local q = string.find(s, '["\\]', j)
      if not q then return nil end
      if string.byte(s, q) == 92 then j = q + 2 else return string.sub(s, i, q), q + 1 end
    end
  elseif c == 91 or c == 123 then  -- an array or object
    local members = c == 123
    local close = members and 125 or 93
    local k = i + 1
    if string.byte(s, k) == close then return string.sub(s, i, k), k + 1 end
    local parts = {}
    while true do
      local part, key
      if members then
        key, k = canonical_text(s, k)
        if not key or string.byte(s, k) ~= 58 then return nil end  -- ':'
        part, k = canonical_text(s, k + 1)
        if part then part = key .. ':' .. part end
      else
        part, k = canonical_text(s, k)
      end
      if not part then return nil end
      parts[#parts + 1] = part
      local b = string.byte(s, k)
      if b == close then break end
      if b ~= 44 then return nil end  -- ','
      k = k + 1
    end
    if members then
      table.sort(parts)
      return '{' .. table.concat(parts, ',') .. '}', k + 1
    end
    return '[' .. table.concat(parts, ',') .. ']', k + 1
  elseif c == nil then
    return nil
  end
  local j = string.find(s, '[,%]}]', i) or #s + 1  -- a number, true, false or null
  return string.sub(s, i, j - 1), j
end

-- The canonical text of the top-level "args" of a job's JSON text, or nil.
local function args_text(job)
  local k, n = 2, #job
  while k < n do
    local key, key_end = canonical_text(job, k)
    if not key or string.byte(job, key_end) ~= 58 then return nil end
    local value, v_end = canonical_text(job, key_end + 1)
    if not value then return nil end
    if key == '"args"' then return value end
    k = v_end + 1  -- past the ','
  end
  return nil
end

-- Does cjson's encoding (14 significant digits) write every number of the decoded value `v`
-- as it is? A number that needs more (an id of 15 digits and up, say) is not: two such that
-- differ only past the 14th digit would name one lock.
local function fits_cjson(v)
  for _, x in pairs(v) do
    local t = type(x)
    if t == 'number' then
      if tonumber(string.format('%.14g', x)) ~= x then return false end
    elseif t == 'table' and not fits_cjson(x) then
      return false
    end
  end
  return true
end

-- The lock key older servers gave a unique job (decoded `doc`, JSON `text`): sha1 of jobtype,
-- queue and canonical args, NUL-separated. The args are canonical() of the decoded job, unless
-- one of their numbers does not fit cjson's digits: then canonical_text() of them as the job's
-- JSON text writes them. `oldest`: canonical() regardless, as the servers before those did.
-- Second result: whether the key is not the one `oldest` would give.
local function legacy_unique_key(doc, text, oldest)
  local args = doc['args']
  local canon = nil
  if not oldest and type(args) == 'table' and not fits_cjson(args) then
    canon = args_text(text)
  end
  return UNIQUE_PREFIX .. redis.sha1hex(tostring(doc['jobtype']) .. '\0' ..
    (doc['queue'] or 'default') .. '\0' .. (canon or canonical(args, {}))), canon ~= nil
end

-- Seconds a job's unique lock lasts (custom.unique_for, a number or numeric string), or nil if
-- the job is not unique.
local function unique_for(custom)
  local n = tonumber(custom['unique_for'])
  if n and n > 0 then return n end
  return nil
end

-- Drop the job's unique lock if the job (`doc` as the hooks get it, JSON `text`) still holds
-- it (a later duplicate may hold it now).
local function unique_release(doc, text)
  local jid = doc['jid']
  local name = redis.call('HGET', UNIQUE_NAMES_KEY, jid)
  if name then
    redis.call('HDEL', UNIQUE_NAMES_KEY, jid)
    local key = UNIQUE_PREFIX .. name
    if redis.call('GET', key) == jid then redis.call('DEL', key) end
    return
  end
  -- No record: a job stored by an older server, if any.
  if doc['head'] or not unique_for(doc['custom']) or #text > LEGACY_UNIQUE_MAX then return end
  local key, new_name = legacy_unique_key(doc, text)
  if redis.call('GET', key) ~= jid then
    if not new_name then return end
    key = legacy_unique_key(doc, text, true)
    if redis.call('GET', key) ~= jid then return end
  end
  redis.call('DEL', key)
end

-- ff_unique_sweep(cursor, count): drop the records of UNIQUE_NAMES_KEY whose lock is gone or
-- held by another job (it lapsed, or its job was removed without finishing: QUEUE REMOVE,
-- MUTATE, the web UI), looking at about `count` of them (HSCAN from `cursor`). Returns the
-- next cursor ('0': the end). KEYS: ff:uniq-names; also the locks it names.
local function ff_unique_sweep(keys, args)
  local reply = redis.call('HSCAN', keys[1], args[1], 'COUNT', args[2])
  local entries = reply[2]
  for i = 1, #entries, 2 do
    if redis.call('GET', UNIQUE_PREFIX .. entries[i + 1]) ~= entries[i] then
      redis.call('HDEL', keys[1], entries[i])
    end
  end
  return reply[1]
end
register('ff_unique_sweep', ff_unique_sweep)

-- expiring -------------------------------------------------------------------------------------

-- Days from 1970-01-01 to the civil date y-m-d (proleptic Gregorian).
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * ((m + 9) % 12) + 2) / 5) + d - 1
  return era * 146097 + yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy - 719468
end

-- RFC 3339 text as unix seconds; nil if it is not (PUSH checked custom.expires_at already).
local function rfc3339_seconds(text)
  if type(text) ~= 'string' then return nil end
  local y, mo, d, h, mi, s, frac, tz = string.match(text,
    '^(%d%d%d%d)-(%d%d)-(%d%d)[Tt](%d%d):(%d%d):(%d%d)(%.?%d*)([Zz+-].*)$')
  if not y then return nil end
  local t = days_from_civil(tonumber(y), tonumber(mo), tonumber(d)) * 86400 +
    tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(s)
  if #frac > 1 then t = t + tonumber('0' .. frac) end
  if tz ~= 'Z' and tz ~= 'z' then
    local sign, oh, om = string.match(tz, '^([+-])(%d%d):(%d%d)$')
    if not sign then return nil end
    local offset = tonumber(oh) * 3600 + tonumber(om) * 60
    if sign == '+' then t = t - offset else t = t + offset end
  end
  return t
end

-- throttles ------------------------------------------------------------------------------------

-- The lock set of queue `name`'s throttle for worker `wid` (spec: its ff:throttles entry,
-- "concurrency|worker <limit> <timeout>"), and the lock's timeout; false when the throttle
-- is full. Locks past their timeout (held for workers that vanished, or jobs that outran
-- it) are dropped first.
local function throttle_check(spec, name, wid, now)
  local kind, limit, timeout = string.match(spec, '^(%a+) (%d+) (%d+)$')
  if not kind then return nil end
  local key = THROTTLE_PREFIX .. name
  if kind == 'worker' then key = key .. ':' .. wid end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if redis.call('ZCARD', key) >= tonumber(limit) then return false end
  return key, tonumber(timeout)
end

-- The throttle lock set a reservation record holds a lock in ('{"rid":N,"thr":"<lock set>",...}',
-- as reserve_job writes it), or nil: one anchored match. Records of older servers, which wrote
-- a '"' in the name as \", are decoded.
local function throttle_lock(record)
  local raw = string.match(record, '^{"rid":%d+,"thr":"([^"]*)"')
  if raw and string.sub(raw, -1) ~= '\\' then return json_string(raw) end
  if not raw then return nil end
  local ok, rec = pcall(cjson.decode, record)
  if ok and type(rec) == 'table' and type(rec['thr']) == 'string' then return rec['thr'] end
  return nil
end

-- A reservation record ended: if it held a throttle lock, release the lock and wake the
-- processes waiting on the queue, whose FETCH may have skipped it for being full. The lock
-- set's queue is the part after the prefix up to any ':' (queue names have none).
local function throttle_release(record, jid)
  local lock = throttle_lock(record)
  if not lock then return end
  redis.call('ZREM', lock, jid)
  local name = string.match(string.sub(lock, #THROTTLE_PREFIX + 1), '^[^:]+')
  if name then wake(name, WAITERS_PREFIX .. name) end
end

-- ff_throttle_lapsed(now, limit): wake the processes waiting on queues whose throttle had a lock lapse
-- by its timeout (a job that outran it, or a worker that vanished) by `now`: their FETCH skipped
-- the queue as full, and no ACK will tell them otherwise. Every lock set is listed in
-- THROTTLE_LAPSES_KEY with the earliest lapse of a lock in it (reserve_job adds it; a lock
-- released earlier leaves it there, costing one needless wake-up). Looks at `limit` lock sets
-- at most; returns how many it looked at.
-- KEYS: ff:thr-lapses; also the lock sets due and their queues' ff:wait:<queue>.
local function ff_throttle_lapsed(keys, args)
  local lapses, now = keys[1], args[1]
  local due = redis.call('ZRANGE', lapses, '-inf', now, 'BYSCORE', 'LIMIT', 0, args[2])
  for _, lock in ipairs(due) do
    redis.call('ZREMRANGEBYSCORE', lock, '-inf', now)
    local next_lapse = redis.call('ZRANGE', lock, 0, 0, 'WITHSCORES')
    if #next_lapse > 0 then
      redis.call('ZADD', lapses, next_lapse[2], lock)
    else
      redis.call('ZREM', lapses, lock)
    end
    local name = string.match(string.sub(lock, #THROTTLE_PREFIX + 1), '^[^:]+')
    if name then wake(name, WAITERS_PREFIX .. name) end
  end
  return #due
end
register('ff_throttle_lapsed', ff_throttle_lapsed)

-- ff_replace_hash(field, value, ...): replace the hash KEYS[1] (the master's tables from the
-- configuration, at start and on SIGHUP: ff:throttles, ff:cron:entries). KEYS: <hash>.
local function ff_replace_hash(keys, args)
  redis.call('DEL', keys[1])
  if #args > 0 then redis.call('HSET', keys[1], unpack(args)) end
  return #args / 2
end
register('ff_replace_hash', ff_replace_hash)

-- ff_throttle_usage(cursor, count): per throttle {queue, spec, locks held, workers holding
-- locks, jobs waiting in the queue}, for the web UI, over one ZSCAN page (about `count` from
-- `cursor`) of THROTTLE_LAPSES_KEY, which lists every lock set that holds a lock (not the
-- keyspace: a SCAN of it would hold Redis as long as it has keys): a per-worker throttle's
-- locks and holders are those of the page's lock sets (the caller sums the pages); the
-- cluster-wide locks and the queue sizes come with the first page (cursor '0'), 0 on the
-- others. Returns {next cursor ('0': the last page), {row...}}.
-- KEYS: ff:throttles, ff:prioq, ff:thr-lapses; also each throttled queue's lists and lock
-- sets.
local function ff_throttle_usage(keys, args)
  local now = redis_now()
  local first = args[1] == '0'
  local specs = redis.call('HGETALL', keys[1])
  local held, holders, waiting = {}, {}, {}
  for i = 1, #specs, 2 do
    local name = specs[i]
    held[name], holders[name], waiting[name] = 0, 0, 0
    if first then
      waiting[name] = qsize(keys[2], name)
      if string.sub(specs[i + 1], 1, 7) ~= 'worker ' then
        held[name] = redis.call('ZCOUNT', THROTTLE_PREFIX .. name, '(' .. now, '+inf')
      end
    end
  end
  local page = redis.call('ZSCAN', keys[3], args[1], 'COUNT', args[2])
  for i = 1, #page[2], 2 do
    local key = page[2][i]
    local name = string.match(string.sub(key, #THROTTLE_PREFIX + 1), '^([^:]+):')
    if name and held[name] then  -- a per-worker lock set (ff:thr:<queue>:<wid>)
      local n = redis.call('ZCOUNT', key, '(' .. now, '+inf')
      held[name] = held[name] + n
      if n > 0 then holders[name] = holders[name] + 1 end
    end
  end
  local out = {}
  for i = 1, #specs, 2 do
    local name = specs[i]
    out[#out + 1] = {name, specs[i + 1], held[name], holders[name], waiting[name]}
  end
  return {page[1], out}
end
read_only('ff_throttle_usage', ff_throttle_usage)

-- the hooks ------------------------------------------------------------------------------------

-- ent_push: a unique job (`lock`: its lock's name, nil if it is not unique) takes its lock for
-- `ms` milliseconds (unique_for plus the delay of a scheduled job: jobs.prepare computed them),
-- atomically with the push (the same FCALL), or is refused.
local function ent_push(doc, lock, ms)
  if not lock then return nil end
  local jid = doc['jid']
  if not redis.call('SET', UNIQUE_PREFIX .. lock, jid, 'NX', 'PX', ms) then
    return 'NOTUNIQUE Job not unique'
  end
  redis.call('HSET', UNIQUE_NAMES_KEY, jid, lock)
  return nil
end

-- ent_fetch(doc, now, text): ff_fetch popped this job (its JSON `text`; nil for a job in the
-- form job_head reads) with a "custom" object.
-- false: it has expired (custom.expires_at is past): it is discarded (and counted in
-- ff:expired), and the FETCH goes on. true: hand it out; a unique job with unique_until
-- "start" releases its lock now.
local function ent_fetch(doc, now, text)
  local custom = doc['custom']
  local expires = rfc3339_seconds(custom['expires_at'])
  if expires and expires <= now then
    redis.call('INCR', EXPIRED_KEY)
    unique_release(doc, text)
    return false
  end
  if custom['unique_until'] == 'start' then unique_release(doc, text) end
  return true
end

-- ent_done: a job that succeeded releases its unique lock; so does one that died or was
-- discarded (it will not run again). A job waiting for a retry keeps it.
local function ent_done(doc, outcome, text)
  if outcome ~= 'retry' then unique_release(doc, text) end
end

-- ff_lock(): a unique lock's holder (a jid, or false) and its milliseconds to live, for the web
-- UI's job page. KEYS: ff:uniq:<name>.
local function ff_lock(keys, args)
  return {redis.call('GET', keys[1]), redis.call('PTTL', keys[1])}
end
read_only('ff_lock', ff_lock)
