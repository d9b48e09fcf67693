-- Unique jobs, expiring jobs and throttling (issue 13; docs/enterprise.md; cron is cron.lua). Pasted into
-- faktory.lua by store.library_source; the hooks' contract is in faktory.lua, above the line
-- that includes this file. Keys built here from prefixes (not declared by callers):
-- ff:uniq:<sha1> (UNIQUE_PREFIX), ff:thr:<queue>[:<wid>] (THROTTLE_PREFIX), ff:expired
-- (EXPIRED_KEY), and the queue lists and waiters sets of the queues jobs name.

-- Redis's clock as unix seconds (ACK and PUSH are not given a time).
local function redis_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1e6
end

-- unique ---------------------------------------------------------------------------------------

-- Does a decoded JSON array or object hold an object (a table with string keys) anywhere?
local function has_object(v)
  for k, x in pairs(v) do
    if type(k) ~= 'number' or (type(x) == 'table' and has_object(x)) then return true end
  end
  return false
end

-- A decoded JSON value as canonical text: object keys sorted, so that {"a":1,"b":2} and
-- {"b":2,"a":1} name the same lock (cjson's own encoding follows Lua's table order). Values
-- without objects (the usual args: arrays of scalars) are cjson's encoding, in one call.
-- Numbers pass through Lua's doubles and cjson's 14 digits: the fallback of canonical_text.
local function canonical(v)
  if type(v) ~= 'table' or not has_object(v) then return cjson.encode(v) end
  local names = {}
  for k in pairs(v) do names[#names + 1] = k end
  local parts = {}
  if #names == #v then  -- an array holding objects
    for i = 1, #v do parts[i] = canonical(v[i]) end
    return '[' .. table.concat(parts, ',') .. ']'
  end
  for i, k in ipairs(names) do names[i] = tostring(k) end
  table.sort(names)
  for i, k in ipairs(names) do parts[i] = cjson.encode(k) .. ':' .. canonical(v[k]) end
  return '{' .. table.concat(parts, ',') .. '}'
end

-- The index just past the JSON value that starts at index `i` of `s`, or nil if there is none.
-- For the compact JSON our jobs are stored as (orjson's: no spaces between tokens).
local function value_end(s, i)
  local c = string.byte(s, i)
  if c == 34 then  -- a string: up to the first quote that is not escaped
    local j = i + 1
    while true do
      local q = string.find(s, '["\\]', j)
      if not q then return nil end
      if string.byte(s, q) == 92 then j = q + 2 else return q + 1 end
    end
  elseif c == 123 or c == 91 then  -- an object or array: to its closing bracket
    local depth, j = 0, i
    while true do
      local k = string.find(s, '[][{}"]', j)
      if not k then return nil end
      local b = string.byte(s, k)
      if b == 34 then
        j = value_end(s, k)
        if not j then return nil end
      elseif b == 123 or b == 91 then
        depth, j = depth + 1, k + 1
      else
        depth, j = depth - 1, k + 1
        if depth == 0 then return j end
      end
    end
  elseif c == nil then
    return nil
  end
  return string.find(s, '[,%]}]', i) or #s + 1  -- a number, true, false or null
end

-- The JSON value s[i, j) as canonical text, without decoding it: object members sorted (each
-- key has one spelling in orjson's output), everything else as written, so numbers keep every
-- digit (two ids that differ in their 17th digit name two locks). nil if it is not JSON.
local function canonical_text(s, i, j)
  local text = string.sub(s, i, j - 1)
  if not string.find(text, '{', 1, true) then return text end  -- no object inside
  local open = string.byte(s, i)
  if open ~= 123 and open ~= 91 then return text end  -- a string holding a brace
  local members = open == 123
  local parts = {}
  local k = i + 1
  if k == j - 1 then return text end  -- {} or []
  while k < j - 1 do
    local part
    if members then
      local key_end = value_end(s, k)
      if not key_end or string.byte(s, key_end) ~= 58 then return nil end  -- ':'
      local v_end = value_end(s, key_end + 1)
      if not v_end or v_end <= key_end + 1 then return nil end
      local v = canonical_text(s, key_end + 1, v_end)
      if not v then return nil end
      part, k = string.sub(s, k, key_end) .. v, v_end
    else
      local v_end = value_end(s, k)
      if not v_end or v_end <= k then return nil end  -- not JSON: never loop on it
      part, k = canonical_text(s, k, v_end), v_end
      if not part then return nil end
    end
    parts[#parts + 1] = part
    if string.byte(s, k) == 44 then k = k + 1 end  -- ','
  end
  if members then
    table.sort(parts)
    return '{' .. table.concat(parts, ',') .. '}'
  end
  return '[' .. table.concat(parts, ',') .. ']'
end

-- The canonical text of the top-level "args" of a job's JSON text, or nil.
local function args_text(job)
  local k, n = 2, #job
  while k < n do
    local key_end = value_end(job, k)
    if not key_end or string.byte(job, key_end) ~= 58 then return nil end
    local v_end = value_end(job, key_end + 1)
    if not v_end then return nil end
    if string.sub(job, k, key_end - 1) == '"args"' then
      return canonical_text(job, key_end + 1, v_end)
    end
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

-- The lock key of a unique job: sha1 of jobtype, queue and canonical args, NUL-separated. The
-- args are canonical() of the decoded job, unless one of their numbers does not fit cjson's
-- digits: then canonical_text() of them as the job's JSON text (`text`) writes them. `legacy`:
-- canonical() regardless, as servers before that did (their locks are released under it).
-- Second result: whether the key is not the one `legacy` would give.
local function unique_key(doc, queue, text, legacy)
  local args = doc['args']
  local canon = nil
  if not legacy and text and type(args) == 'table' and not fits_cjson(args) then
    canon = args_text(text)
  end
  return UNIQUE_PREFIX .. redis.sha1hex(tostring(doc['jobtype']) .. '\0' .. queue .. '\0' ..
    (canon or canonical(args))), canon ~= nil
end

-- Seconds a job's unique lock lasts (custom.unique_for, a number or numeric string), or nil if
-- the job is not unique.
local function unique_for(custom)
  local n = tonumber(custom['unique_for'])
  if n and n > 0 then return n end
  return nil
end

-- Drop the job's unique lock if the job (decoded `doc`, JSON `text`) still holds it (a later
-- duplicate may hold it now).
local function unique_release(doc, text)
  if not unique_for(doc['custom']) then return end
  local queue = doc['queue'] or 'default'
  local key, new_name = unique_key(doc, queue, text)
  if redis.call('GET', key) ~= doc['jid'] then
    if not new_name then return end
    key = unique_key(doc, queue, text, true)  -- a lock an older server took
    if redis.call('GET', key) ~= doc['jid'] then return end
  end
  redis.call('DEL', key)
end

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
-- as reserve_job writes it), or nil. Read by a pattern (decoded only if its name needed
-- escaping: a wid with quotes); a record without one costs one anchored match.
local function throttle_lock(record)
  if not string.match(record, '^{"rid":%d+,"thr":') then return nil end
  local lock = string.match(record, '^{"rid":%d+,"thr":"([^"\\]*)"')
  if lock then return lock end
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

-- ff_replace_hash(field, value, ...): replace the hash KEYS[1] (the master's tables from the
-- configuration, at start and on SIGHUP: ff:throttles, ff:cron:entries). KEYS: <hash>.
local function ff_replace_hash(keys, args)
  redis.call('DEL', keys[1])
  if #args > 0 then redis.call('HSET', keys[1], unpack(args)) end
  return #args / 2
end

-- ff_throttle_usage(): per throttle {queue, spec, locks held (cluster-wide, or summed over
-- workers), workers holding locks, jobs waiting in the queue}, for the web UI.
-- KEYS: ff:throttles, ff:prioq; also each throttled queue's lists and lock sets.
local function ff_throttle_usage(keys, args)
  local out = {}
  local now = redis_now()
  local specs = redis.call('HGETALL', keys[1])
  for i = 1, #specs, 2 do
    local name, spec = specs[i], specs[i + 1]
    local held, holders = 0, 0
    if string.sub(spec, 1, 7) == 'worker ' then
      local cursor = '0'
      repeat
        local reply = redis.call('SCAN', cursor, 'MATCH', THROTTLE_PREFIX .. name .. ':*',
          'COUNT', 100)
        cursor = reply[1]
        for _, key in ipairs(reply[2]) do
          local n = redis.call('ZCOUNT', key, '(' .. now, '+inf')
          held = held + n
          if n > 0 then holders = holders + 1 end
        end
      until cursor == '0'
    else
      held = redis.call('ZCOUNT', THROTTLE_PREFIX .. name, '(' .. now, '+inf')
    end
    out[#out + 1] = {name, spec, held, holders, qsize(keys[2], name)}
  end
  return out
end

-- the hooks ------------------------------------------------------------------------------------

-- ent_push: a unique job takes its lock, atomically with the push (the same FCALL), or is
-- refused. The lock lasts unique_for seconds, plus the delay of a scheduled job.
local function ent_push(doc, queue, score, text)
  local ttl = unique_for(doc['custom'])
  if not ttl then return nil end
  if score ~= '' then
    local delay = tonumber(score) - redis_now()
    if delay > 0 then ttl = ttl + delay end
  end
  if redis.call('SET', unique_key(doc, queue, text), tostring(doc['jid']), 'NX', 'PX',
      math.ceil(ttl * 1000)) then
    return nil
  end
  return 'NOTUNIQUE Job not unique'
end

-- ent_fetch(doc, now, text): ff_fetch popped this job (its JSON `text`) with a "custom" object.
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

-- ff_unique_lock(jobtype, queue, args_json): {lock key, jid holding it or false, ms to live},
-- for the web UI's job page. KEYS: none known beforehand (the lock's key is computed).
local function ff_unique_lock(keys, args)
  local ok, jobargs = pcall(cjson.decode, args[3])
  if not ok then return false end
  local key = unique_key({jobtype = args[1], args = jobargs}, args[2],
    '{"args":' .. args[3] .. '}')
  return {key, redis.call('GET', key), redis.call('PTTL', key)}
end

-- Registered here rather than with the core functions at the end of faktory.lua.
redis.register_function('ff_replace_hash', ff_replace_hash)
redis.register_function('ff_throttle_lapsed', ff_throttle_lapsed)
redis.register_function{function_name = 'ff_throttle_usage', callback = ff_throttle_usage,
  flags = {'no-writes'}}
redis.register_function{function_name = 'ff_unique_lock', callback = ff_unique_lock,
  flags = {'no-writes'}}
