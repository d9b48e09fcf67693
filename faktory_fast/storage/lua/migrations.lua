-- Data Faktory wrote, moved into this server's layout when the master starts
-- (faktory_fast/master/migration.py).

-- ff_migrate_reservation(old_member, jid, record, score): replace a Faktory-format `working`
-- entry (the reservation JSON as member) by ours (jid member, record in ff:res).
-- OUTCOME.DONE, or OUTCOME.GONE if the old entry was not there. KEYS: working, ff:res.
local function ff_migrate_reservation(keys, args)
  if redis.call('ZREM', keys[1], args[1]) == 0 then return OUTCOME.GONE end
  redis.call('HSET', keys[2], args[2], args[3])
  redis.call('ZADD', keys[1], args[4], args[2])
  return OUTCOME.DONE
end
register('ff_migrate_reservation', ff_migrate_reservation)

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
register('ff_migrate_queue', ff_migrate_queue)
