-- Queues and administration: INFO, FLUSH, QUEUE (PAUSE, RESUME, REMOVE, LATENCY) and MUTATE.

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
read_only('ff_info', ff_info)

-- ff_flush(cursor, count): FLUSHDB, but the live registry of processes, connections and
-- workers survives (they are still connected); everything about jobs and queues is gone.
-- Publishes 'flush' on CONTROL_CHANNEL so processes drop what they cached about empty queues.
-- On a cluster the node holds others' keys too: a page of ours (SCAN of about `count` keys
-- matching KEY_TAG from `cursor`) is deleted a call, the registry's keys left as they are.
-- Returns {next cursor ('0': done), 0}.
-- KEYS: ff:conns, ff:cmds, ff:tasks (kept), ff:wids, ff:quiet (kept, with the ff:w:<wid> of
-- each registered worker), ff:throttles, ff:cron:entries (kept: configuration), ff:partitions
-- (kept: a cluster's layout; never on a single Redis); FLUSHDB drops every other key.
local function ff_flush(keys, args)
  local wids, quiet = keys[4], keys[5]
  if KEY_TAG ~= '' then
    local kept = {}
    for _, k in ipairs(keys) do kept[k] = true end
    local page = redis.call('SCAN', args[1], 'MATCH', KEY_TAG .. '*', 'COUNT', args[2])
    for _, k in ipairs(page[2]) do
      if not kept[k] and string.sub(k, 1, #WORKER_PREFIX) ~= WORKER_PREFIX then
        redis.call('UNLINK', k)
      end
    end
    if page[1] == '0' then redis.call('PUBLISH', CONTROL_CHANNEL, 'flush') end
    return {page[1], 0}
  end
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
  return {'0', 0}
end
register('ff_flush', ff_flush)

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
register('ff_queue', ff_queue)

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
read_only('ff_queue_heads', ff_queue_heads)

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
register('ff_mutate', ff_mutate)

-- ff_mutate_select(cursor, count, mode, pattern, extra...): one page of the members of the
-- sorted set KEYS[1] a MUTATE filter selects (see `selected`), for a requeue: {next cursor,
-- {member...}}. KEYS: <target>.
local function ff_mutate_select(keys, args)
  local extra = {}
  for i = 5, #args do extra[#extra + 1] = args[i] end
  local found, cursor = selected(keys[1], args[1], args[2], args[3], args[4], extra)
  return {cursor, found}
end
read_only('ff_mutate_select', ff_mutate_select)
