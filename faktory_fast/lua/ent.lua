-- Unique jobs, expiring jobs, throttling and cron (issue 13). Pasted into faktory.lua by
-- store.library_source; the hooks' contract is in faktory.lua, above the line that includes
-- this file.

local function ent_push(doc, queue, score)
  return nil
end

local function ent_done(doc, outcome)
end
