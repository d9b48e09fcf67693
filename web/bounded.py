"""The web UI's reads and changes that may cover more than one Redis call can hold.

Redis is shared by every client and node: no call may hold it for long. Each store operation
here (``faktory_fast.storage.store``) looks at a bounded part of a set, queue or batch a call and says
where to go on from; these follow it, call after call, to the result one unbounded call gave.
"""
from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple, TypeVar

from faktory_fast.storage import keys
from faktory_fast.storage.ops.batches import WEB_BATCH_SCAN, BatchDetail
from faktory_fast.storage.ops.web import WEB_QUEUE_SCAN, WEB_SET_SCAN
from faktory_fast.storage.partitions import Partitions
from faktory_fast.storage.store import SyncStore

T = TypeVar("T")

QUEUE_DELETE_CALLS = 8  # calls one job's delete makes at most (a busy queue moves its jobs)
#: A queue's job types are counted in at most this many calls of WEB_QUEUE_SCAN jobs: all of
#: them up to 10,000 jobs, else as many pages evenly spaced over the queue.
QUEUE_SAMPLE_PAGES = 5


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


def set_page(store: SyncStore, zset: str, offset: int,
             count: int) -> tuple[int, list[tuple[bytes, str]]]:
    """(size of ``zset``, [(member, score), ...]): ``count`` entries from ``offset`` on in score
    order (fewer at the end), read about 256 KB a call."""
    return _pages(lambda at, left: store.set_page(zset, at, left), offset, count)


def queue_page(store: SyncStore, name: str, offset: int,
               count: int) -> tuple[int, list[tuple[int, bytes]]]:
    """(size, [(priority, job), ...]): ``count`` jobs of queue ``name`` from ``offset`` on in
    the order FETCH takes them (fewer at the end), read about 256 KB a call."""
    return _pages(lambda at, left: store.queue_page(name, at, left), offset, count)


def _pages(step: Callable[[int, int], tuple[int, list[T]]], offset: int,
           count: int) -> tuple[int, list[T]]:
    """Call ``step(offset, count still wanted)`` (one Redis call: (size, entries), at least one
    unless at the end) until ``count`` entries or the end: (the last size, the entries)."""
    size, found = step(offset, count)
    while found and len(found) < count:
        size, part = step(offset + len(found), count - len(found))
        if not part:
            break
        found += part
    return size, found


def set_filter(store: SyncStore, zset: str, cursor: str, scan_cap: int, want: int,
               jobtype: str, queue: str, text: str) -> tuple[str, int, list[tuple[bytes, str]]]:
    """Scan ``zset`` from ``cursor`` for up to ``want`` entries of that jobtype and queue ('' =
    any) containing ``text`` (any case), stopping after about ``scan_cap`` entries: (next
    cursor, '0' when the scan is complete; entries scanned; [(member, score), ...])."""
    return _follow(lambda c, cap, more: store.set_filter(zset, c, cap, more, jobtype, queue, text),
                   cursor, scan_cap, want)


def queue_filter(store: SyncStore, name: str, cursor: str, scan_cap: int, want: int, jid: str,
                 jobtype: str, text: str) -> tuple[str, int, list[tuple[int, int, bytes]]]:
    """Scan queue ``name`` newest first from ``cursor`` for up to ``want`` jobs with that jid,
    jobtype and text (any case; '' = any), stopping after about ``scan_cap`` jobs: (next
    cursor, '0' at the end of the queue; jobs scanned; [(priority, position in fetch order,
    job), ...])."""
    return _follow(lambda c, cap, more: store.queue_filter(name, c, cap, more, jid, jobtype, text),
                   cursor, scan_cap, want)


def _follow(step: Callable[[str, int, int], tuple[str, int, list[T]]], cursor: str,
            scan_cap: int, want: int) -> tuple[str, int, list[T]]:
    """Call ``step(cursor, entries it may still scan, matches still wanted)`` (one Redis call:
    (next cursor, entries scanned, matches)) until the end ('0'), ``scan_cap`` entries or
    ``want`` matches: (next cursor, entries scanned, matches)."""
    scanned = 0
    found: list[T] = []
    while True:
        cursor, n, part = step(cursor, scan_cap - scanned, want - len(found))
        scanned += n
        found += part
        if cursor == "0" or scanned >= scan_cap or len(found) >= want:
            return cursor, scanned, found


class JobTypes(NamedTuple):
    """A queue's job types: how many of the jobs ``read`` of its ``size`` have each (all of
    them unless ``sampled``)."""

    counts: list[tuple[str, int]]  # most first
    read: int
    size: int
    sampled: bool


def queue_types(store: SyncStore, name: str) -> JobTypes:
    """The job types of queue ``name``: exact up to QUEUE_SAMPLE_PAGES * WEB_QUEUE_SCAN jobs,
    else counted in QUEUE_SAMPLE_PAGES pages evenly spaced from the next job to be fetched to
    the last."""
    pages = QUEUE_SAMPLE_PAGES
    counts: dict[str, int] = {}
    size = _count_types(store, name, 0, counts)
    sampled = size > pages * WEB_QUEUE_SCAN
    offsets = ([k * (size - WEB_QUEUE_SCAN) // (pages - 1) for k in range(1, pages)] if sampled
               else range(WEB_QUEUE_SCAN, size, WEB_QUEUE_SCAN))
    for offset in offsets:
        _count_types(store, name, offset, counts)
    read = sum(counts.values())
    return JobTypes(sorted(counts.items(), key=lambda c: (-c[1], c[0])), read, size, sampled)


def _count_types(store: SyncStore, name: str, offset: int, counts: dict[str, int]) -> int:
    """Add the job types of the WEB_QUEUE_SCAN jobs of queue ``name`` from ``offset`` to
    ``counts``, a call for each part Redis reads at once (fewer jobs when they are big); the
    queue's size."""
    got = 0
    while True:
        size, part = store.queue_types(name, offset + got, WEB_QUEUE_SCAN - got)
        n = sum(part.values())
        for jobtype, k in part.items():
            counts[jobtype] = counts.get(jobtype, 0) + k
        got += n
        if n == 0 or got >= WEB_QUEUE_SCAN or offset + got >= size:
            return size


#: The places a job can be, in the order find_job looks: a reservation is read directly.
FIND_SETS = keys.SORTED_SETS  # the home partition's; another's are "<partition>/<set>"
FIND_QUEUE = "queue:"  # + a queue's name
FIND_BATCHES = "batches"


def set_place(zset: str, partition: int) -> str:
    """find_job's name of partition ``partition``'s sorted set ``zset`` (as a single Redis's
    for the home partition; a queue name has no '/')."""
    return zset if partition == keys.HOME else f"{partition}/{zset}"


class Found(NamedTuple):
    """Where find_job found a job: ``place`` 'working' (``name`` the worker's wid), a sorted
    set (``detail`` the score), 'queue' (``name`` it, ``detail`` the position in fetch order)
    or 'batch' (``name`` the bid, ``detail`` the job's state there, ``job`` b'')."""

    place: str
    name: str
    job: bytes
    detail: str


class Search(NamedTuple):
    """How far find_job got: ``found``, else where to go on from (``place`` '' when there is
    nowhere left: not found) and how many entries it looked at."""

    found: Found | None
    place: str
    cursor: str
    scanned: int


def find_job(parts: Partitions[SyncStore], jid: str, place: str, cursor: str,
             seconds: float) -> Search:
    """Look for job ``jid`` in progress (one read a partition), then from ``place`` and
    ``cursor`` ('' and '0' the first time) in every partition's sorted sets, the queues by name
    and the batches, a bounded part a call, for about ``seconds``; the Search says where to go
    on from if time ran out."""
    for store in parts.stores:
        record = store.reservation(jid)
        if record is not None:
            return Search(Found("working", "", record, ""), "", "0", 0)
    deadline = time.monotonic() + seconds
    sets = {set_place(zset, k): (store, zset)
            for k, store in enumerate(parts.stores) for zset in FIND_SETS}
    queues = sorted(FIND_QUEUE + name for store in parts.stores for name, *_ in store.queue_list())
    places = [*sets, *queues, FIND_BATCHES]
    if not place:
        start = 0
    elif place in places:
        start = places.index(place)
    else:  # a queue gone since: the next one by name
        start = len(sets) + bisect.bisect(queues, place)
        cursor = "0"
    scanned, calls = 0, 0
    for here in places[start:]:
        store, what = sets.get(here) or (parts.home, here)
        if here.startswith(FIND_QUEUE):
            store = parts.of(here.removeprefix(FIND_QUEUE))
        while True:
            if calls and time.monotonic() > deadline:  # (each request gets on at least a call)
                return Search(None, here, cursor, scanned)
            found, cursor, n = _find_step(store, what, jid, cursor)
            scanned, calls = scanned + n, calls + 1
            if found is not None:
                return Search(found, "", "0", scanned)
            if cursor == "0":
                break
    return Search(None, "", "0", scanned)


def _find_step(store: SyncStore, place: str, jid: str, cursor: str) -> tuple[Found | None, str, int]:
    """One call of find_job's: (what it found, the cursor to go on from, entries looked at)."""
    if place in FIND_SETS:
        cursor, n, entries = store.set_filter(place, cursor, WEB_SET_SCAN, 1, "", "", "", jid)
        return (Found(place, "", *entries[0]) if entries else None), cursor, n
    if place == FIND_BATCHES:
        start, bid, state = store.batch_of(jid, int(cursor))
        return (Found("batch", bid, b"", state) if bid else None), str(start), 1
    name = place.removeprefix(FIND_QUEUE)
    cursor, n, jobs = store.queue_filter(name, cursor, WEB_QUEUE_SCAN, 1, jid, "", "")
    return (Found("queue", name, jobs[0][2], str(jobs[0][1])) if jobs else None), cursor, n


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
