"""What the buttons on the retries, scheduled and dead pages do to their sorted set."""
from __future__ import annotations

import time
from collections.abc import Sequence

from faktory_fast import jobs
from faktory_fast.storage.store import SyncStore

from . import bounded

ALL = "all"
BATCH = 500  # entries moved per round trip by "all" actions


def _dead_score() -> str:
    return jobs.dead_score(time.time_ns())


def _requeue(store: SyncStore, zset: str, members: Sequence[bytes]) -> tuple[int, int]:
    """(moved, kept): an entry that is not a job we can enqueue stays where it is."""
    moves, refused = jobs.requeue_moves(members, time.time_ns())
    return (store.enqueue_from(zset, moves) if moves else 0), len(refused)


def act(store: SyncStore, zset: str, action: str, entries: Sequence[tuple[str, str]] | str) -> int:
    """Apply ``action`` (retry | add_to_queue | delete | kill) to (score, jid) entries or ALL.

    retry and add_to_queue move jobs to their queues with a fresh ``enqueued_at`` (each entry
    at most once, even with concurrent clicks; an entry that is not a job with a valid queue
    name stays, to be looked at or deleted); kill moves them to the dead set for 180 days.
    Returns how many entries were affected.
    """
    if isinstance(entries, str):  # ALL
        if action == "delete":
            store.mutate("clear", zset, "", "all", "", [])
            return 0
        if action == "kill":
            killed, cursor, dead_score = 0, "0", _dead_score()
            while True:  # a page a call: no call holds Redis for the whole set
                cursor, n = store.mutate("kill", zset, dead_score, "all", "", [], cursor)
                killed += n
                if cursor == "0":
                    return killed
        moved = kept = 0
        while True:
            _, page = store.set_page(zset, kept, BATCH)
            if not page:
                return moved
            done, left = _requeue(store, zset, [m for m, _ in page])
            moved, kept = moved + done, kept + left
    if action == "delete":
        return bounded.set_remove(store, zset, entries)
    if action == "kill":
        return bounded.set_remove(store, zset, entries, _dead_score())
    return _requeue(store, zset, [m for m, _ in bounded.set_entries(store, zset, entries)])[0]


def act_everywhere(stores: Sequence[SyncStore], zset: str, action: str,
                   entries: Sequence[tuple[str, str]] | str) -> int:
    """``act`` on ``zset`` in every partition (``storage.partitions``): a job is in its queue's
    partition, which a page's key does not say; a partition without a named entry just reads
    the few members of its score. How many entries were affected in all."""
    return sum(act(store, zset, action, entries) for store in stores)
