"""The store's operations by domain, each module beside its file of the Lua library (``lua/``):
``jobs`` (jobs.lua), ``workers``, ``queues``, ``batches`` (batch.lua), ``ent`` (unique locks and
throttles: ent.lua), ``cron``, ``web`` and ``migrations``. ``store.Operations`` combines them."""
