#!lua name=faktory_fast
-- faktory_fast's Redis function library: every state change a protocol command makes is one
-- FCALL of one function here, so any number of server processes can share one Redis.
--
-- The library is the files of this directory in one FUNCTION LOAD, concatenated in the order
-- of store.LUA_FILES (this file first: the local helpers every other file uses); a file may use
-- the locals of the files before it. Each function is registered right after its definition.
--
-- Keys. Each function is called with the keys it always touches as KEYS, in the order its
-- comment gives (its Fn in faktory_fast/storage/ops/ passes them, named by
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
-- WAKE_PREFIX, CONTROL_CHANNEL (its pub/sub channels), KEY_TAG (the hash tag every key of
-- the current call carries on a Redis Cluster; "" on a single Redis) and use_tag(tag), which
-- sets it and puts it on the key names (register does, each call), the named results OUTCOME
-- (GONE: no such record, nothing changed; DONE; CHANGED: not the record the caller read) and
-- FETCHED (what ff_fetch found instead of a job: EMPTY, QUIET, ALL_PAUSED, SOME_PAUSED, MORE).
--@names from python

local PRIORITIES_HIGH = {9, 8, 7, 6}
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

-- `fn` as registered: first, the key names built here get the tag of the keys the call names
-- (use_tag; '{ff}' or another partition's on a cluster, keys.layout_tag; none on a single
-- Redis), so that every key a call touches is in the slot of its first one.
local function tagging(fn)
  return function(keys, args)
    local first, tag = keys[1], ''
    if first and string.byte(first, 1) == 123 then tag = string.match(first, '^{ff[^}]*}') or '' end
    if tag ~= KEY_TAG then use_tag(tag) end
    return fn(keys, args)
  end
end

-- Register `fn` as `name`.
local function register(name, fn)
  redis.register_function(name, tagging(fn))
end

-- Register `fn` as `name`, flagged as a function that writes nothing (it may run on a replica).
local function read_only(name, fn)
  redis.register_function{function_name = name, callback = tagging(fn), flags = {'no-writes'}}
end
