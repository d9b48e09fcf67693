"""Job metrics by queue and job type: executions, failures and execution times.

Each process counts the reservations that end in it (an ACK or a FAIL; the master: the ones that
expire) and adds its counts to Redis every ``FLUSH_EVERY`` seconds in one call
(``lua/metrics.lua``), so they cost Redis nothing per job; a crash loses at most those seconds
of counts, never a job. Redis keeps them by minute for ``MINUTES_KEPT`` minutes, by hour for
``HOURS_KEPT`` hours, and as lifetime totals (``/metrics``). A count is a hash field
``<stat>|<queue>|<jobtype>``, the stat one of:

* ``e``: executions (reservations ended: ACKed, failed or expired);
* ``f``: failures (FAILed or expired);
* ``us``: microseconds from reservation to ACK or FAIL, of the timed executions (all but the
  expired ones, whose end is not known);
* ``h<i>``: timed executions of ``BUCKETS_MS[i - 1]`` ms or more and under ``BUCKETS_MS[i]``
  (``h0``: under the first bound; the last bucket has no upper bound).
"""
from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from faktory_fast.storage.store import AsyncStore

#: The execution-time histogram's bucket bounds, in ms (Sidekiq's); one bucket more above.
BUCKETS_MS = (20, 30, 45, 65, 100, 150, 225, 335, 500, 750, 1100, 1600, 2500, 3800, 5750, 8500,
              13000, 20000, 30000, 45000, 65000, 100000, 150000, 225000, 335000)
FLUSH_EVERY = 5.0  # seconds between a process's additions to Redis
FLUSH_ENV = "FAKTORY_FAST_METRICS_EVERY"  # another FLUSH_EVERY (tests)
MINUTES_KEPT = 8 * 60  # the minute buckets: the last 1 h and 8 h
HOURS_KEPT = 72  # the hour buckets: the last 24 h and 72 h
#: The most (queue, jobtype) pairs the lifetime totals hold; the counts of others go to their
#: queue's jobtype "" (shown as "other").
MAX_PAIRS = 1000
OTHER = ""


def flush_every(environ: Mapping[str, str]) -> float:
    """Seconds between flushes: FLUSH_ENV's if it holds a positive number, else FLUSH_EVERY."""
    try:
        every = float(environ.get(FLUSH_ENV, ""))
    except ValueError:
        return FLUSH_EVERY
    return every if every > 0 else FLUSH_EVERY


def job_labels(job: Any) -> tuple[str, str]:
    """(queue, jobtype) of a job (its JSON, or the decoded object); "" where missing."""
    if isinstance(job, bytes):
        try:
            job = orjson.loads(job)
        except orjson.JSONDecodeError:
            return "", ""
    if not isinstance(job, dict):
        return "", ""
    queue, jobtype = job.get("queue"), job.get("jobtype")
    return (queue if type(queue) is str else "", jobtype if type(jobtype) is str else "")


class JobMetrics:
    """One process's counts since its last flush: by unix minute, field -> increment."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._counts: dict[int, dict[str, int]] = {}

    def finished(self, job: Any, ok: bool, reserved_at: float | None) -> None:
        """A reservation of ``job`` (JSON or decoded) ended now: ACKed (``ok``) or failed;
        ``reserved_at``: when it began (unix seconds), None for one not timed (expired)."""
        queue, jobtype = job_labels(job)
        now = self.clock()
        fields = self._counts.setdefault(int(now // 60), {})
        tail = f"|{queue}|{jobtype}"
        _add(fields, "e" + tail, 1)
        if not ok:
            _add(fields, "f" + tail, 1)
        if reserved_at is not None:
            us = max(0, round((now - reserved_at) * 1e6))
            _add(fields, "us" + tail, us)
            _add(fields, f"h{bisect.bisect_right(BUCKETS_MS, us / 1000)}{tail}", 1)

    def finished_record(self, record: bytes, ok: bool) -> None:
        """``finished`` for a reservation known by its ``ff:res`` record (one reserved by
        another process)."""
        try:
            data = orjson.loads(record)
        except orjson.JSONDecodeError:
            data = None
        if isinstance(data, dict):
            at = data.get("reserved_at")
            self.finished(data.get("job"), ok, at if type(at) in (int, float) else None)

    def take(self) -> dict[int, dict[str, int]]:
        """The counts so far, forgotten here."""
        counts, self._counts = self._counts, {}
        return counts

    async def flush(self, store: AsyncStore) -> None:
        """Add the counts so far to Redis (one call); lost if it fails."""
        counts = self.take()
        if counts:
            await store.add_job_metrics(counts, (MINUTES_KEPT + 1) * 60, (HOURS_KEPT + 1) * 3600,
                                        MAX_PAIRS)


def _add(fields: dict[str, int], field: str, n: int) -> None:
    fields[field] = fields.get(field, 0) + n


@dataclass
class Row:
    """One (queue, jobtype)'s metrics over some buckets."""

    queue: str
    jobtype: str
    executions: int = 0
    failures: int = 0
    seconds: float = 0.0  # of the timed executions
    histogram: list[int] | None = None  # timed executions by bucket

    @property
    def timed(self) -> int:
        return sum(self.histogram or ())

    @property
    def mean(self) -> float | None:
        return self.seconds / self.timed if self.timed else None

    def percentile(self, p: float) -> float | None:
        """The upper bound (seconds) of the bucket holding the ``p`` (0..1) percentile; the
        last bound for the open bucket above it. None without timed executions."""
        counts = self.histogram or []
        total = sum(counts)
        if not total:
            return None
        rank, seen = p * total, 0
        for i, n in enumerate(counts):
            seen += n
            if seen >= rank and n:
                return BUCKETS_MS[min(i, len(BUCKETS_MS) - 1)] / 1000
        return BUCKETS_MS[-1] / 1000


def summarize(counts: Mapping[str, int]) -> dict[tuple[str, str], Row]:
    """Rows by (queue, jobtype) from counts as Redis holds them (summed over buckets)."""
    rows: dict[tuple[str, str], Row] = {}
    for field, n in counts.items():
        stat, _, pair = field.partition("|")
        queue, _, jobtype = pair.partition("|")
        row = rows.get((queue, jobtype))
        if row is None:
            row = rows[(queue, jobtype)] = Row(queue, jobtype, histogram=[0] * (len(BUCKETS_MS) + 1))
        if stat == "e":
            row.executions += n
        elif stat == "f":
            row.failures += n
        elif stat == "us":
            row.seconds += n / 1e6
        elif stat.startswith("h") and stat[1:].isdigit() and row.histogram is not None:
            i = int(stat[1:])
            if i < len(row.histogram):
                row.histogram[i] += n
    return rows
