-- Job metrics: executions, failures and execution times by queue and job type, counted in each
-- server process and added here once every few seconds (faktory_fast/job_metrics.py), so they
-- cost Redis nothing per job.

-- ff_metrics(minute_ttl, hour_ttl, max_pairs, k, [count, [field, increment] * count] * k): add
-- one process's counts of k minutes. A field is "<stat>|<queue>|<jobtype>"; each is added to
-- its minute's hash, its hour's hash and the lifetime totals. The lifetime totals hold at most
-- `max_pairs` (queue, jobtype) pairs: the counts of a pair beyond them go to its queue's
-- jobtype "" (shown as "other"), so no client can grow them without bound.
-- KEYS: ff:m:total, ff:m:pairs, then per minute its ff:m:min:<minute> and ff:m:hour:<hour>.
local function ff_metrics(keys, args)
  local minute_ttl, hour_ttl, max_pairs = args[1], args[2], tonumber(args[3])
  local total, pairs_key = keys[1], keys[2]
  local kept = {}  -- pair -> true (counted under its name) or false (over the limit)
  local a = 5
  for j = 1, tonumber(args[4]) do
    local minute, hour = keys[1 + 2 * j], keys[2 + 2 * j]
    local count = tonumber(args[a])
    a = a + 1
    for _ = 1, count do
      local field, increment = args[a], args[a + 1]
      a = a + 2
      local bar = string.find(field, '|', 1, true)
      local pair = string.sub(field, bar + 1)
      local ok = kept[pair]
      if ok == nil then
        ok = redis.call('SISMEMBER', pairs_key, pair) == 1
        if not ok and redis.call('SCARD', pairs_key) < max_pairs then
          redis.call('SADD', pairs_key, pair)
          ok = true
        end
        kept[pair] = ok
      end
      if not ok then  -- "<stat>|<queue>|"
        field = string.sub(field, 1, string.find(field, '|', bar + 1, true))
      end
      redis.call('HINCRBY', minute, field, increment)
      redis.call('HINCRBY', hour, field, increment)
      redis.call('HINCRBY', total, field, increment)
    end
    redis.call('EXPIRE', minute, minute_ttl)
    redis.call('EXPIRE', hour, hour_ttl)
  end
  return 1
end
redis.register_function('ff_metrics', ff_metrics)
