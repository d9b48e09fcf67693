-- Job metrics: executions, failures and execution times by queue and job type, counted in each
-- server process and added here once every few seconds (faktory_fast/job_metrics.py), so they
-- cost Redis nothing per job. A bucket is a hash: field '<queue>|<jobtype>', value the pair's
-- counts packed as '<executions> <failures> <microseconds>[ <bucket>:<n>]...'.

-- The sum of two packed counts (`old` may be nil).
local function add_counts(old, new)
  if not old then return new end
  local sums, buckets, order = {0, 0, 0}, {}, {}
  for _, text in ipairs({old, new}) do
    local i = 0
    for part in string.gmatch(text, '%S+') do
      i = i + 1
      if i <= 3 then
        sums[i] = sums[i] + (tonumber(part) or 0)
      else
        local b, n = string.match(part, '^(%d+):(%d+)$')
        if b then
          b = tonumber(b)
          if not buckets[b] then order[#order + 1] = b end
          buckets[b] = (buckets[b] or 0) + tonumber(n)
        end
      end
    end
  end
  table.sort(order)
  local out = string.format('%.0f %.0f %.0f', sums[1], sums[2], sums[3])
  for _, b in ipairs(order) do out = out .. ' ' .. b .. ':' .. string.format('%.0f', buckets[b]) end
  return out
end

-- ff_metrics(minute_ttl, hour_ttl, max_pairs, k, [count, [pair, counts] * count] * k): add one
-- process's counts of k minutes, each pair's to its minute's hash, its hour's hash and the
-- lifetime totals. The lifetime totals hold at most `max_pairs` pairs: the counts of a pair
-- beyond them go to its queue's jobtype '' (shown as "other"), so no client can grow them
-- without bound.
-- KEYS: ff:m:total, ff:m:pairs, then per minute its ff:m:min:<minute> and ff:m:hour:<hour>.
local function ff_metrics(keys, args)
  local minute_ttl, hour_ttl, max_pairs = args[1], args[2], tonumber(args[3])
  local total, pairs_key = keys[1], keys[2]
  local kept = {}  -- pair -> true (counted under its name) or false (over the limit)
  local a = 5
  for j = 1, tonumber(args[4]) do
    local hashes = {keys[1 + 2 * j], keys[2 + 2 * j], total}
    local count = tonumber(args[a])
    a = a + 1
    for _ = 1, count do
      local pair, counts = args[a], args[a + 1]
      a = a + 2
      local ok = kept[pair]
      if ok == nil then
        ok = redis.call('SISMEMBER', pairs_key, pair) == 1
        if not ok and redis.call('SCARD', pairs_key) < max_pairs then
          redis.call('SADD', pairs_key, pair)
          ok = true
        end
        kept[pair] = ok
      end
      local field = ok and pair or string.sub(pair, 1, string.find(pair, '|', 1, true))
      for _, hash in ipairs(hashes) do
        local old = redis.call('HGET', hash, field)
        redis.call('HSET', hash, field, add_counts(old or nil, counts))
      end
    end
    redis.call('EXPIRE', hashes[1], minute_ttl)
    redis.call('EXPIRE', hashes[2], hour_ttl)
  end
  return 1
end
register('ff_metrics', ff_metrics)
