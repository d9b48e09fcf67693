"""Batches and job tracking (``lua/batch.lua``)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from faktory_fast.jobs import rfc3339
from faktory_fast.jobs import score as ns_score
from faktory_fast.storage import keys
from faktory_fast.storage.fcall import Call, Fn, Op, Outcome, as_fields, as_outcome, as_text

#: What one call of the web UI's batch functions looks at (the caller goes on from where it
#: stopped): batches (batch_page), a batch's jobs (batch_detail), open batches (batch_stats).
WEB_BATCH_SCAN = 1_000


class BatchDetail(NamedTuple):
    """A batch as the web UI shows it: its fields (``ff_batch_status``), some of its jobs (jid
    -> state) with the cursor to ask for more ('0': no more) and its child batches (bid ->
    state)."""

    fields: dict[str, str]
    cursor: str
    jobs: dict[str, str]
    children: dict[str, str]


def _batch_page(reply: Any) -> tuple[int, int, bool, list[dict[str, str]]]:
    return int(reply[0]), int(reply[1]), bool(reply[2]), [as_fields(f) for f in reply[3]]


def _batch_detail(reply: Any) -> BatchDetail | None:
    if not reply:
        return None
    return BatchDetail(as_fields(reply[0]), as_text(reply[1]), as_fields(reply[2]),
                       as_fields(reply[3]))


def _batch_stats(reply: Any) -> tuple[str, int, int]:
    return as_text(reply[0]), int(reply[1]), int(reply[2])


def _track_get(reply: Any) -> tuple[bool, dict[str, str]]:
    return bool(reply[0]), as_fields(reply[1:])


FF_BATCH_NEW = Fn("ff_batch_new", (keys.BATCHES, keys.BATCHES_OPEN), as_text)
FF_BATCH_COMMIT = Fn("ff_batch_commit", (), as_outcome)
FF_BATCH_OPEN = Fn("ff_batch_open", (), as_outcome)
FF_BATCH_STATUS = Fn("ff_batch_status", (), as_fields)
FF_BATCH_PAGE = Fn("ff_batch_page", (keys.BATCHES, keys.BATCHES_OPEN), _batch_page)
FF_BATCH_DETAIL = Fn("ff_batch_detail", (), _batch_detail)
FF_BATCH_STATS = Fn("ff_batch_stats", (keys.BATCHES_OPEN, keys.BATCH_STATS), _batch_stats)
FF_TRACK_SET = Fn("ff_track_set", (), as_outcome)
FF_TRACK_GET = Fn("ff_track_get", (), _track_get)


def _batch_keys(bid: str) -> tuple[str, str, str]:
    return keys.batch(bid), keys.batch_jobs(bid), keys.batch_kids(bid)


class BatchOps:
    """The operations on batches and tracked jobs."""

    @Op
    def batch_new(self, bid: str, created_ns: int, description: str, parent: str,
                  callbacks: Sequence[tuple[str, bytes, str, int, str]]) -> Call[str]:
        """Create a batch with its callbacks, (which, job, queue, priority, jid) each; '' or
        the refusal ("ERR message": the parent is unknown or committed)."""
        item_keys = [keys.batch(bid)] + ([keys.batch(parent), keys.batch_kids(parent)]
                                         if parent else [])
        return FF_BATCH_NEW.call(item_keys, bid, rfc3339(created_ns), ns_score(created_ns),
                                 description, parent, *(x for cb in callbacks for x in cb))

    @Op
    def batch_commit(self, bid: str, retention: int) -> Call[Outcome]:
        """Commit a batch (its callbacks may fire; its data is kept ``retention`` seconds once
        it is finished); GONE if there is no such batch."""
        return FF_BATCH_COMMIT.call(_batch_keys(bid), bid, retention)

    @Op
    def batch_open(self, bid: str) -> Call[Outcome]:
        """Re-open a committed batch; GONE if there is no such batch."""
        return FF_BATCH_OPEN.call(_batch_keys(bid), bid)

    @Op
    def batch_status(self, bid: str) -> Call[dict[str, str]]:
        """The batch's fields ({} if there is no such batch)."""
        return FF_BATCH_STATUS.call((keys.batch(bid),), bid)

    @Op
    def batch_page(self, start: int, skip: int, count: int, text: str = "",
                   scan_cap: int = 10_000) -> Call[tuple[int, int, bool, list[dict[str, str]]]]:
        """Batches newest first whose description or bid contains ``text`` (any case), from
        rank ``start`` of the list (0 first): skip ``skip`` of them, then up to ``count``;
        stops at rank ``scan_cap``, and after WEB_BATCH_SCAN batches (call again from the start
        and skip it returns). (next start, skip left, whether the list ended, [fields, ...])."""
        return FF_BATCH_PAGE.call((), start, skip, count, text.lower(), scan_cap, WEB_BATCH_SCAN)

    @Op
    def batch_detail(self, bid: str, cursor: str = "0", want: int = 100, state: str = "",
                     children: bool = True) -> Call[BatchDetail | None]:
        """The batch, about ``want`` of its jobs from ``cursor`` on (only those in ``state`` if
        given; no more than about WEB_BATCH_SCAN scanned) and, if ``children``, its children's
        states; None if there is no such batch."""
        return FF_BATCH_DETAIL.call(_batch_keys(bid), bid, cursor, want, state, WEB_BATCH_SCAN,
                                    int(children))

    @Op
    def batch_stats(self, cursor: str = "0") -> Call[tuple[str, int, int]]:
        """Drop the expired batches of a page (about WEB_BATCH_SCAN) of the open ones from
        ``cursor`` on: (next cursor, '0' after the last page; batches open, callbacks fired)."""
        return FF_BATCH_STATS.call((), cursor, WEB_BATCH_SCAN)

    @Op
    def track_set(self, jid: str, percent: int | None, desc: str | None,
                  reserve_until: str) -> Call[Outcome]:
        """Update a tracked job's progress; ``reserve_until`` (a score, '' = none) extends its
        reservation. GONE if the job is not tracked."""
        return FF_TRACK_SET.call((keys.tracking(jid), keys.RESERVATIONS, keys.WORKING), jid,
                                 "0" if percent is None else "1", percent or 0,
                                 "0" if desc is None else "1", desc or "", reserve_until)

    @Op
    def track_get(self, jid: str) -> Call[tuple[bool, dict[str, str]]]:
        """(whether the job is reserved, its tracking fields: {} if it is not tracked)."""
        return FF_TRACK_GET.call((keys.tracking(jid), keys.RESERVATIONS), jid)
