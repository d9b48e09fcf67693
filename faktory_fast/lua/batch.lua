-- Batches and job tracking (issue 12). Pasted into faktory.lua by store.library_source; the
-- hooks' contract is in faktory.lua, above the line that includes this file.

local function batch_push(doc)
  return nil
end

local function batch_done(doc, outcome)
end
