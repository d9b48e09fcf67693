-- Workers and server processes: the connection registry (ff:conns, ff:cmds) and the workers'
-- registry (ff:wids, ff:w:<wid>, ff:quiet): HELLO, the end of a connection, BEAT, the web UI's
-- quiet and terminate, the reaping of workers gone silent.

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
register('ff_hello', ff_hello)

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
register('ff_bye', ff_bye)

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
register('ff_beat', ff_beat)

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
register('ff_signal', ff_signal)

-- ff_quiet_states(cursor, count): a page of the workers ff:quiet lists (SSCAN of about `count`
-- from `cursor`) with their states: {next cursor ('0': done), {wid, state, ...}}.
-- KEYS: ff:quiet; also ff:w:<wid> of each.
local function ff_quiet_states(keys, args)
  local page = redis.call('SSCAN', keys[1], args[1], 'COUNT', args[2])
  local out = {}
  for _, wid in ipairs(page[2]) do
    local state = redis.call('HGET', WORKER_PREFIX .. wid, 'state')
    if state == 'quiet' or state == 'terminate' then
      out[#out + 1] = wid
      out[#out + 1] = state
    end
  end
  return {page[1], out}
end
read_only('ff_quiet_states', ff_quiet_states)

-- ff_quiet_mirror(ttl, first, wid, state, ...): in a partition other than the home one, the
-- quiet and terminating workers as ff_quiet_states read them there, for this partition's
-- ff_fetch (storage/partitions.py). `first` '1': the copy starts over. What is not copied
-- again within `ttl` seconds lapses. KEYS: ff:quiet (this partition's); also ff:w:<wid> of each.
local function ff_quiet_mirror(keys, args)
  if args[2] == '1' then redis.call('DEL', keys[1]) end
  for i = 3, #args - 1, 2 do
    local wkey = WORKER_PREFIX .. args[i]
    redis.call('SADD', keys[1], args[i])
    redis.call('HSET', wkey, 'state', args[i + 1])
    redis.call('EXPIRE', wkey, args[1])
  end
  if redis.call('EXISTS', keys[1]) == 1 then redis.call('EXPIRE', keys[1], args[1]) end
  return 0
end
register('ff_quiet_mirror', ff_quiet_mirror)

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
register('ff_reap_workers', ff_reap_workers)

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
register('ff_process_gone', ff_process_gone)

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
read_only('ff_workers', ff_workers)
