-- Cron (docs/enterprise.md, "Cron"): the functions the master's cron task calls. They push
-- as ff_push does, with jobs.lua's push_one.

-- ff_cron_push(claim, claim_ttl, entry, tick, queue, priority, job, score, hooks): push a cron
-- entry's job for one tick, once across every process and node: only the first caller to
-- claim `claim` (SET NX, kept claim_ttl seconds) pushes; claim '' pushes unconditionally
-- ("enqueue now"). The job is pushed as ff_push pushes one (push_one: the Enterprise hooks
-- included, so a unique cron job or one of a batch is one like any other). Records
-- "<tick> <jid>" as the entry's last run. Returns 1 (pushed), 0 (claimed elsewhere) or the
-- refusal ("CODE message"). KEYS: scheduled, queues, ff:prioq, ff:cron:last,
-- q:<queue>[:p<N>], ff:wait:<queue>; and the claim key.
local function ff_cron_push(keys, args)
  local claim, ttl, entry, tick = args[1], args[2], args[3], args[4]
  local queue, prio, job, score = args[5], tonumber(args[6]), args[7], args[8]
  if claim ~= '' and not redis.call('SET', claim, entry, 'NX', 'EX', ttl) then return 0 end
  local refusal = push_one(keys[1], keys[2], keys[3], queue, prio, job, score, args[9], keys[5],
    keys[6])
  if refusal then return refusal end
  redis.call('HSET', keys[4], entry, tick .. ' ' .. job_head(job))
  return 1
end
register('ff_cron_push', ff_cron_push)

-- ff_cron_seen(now): move the cluster's cron watermark forward to `now` (never back); returns
-- the previous one ('' if none). KEYS: ff:cron:seen.
local function ff_cron_seen(keys, args)
  local old = redis.call('GET', keys[1])
  if not old or tonumber(old) < tonumber(args[1]) then redis.call('SET', keys[1], args[1]) end
  return old or ''
end
register('ff_cron_seen', ff_cron_seen)
