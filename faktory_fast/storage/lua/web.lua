-- The web UI's queries and edits (web/), read-mostly. Sorted-set entries are named by (score, jid): the
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

-- The bytes of jobs one call of a scan or page reads (after its first job): the jobs' count
-- alone would let big jobs hold Redis for seconds (2,000 jobs of 100 KB: 1.3 s; a text search
-- reads about 25 ms a MB).
local SCAN_BYTES = 256 * 1024

-- How many list or set elements to read next, to stay near SCAN_BYTES after `bytes` in `read` of them:
-- one at first (it may be a 1 MB job), then as many as the mean size so far leaves room for (at
-- least 1, at most `left`).
local function next_chunk(read, bytes, left)
  if read == 0 then return math.min(1, left) end
  return math.max(1, math.min(left, math.floor((SCAN_BYTES - bytes) * read / math.max(bytes, 1))))
end

-- ff_web_set_page(offset, count): {size, {member, score, ...}}: up to `count` entries from
-- `offset` on in score order, fewer once they pass about SCAN_BYTES (the caller goes on from
-- offset + the entries returned). KEYS: <set>.
local function ff_web_set_page(keys, args)
  local set, offset, left = keys[1], tonumber(args[1]), tonumber(args[2])
  local out, read, bytes = {}, 0, 0
  while left > 0 and bytes < SCAN_BYTES do
    local n = next_chunk(read, bytes, left)
    local part = redis.call('ZRANGE', set, offset, offset + n - 1, 'WITHSCORES')
    if #part == 0 then break end
    for i = 1, #part, 2 do
      out[#out + 1] = part[i]
      out[#out + 1] = part[i + 1]
      bytes = bytes + #part[i]
    end
    offset, left, read = offset + #part / 2, left - #part / 2, read + #part / 2
  end
  return {redis.call('ZCARD', set), out}
end
read_only('ff_web_set_page', ff_web_set_page)

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
read_only('ff_web_set_get', ff_web_set_get)

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
register('ff_web_set_remove', ff_web_set_remove)

-- The start of a job's JSON as jobs.encode writes it when its jid is `jid`; nil for jid ''.
local function jid_head(jid)
  if jid == '' then return nil end
  return '{"jid":"' .. quote_safe(jid) .. '"'
end

-- ff_web_set_filter(cursor, scan_cap, want, jobtype, queue, text, jid): ZSCAN from `cursor` for
-- entries with that jobtype and queue ('' = any) containing `text` (lower case, '' = any) and,
-- given a jid, starting '{"jid":"<jid>"' (jid_head: to find one job),
-- stopping after about scan_cap entries (ops.web.WEB_SET_SCAN at most: a filter's cap of more is
-- scanned over several calls, each from the cursor the last returned), about SCAN_BYTES of
-- them or once `want` matched.
-- Returns {next_cursor ('0' = scanned everything), scanned, {member, score, ...}}. KEYS: <set>.
local function ff_web_set_filter(keys, args)
  local set, cursor, cap, want = keys[1], args[1], tonumber(args[2]), tonumber(args[3])
  local jobtype, queue, text, head = args[4], args[5], args[6], jid_head(args[7])
  local jt = jobtype ~= '' and ('"jobtype":"' .. jobtype .. '"') or nil
  local qu = queue ~= '' and ('"queue":"' .. queue .. '"') or nil
  local out, scanned, matched, bytes = {}, 0, 0, 0
  repeat
    -- COUNT is a hint (a small set comes whole): 1 first, then as many as SCAN_BYTES leaves
    local reply = redis.call('ZSCAN', set, cursor, 'COUNT', next_chunk(scanned, bytes, 100))
    cursor = reply[1]
    local items = reply[2]
    for i = 1, #items, 2 do
      local m = items[i]
      scanned = scanned + 1
      bytes = bytes + #m
      if (not head or string.sub(m, 1, #head) == head)
          and (not jt or string.find(m, jt, 1, true)) and (not qu or string.find(m, qu, 1, true))
          and (text == '' or string.find(string.lower(m), text, 1, true)) then
        out[#out + 1] = m
        out[#out + 1] = items[i + 1]
        matched = matched + 1
      end
    end
  until cursor == '0' or scanned >= cap or matched >= want or bytes >= SCAN_BYTES
  return {cursor, scanned, out}
end
read_only('ff_web_set_filter', ff_web_set_filter)

-- Priorities of a queue in the order FETCH takes them.
local function fetch_order(prioq, name)
  if redis.call('SISMEMBER', prioq, name) == 0 then return {5} end
  return {9, 8, 7, 6, 5, 4, 3, 2, 1}
end

-- Calls each(priority, job, position) for up to `count` jobs of queue `name` from `skip` on, in
-- the order FETCH takes them (position: 0 for the next one to be fetched, over all its
-- priority lists); with `bounded`, stops after about SCAN_BYTES of jobs. Returns the queue's
-- size and how many jobs it read. Touches q:<name>[:p<N>].
local function queue_range(prioq, name, skip, count, each, bounded)
  local total, left, read, bytes = 0, count, 0, 0
  for _, p in ipairs(fetch_order(prioq, name)) do
    local key = qkey(name, p)
    local len = redis.call('LLEN', key)
    while left > 0 and skip < len and not (bounded and bytes >= SCAN_BYTES) do
      -- The next job to run is at the right end (index -1).
      local n = bounded and next_chunk(read, bytes, left) or left
      local jobs = redis.call('LRANGE', key, -(skip + n), -(skip + 1))
      if #jobs == 0 then break end
      for i = #jobs, 1, -1 do
        each(p, jobs[i], total + skip + #jobs - i)
        bytes = bytes + #jobs[i]
      end
      left, read, skip = left - #jobs, read + #jobs, skip + #jobs
    end
    skip = math.max(0, skip - len)
    total = total + len
  end
  return total, read
end

-- ff_web_queue_page(name, offset, count): {size, {priority, job, ...}}: up to `count` of the
-- queue's jobs over all its priority lists in the order they will be fetched, skipping `offset`
-- of them; fewer once they pass about SCAN_BYTES (the caller goes on from offset + the jobs
-- returned).
-- KEYS: ff:prioq, q:<name> (and its q:<name>:p<N> when ff:prioq lists it).
local function ff_web_queue_page(keys, args)
  local out = {}
  local total = queue_range(keys[1], args[1], tonumber(args[2]), tonumber(args[3]),
    function(p, job)
      out[#out + 1] = p
      out[#out + 1] = job
    end, true)
  return {total, out}
end
read_only('ff_web_queue_page', ff_web_queue_page)

-- The value of job JSON `job`'s first "jobtype" key (the one the filters match), '' if none.
local function jobtype_of(job)
  local _, e = string.find(job, '"jobtype":"', 1, true)
  if not e then return '' end
  local i = e + 1
  while true do
    local q = string.find(job, '["\\]', i)
    if not q then return '' end
    if string.byte(job, q) == 34 then return json_string(string.sub(job, e + 1, q - 1)) end
    i = q + 2  -- past the escaped character
  end
end

-- ff_web_queue_types(name, offset, count): how many of up to `count` jobs of the queue from
-- `offset` on in fetch order (fewer when they pass SCAN_BYTES) have each job type: {size,
-- {jobtype, n, ...}}. The caller keeps `count` to ops.web.WEB_QUEUE_SCAN and goes on from
-- offset + the jobs counted. KEYS: ff:prioq, q:<name> (and its q:<name>:p<N>).
local function ff_web_queue_types(keys, args)
  local counts = {}
  local total = queue_range(keys[1], args[1], tonumber(args[2]), tonumber(args[3]),
    function(_, job)
      local jt = jobtype_of(job)
      counts[jt] = (counts[jt] or 0) + 1
    end, true)
  local out = {}
  for jt, n in pairs(counts) do
    out[#out + 1] = jt
    out[#out + 1] = n
  end
  return {total, out}
end
read_only('ff_web_queue_types', ff_web_queue_types)

-- ff_web_queue_filter(name, cursor, scan_cap, want, jid, jobtype, text): the queue's jobs
-- newest first (the reverse of the fetch order: priority 1 first, each list from its head)
-- from `cursor` ('0' first, else '<priority>.<index from the list's head>') that start
-- '{"jid":"<jid>"' (jid_head), name that jobtype and contain `text` (lower case; '' = any),
-- stopping after scan_cap jobs (ops.web.WEB_QUEUE_SCAN at most), about SCAN_BYTES of jobs or
-- once `want` matched.
-- Counted from the head, a cursor stays good while the queue runs: FETCH takes from the tail,
-- and a job pushed meanwhile only makes the next call see one job twice, never skip one.
-- Returns {next cursor ('0': the end of the queue), scanned, {priority, position, job, ...}},
-- position as ff_web_queue_page counts (the job's place in fetch order).
-- KEYS: ff:prioq, q:<name> (and its q:<name>:p<N>).
local function ff_web_queue_filter(keys, args)
  local name, cap, want = args[1], tonumber(args[3]), tonumber(args[4])
  local head, text = jid_head(args[5]), args[7]
  local jt = args[6] ~= '' and ('"jobtype":"' .. args[6] .. '"') or nil
  local from_p, at = 0, 0
  if args[2] ~= '0' then
    local p, i = string.match(args[2], '^(%d)%.(%d+)$')
    from_p, at = tonumber(p), tonumber(i)
  end
  local order = fetch_order(keys[1], name)
  local lens, before, sum = {}, {}, 0
  for _, p in ipairs(order) do
    before[p] = sum
    lens[p] = redis.call('LLEN', qkey(name, p))
    sum = sum + lens[p]
  end
  local out, scanned, matched, bytes = {}, 0, 0, 0
  local function done() return scanned >= cap or matched >= want or bytes >= SCAN_BYTES end
  for k = #order, 1, -1 do
    local p = order[k]
    if p >= from_p then
      if p > from_p then at = 0 end
      if done() then return {p .. '.' .. at, scanned, out} end
      local key, len = qkey(name, p), lens[p]
      while at < len and not done() do
        local n = next_chunk(scanned, bytes, cap - scanned)
        local jobs = redis.call('LRANGE', key, at, at + n - 1)
        if #jobs == 0 then break end  -- (the list was shorter: fetched meanwhile)
        local taken = #jobs
        for i, job in ipairs(jobs) do
          bytes = bytes + #job
          if (not head or string.sub(job, 1, #head) == head)
              and (not jt or string.find(job, jt, 1, true))
              and (text == '' or string.find(string.lower(job), text, 1, true)) then
            out[#out + 1] = p
            out[#out + 1] = before[p] + len - at - i
            out[#out + 1] = job
            matched = matched + 1
            if matched >= want then
              taken = i
              break
            end
          end
        end
        scanned = scanned + taken
        at = at + taken
      end
      if at < len and done() then
        return {p .. '.' .. at, scanned, out}
      end
    end
  end
  return {'0', scanned, out}
end
read_only('ff_web_queue_filter', ff_web_queue_filter)

-- ff_web_batch_of(jid, start, count): the batch holding job `jid`, looking at `count` batches
-- of ff:batches newest first from rank `start`: {next rank (0: the list ended), bid, the job's
-- state}, bid '' if none of those has it. KEYS: ff:batches (and each batch's ff:bj:<bid>).
local function ff_web_batch_of(keys, args)
  local jid, start, count = args[1], tonumber(args[2]), tonumber(args[3])
  local bids = redis.call('ZREVRANGE', keys[1], start, start + count - 1)
  for _, bid in ipairs(bids) do
    local state = redis.call('HGET', BATCH_JOBS_PREFIX .. bid, jid)
    if state then return {0, bid, state} end
  end
  if #bids < count then return {0, '', ''} end
  return {start + count, '', ''}
end
read_only('ff_web_batch_of', ff_web_batch_of)

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
register('ff_web_queue_delete', ff_web_queue_delete)

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
read_only('ff_web_queues', ff_web_queues)
