"""Start-up migration: data Faktory wrote becomes data this server serves.

Runs in the master before any client is accepted, on the child Redis or a ``REDIS_URL`` one.
Every step is idempotent (a second boot, or two nodes booting on one Redis, changes nothing) and
atomic per queue or per reservation:

* Faktory <= 1.9 kept each queue's list under the queue's bare name; 1.10 (and we) use
  ``q:<name>``. Each queue named in ``queues`` moves; then the data-format version ``v`` is set
  to 1, as Faktory 1.10's migration does. It runs even when ``v`` is already 1: going back to
  Faktory 1.9 for a while writes bare keys again.
* Faktory keeps a reservation as JSON in the ``working`` sorted set; we keep its jid there and
  the record in ``ff:res`` (see keys.py).

Pauses, counters, day counters and the scheduled, retry and dead sets have the same layout in
both and are served as they are.
"""
from __future__ import annotations

import logging

import orjson

from faktory_fast.server.failures import set_aside
from faktory_fast.storage import keys
from faktory_fast.storage.store import AsyncStore

log = logging.getLogger("faktory_fast")


async def migrate(store: AsyncStore) -> None:
    """Bring a Redis that Faktory used to our layout (see the module docstring)."""
    await _queues(store)
    await _reservations(store)


async def _queues(store: AsyncStore) -> None:
    moved = queues = 0
    for name in await store.known_queues():
        n = await store.migrate_queue(name)
        if n:
            moved += n
            queues += 1
    if moved:
        log.info("Migrated %d jobs in %d queue%s from Faktory 1.9's layout (<queue> -> "
                 "q:<queue>)", moved, queues, "" if queues == 1 else "s")
    if await store.data_version() < keys.CURRENT_DATA_VERSION:
        await store.set_data_version(keys.CURRENT_DATA_VERSION)


async def _reservations(store: AsyncStore) -> None:
    legacy = await store.legacy_reservations()
    for member, score in legacy:
        try:
            res = orjson.loads(member)
            job = res["job"]
            record = orjson.dumps({"rid": 0, "wid": res.get("wid", ""),
                                   "reserved_at": score, "expires_at": score, "job": job})
            await store.migrate_reservation(member, job["jid"], record, score)
        except (ValueError, KeyError, TypeError):
            await set_aside(store, keys.WORKING, member, b"", "unreadable Faktory reservation")
    if legacy:
        log.info("Migrated %d reservations from Faktory's format", len(legacy))
