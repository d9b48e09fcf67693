"""The web UI's reads and changes that may cover more than one Redis call can hold.

Redis is shared by every client and node: no call may hold it for long. Each store operation
here (``faktory_fast.storage.store``) looks at a bounded part of a set, queue or batch a call and says
where to go on from; these follow it, call after call, to the result one unbounded call gave.
"""
from __future__ import annotations

from collections.abc import Sequence

from faktory_fast.storage.ops.batches import WEB_BATCH_SCAN, BatchDetail
from faktory_fast.storage.store import SyncStore

QUEUE_DELETE_CALLS = 8  # calls one job's delete makes at most (a busy queue moves its jobs)


def set_entries(store: SyncStore, zset: str,
                entries: Sequence[tuple[str, str]]) -> list[tuple[bytes, str]]:
    """[(member, score), ...] of the entries named by (score, jid) that still exist."""
    found: list[tuple[bytes, str]] = []
    left = [(score, jid, "") for score, jid in entries]
    while left:
        part, left = store.set_entries(zset, left)
        found += part
    return found


def set_remove(store: SyncStore, zset: str, entries: Sequence[tuple[str, str]],
               kill_score: str = "") -> int:
    """Delete entries named by (score, jid); with ``kill_score`` move them to ``dead``. How
    many went."""
    n, left = 0, [(score, jid, "") for score, jid in entries]
    while left:
        moved, left = store.set_remove(zset, left, kill_score)
        n += moved
    return n


def set_filter(store: SyncStore, zset: str, cursor: str, scan_cap: int, want: int,
               jobtype: str, queue: str, text: str) -> tuple[str, int, list[tuple[bytes, str]]]:
    """Scan ``zset`` from ``cursor`` for up to ``want`` entries of that jobtype and queue ('' =
    any) containing ``text`` (any case), stopping after about ``scan_cap`` entries: (next
    cursor, '0' when the scan is complete; entries scanned; [(member, score), ...])."""
    scanned = 0
    found: list[tuple[bytes, str]] = []
    while True:
        cursor, n, part = store.set_filter(zset, cursor, scan_cap - scanned, want - len(found),
                                           jobtype, queue, text)
        scanned += n
        found += part
        if cursor == "0" or scanned >= scan_cap or len(found) >= want:
            return cursor, scanned, found


def queue_delete(store: SyncStore, name: str, jobs: Sequence[tuple[int, bytes, int]]) -> int:
    """Remove these (priority, job, position in fetch order as the page showed it) entries from
    a queue, one occurrence each; how many went."""
    n = 0
    # in fetch order: each one removed moves those after it one place nearer
    for priority, job, position in sorted(jobs, key=lambda entry: entry[2]):
        at: tuple[int, str] | None = (max(0, position - n), "")
        for _ in range(QUEUE_DELETE_CALLS):
            if at is None:
                break
            removed, at = store.queue_delete(name, priority, job, *at)
            if removed:
                n += 1
                break
    return n


def batch_page(store: SyncStore, offset: int, count: int, text: str,
               scan_cap: int) -> tuple[bool, list[dict[str, str]]]:
    """Batches newest first whose description or bid contains ``text`` (any case): skip
    ``offset`` of them, up to ``count``; looks no further than ``scan_cap`` into the list.
    (whether the list ended, [fields, ...])."""
    start, skip = 0, offset
    rows: list[dict[str, str]] = []
    while True:
        start, skip, ended, part = store.batch_page(start, skip, count - len(rows), text,
                                                    scan_cap)
        rows += part
        if ended or len(rows) >= count or start >= scan_cap:
            return ended, rows


def batch_detail(store: SyncStore, bid: str, cursor: str, want: int, state: str,
                 scan_cap: int) -> BatchDetail | None:
    """The batch, about ``want`` of its jobs from ``cursor`` on (only those in ``state`` if
    given, looking at about ``scan_cap`` jobs at most: the cursor says where to go on) and its
    children's states; None if there is no such batch."""
    detail = store.batch_detail(bid, cursor, want, state)
    calls = max(1, scan_cap // WEB_BATCH_SCAN)
    while detail is not None and detail.cursor != "0" and len(detail.jobs) < want and calls > 1:
        more = store.batch_detail(bid, detail.cursor, want - len(detail.jobs), state,
                                  children=False)
        if more is None:
            break
        detail = detail._replace(cursor=more.cursor, jobs={**detail.jobs, **more.jobs})
        calls -= 1
    return detail


def batch_stats(store: SyncStore) -> tuple[int, int]:
    """(batches open, callbacks fired), the expired batches dropped from the open ones."""
    cursor, open_, callbacks = store.batch_stats()
    while cursor != "0":
        cursor, open_, callbacks = store.batch_stats(cursor)
    return open_, callbacks
