"""The Metrics pages' data: job metrics (``faktory_fast.job_metrics``) over a window of time,
read from Redis a few small hashes a round trip and summed here, not in Redis."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from faktory_fast.job_metrics import PERIODS, Period, Row, summed
from faktory_fast.storage.store import Operations, SyncStore

BUCKETS_A_TRIP = 24  # whole buckets (HGETALL, each at most MAX_PAIRS fields) a round trip
FIELDS_A_TRIP = 120  # HMGETs of a few fields a round trip
#: The table's columns that sort it, each with the value it sorts by (numbers: largest first).
SORTS: dict[str, Any] = {
    "jobtype": lambda r: r.jobtype,
    "executions": lambda r: r.executions,
    "failures": lambda r: r.failures,
    "rate": lambda r: r.failures / r.executions if r.executions else 0.0,
    "seconds": lambda r: r.seconds,
    "mean": lambda r: r.mean or 0.0,
    "p50": lambda r: _bucket(r, 0.5),
    "p95": lambda r: _bucket(r, 0.95),
    "p99": lambda r: _bucket(r, 0.99),
}


def _bucket(row: Row, p: float) -> int:
    i = row.percentile_bucket(p)
    return -1 if i is None else i


def period_named(name: str | None) -> Period | None:
    """The period called ``name`` (the first, 1 h, when none is given); None if unknown."""
    if not name:
        return PERIODS[0]
    return next((p for p in PERIODS if p.name == name), None)


def _run(store: SyncStore, calls: list[Any], per_trip: int) -> list[Any]:
    replies: list[Any] = []
    for i in range(0, len(calls), per_trip):
        replies += store.run_all(calls[i:i + per_trip])
    return replies


def window(store: SyncStore, period: Period, now: float) -> dict[tuple[str, str], Row]:
    """(queue, jobtype) -> its metrics over the window of ``period`` ending at ``now``."""
    calls = [Operations.job_metrics_bucket.build(store, key) for key in period.total_keys(now)]
    return summed(_run(store, calls, BUCKETS_A_TRIP))


def by_jobtype(rows: Iterable[Row], queue: str = "") -> list[Row]:
    """One row per job type: its rows of ``queue`` (of every queue when "") added up."""
    out: dict[str, Row] = {}
    for row in rows:
        if queue and row.queue != queue:
            continue
        total = out.get(row.jobtype)
        if total is None:
            total = out[row.jobtype] = Row(queue, row.jobtype)
        total.add(row)
    return list(out.values())


def sort_rows(rows: list[Row], key: str, descending: bool) -> list[Row]:
    """``rows`` sorted by the column ``key`` (a key of SORTS); ties by job type."""
    rows = sorted(rows, key=lambda r: r.jobtype)
    return sorted(rows, key=SORTS[key], reverse=descending)


def series(store: SyncStore, period: Period, now: float,
           pairs: Sequence[str]) -> list[tuple[int, Row]]:
    """(slot start, unix seconds; the metrics of ``pairs`` in it) for each slot of the window,
    oldest first; ``pairs`` are "<queue>|<jobtype>" fields."""
    slots = period.slots(now)
    if not pairs:
        return [(start, Row("", "")) for start, _ in slots]
    calls = [Operations.job_metrics_fields.build(store, key, pairs)
             for _, bucket_keys in slots for key in bucket_keys]
    replies = iter(_run(store, calls, FIELDS_A_TRIP))
    out = []
    for start, bucket_keys in slots:
        total = Row("", "")
        for row in summed(next(replies) for _ in bucket_keys).values():
            total.add(row)
        out.append((start, total))
    return out
