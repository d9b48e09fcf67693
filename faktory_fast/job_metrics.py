"""Job metrics by queue and job type: executions, failures and execution times.

Each process counts the reservations that end in it (an ACK or a FAIL; the master: the ones that
expire) and adds its counts to Redis every ``FLUSH_EVERY`` seconds in one call
(``lua/metrics.lua``), so they cost Redis nothing per job; a crash loses at most those seconds
of counts, never a job. Redis keeps them by minute for ``MINUTES_KEPT`` minutes, by hour for
``HOURS_KEPT`` hours, and as lifetime totals (``/metrics``): hashes whose field is a pair
``<queue>|<jobtype>`` and whose value is that pair's counts packed into one string (``pack``):
one field a pair keeps a full bucket small (bench.lab.metrics_memory). The counts:

* executions: reservations ended (ACKed, failed or expired);
* failures: FAILed or expired;
* microseconds from reservation to ACK or FAIL, of the timed executions (all but the expired
  ones, whose end is not known);
* the timed executions by histogram bucket: bucket i holds those of ``BUCKETS_MS[i - 1]`` ms or
  more and under ``BUCKETS_MS[i]`` (bucket 0: under the first bound; the last has no upper
  bound).
"""
from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from faktory_fast.storage import keys

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
FLUSH_CALL = 200  # the most (minute, pair) counts one ff_metrics call adds: a short call
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


class Counts:
    """One pair's counts (see the module docstring)."""

    __slots__ = ("executions", "failures", "us", "buckets")

    def __init__(self) -> None:
        self.executions = 0
        self.failures = 0
        self.us = 0
        self.buckets: dict[int, int] = {}


def pack(c: Counts) -> str:
    """``"<executions> <failures> <us>[ <bucket>:<n>]..."``, the form Redis keeps (and adds:
    ``lua/metrics.lua``)."""
    text = f"{c.executions} {c.failures} {c.us}"
    for i in sorted(c.buckets):
        text += f" {i}:{c.buckets[i]}"
    return text


def unpack(text: str) -> Counts:
    """The counts ``pack`` wrote; what does not parse counts as nothing."""
    c = Counts()
    parts = text.split(" ")
    try:
        c.executions, c.failures, c.us = (int(p) for p in parts[:3])
        for part in parts[3:]:
            i, _, n = part.partition(":")
            c.buckets[int(i)] = c.buckets.get(int(i), 0) + int(n)
    except ValueError:
        return Counts()
    return c


class JobMetrics:
    """One process's counts since its last flush: by unix minute, by pair."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._counts: dict[int, dict[str, Counts]] = {}

    def finished(self, job: Any, ok: bool, reserved_at: float | None) -> None:
        """A reservation of ``job`` (JSON or decoded) ended now: ACKed (``ok``) or failed;
        ``reserved_at``: when it began (unix seconds), None for one not timed (expired)."""
        queue, jobtype = job_labels(job)
        now = self.clock()
        pairs = self._counts.setdefault(int(now // 60), {})
        c = pairs.get(f"{queue}|{jobtype}")
        if c is None:
            c = pairs[f"{queue}|{jobtype}"] = Counts()
        c.executions += 1
        if not ok:
            c.failures += 1
        if reserved_at is not None:
            us = max(0, round((now - reserved_at) * 1e6))
            c.us += us
            i = bisect.bisect_right(BUCKETS_MS, us / 1000)
            c.buckets[i] = c.buckets.get(i, 0) + 1

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

    def take(self) -> dict[int, dict[str, str]]:
        """The counts so far (by minute, pair -> ``pack``ed), forgotten here."""
        counts, self._counts = self._counts, {}
        return {minute: {pair: pack(c) for pair, c in pairs.items()}
                for minute, pairs in counts.items()}

    async def flush(self, store: AsyncStore) -> None:
        """Add the counts so far to Redis (one call, or one per FLUSH_CALL of them); lost if
        it fails."""
        for part in chunks(self.take(), FLUSH_CALL):
            await store.add_job_metrics(part, (MINUTES_KEPT + 1) * 60, (HOURS_KEPT + 1) * 3600,
                                        MAX_PAIRS)


def chunks(counts: Mapping[int, Mapping[str, str]], most: int) -> list[dict[int, dict[str, str]]]:
    """``counts`` (by minute, pair -> counts) in parts of at most ``most`` entries."""
    parts: list[dict[int, dict[str, str]]] = []
    size = most
    for minute, pairs in counts.items():
        for pair, packed in pairs.items():
            if size == most:
                parts.append({})
                size = 0
            parts[-1].setdefault(minute, {})[pair] = packed
            size += 1
    return parts


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

    def percentile_bucket(self, p: float) -> int | None:
        """The histogram bucket holding the ``p`` (0..1) percentile; None without timed
        executions."""
        counts = self.histogram or []
        total = sum(counts)
        if not total:
            return None
        rank, seen = p * total, 0
        for i, n in enumerate(counts):
            seen += n
            if seen >= rank and n:
                return i
        return len(counts) - 1

    def percentile(self, p: float) -> float | None:
        """The upper bound (seconds) of the bucket holding the ``p`` (0..1) percentile; the
        last bound for the open bucket above it. None without timed executions."""
        i = self.percentile_bucket(p)
        return None if i is None else BUCKETS_MS[min(i, len(BUCKETS_MS) - 1)] / 1000

    def add(self, other: Row) -> None:
        """Count ``other``'s executions here too."""
        self.executions += other.executions
        self.failures += other.failures
        self.seconds += other.seconds
        mine = self.histogram = self.histogram or [0] * (len(BUCKETS_MS) + 1)
        for i, n in enumerate(other.histogram or ()):
            mine[i] += n


def summarize(counts: Mapping[str, str]) -> dict[tuple[str, str], Row]:
    """Rows by (queue, jobtype) from buckets as Redis holds them: pair -> ``pack``ed counts,
    of one bucket or summed (``add``)."""
    rows: dict[tuple[str, str], Row] = {}
    for pair, text in counts.items():
        queue, _, jobtype = pair.partition("|")
        c = unpack(text)
        histogram = [0] * (len(BUCKETS_MS) + 1)
        for i, n in c.buckets.items():
            if 0 <= i < len(histogram):
                histogram[i] += n
        rows[(queue, jobtype)] = Row(queue, jobtype, c.executions, c.failures, c.us / 1e6,
                                     histogram)
    return rows


def summed(buckets: Iterable[Mapping[str, str]]) -> dict[tuple[str, str], Row]:
    """``summarize`` of several buckets added together."""
    rows: dict[tuple[str, str], Row] = {}
    for bucket in buckets:
        for pair, row in summarize(bucket).items():
            if pair in rows:
                rows[pair].add(row)
            else:
                rows[pair] = row
    return rows


# -- the windows the web UI shows ----------------------------------------------------------------

@dataclass(frozen=True)
class Period:
    """A window of the last ``hours`` hours, drawn in slots of ``slot_minutes`` minutes."""

    name: str
    hours: int
    slot_minutes: int

    def total_keys(self, now: float) -> list[str]:
        """The buckets that add up to the window's slots (``slots``): minute buckets up to
        the first whole hour, then hour buckets (the current hour's holds its minutes so far),
        so a window reads at most about 60 + ``hours`` small hashes."""
        minute = int(now // 60)
        first = self.first_minute(now)
        whole = first + (-first % 60)  # the first whole hour's first minute
        return ([keys.metrics_minute(m) for m in range(first, min(whole, minute + 1))]
                + [keys.metrics_hour(h) for h in range(whole // 60, minute // 60 + 1)])

    def first_minute(self, now: float) -> int:
        """The unix minute the window starts at: its first slot's; the window is ``hours``
        long up to the current slot's unfinished part."""
        minute = int(now // 60)
        width = self.slot_minutes
        return minute - minute % width - (self.hours * 60 // width - 1) * width

    def slots(self, now: float) -> list[tuple[int, list[str]]]:
        """(start, unix seconds; its buckets' keys) of each slot, oldest first; the last slot
        is the current one."""
        minute = int(now // 60)
        width = self.slot_minutes
        starts = range(self.first_minute(now), minute + 1, width)
        if width % 60 == 0:
            return [(s * 60, [keys.metrics_hour(h) for h in range(s // 60, (s + width) // 60)])
                    for s in starts]
        return [(s * 60, [keys.metrics_minute(m) for m in range(s, s + width)]) for s in starts]


PERIODS = (Period("1h", 1, 1), Period("8h", 8, 10), Period("24h", 24, 60),
           Period("72h", 72, 60))


def add(into: dict[str, str], counts: Mapping[str, str]) -> None:
    """Sum buckets: ``counts`` (pair -> ``pack``ed) added to ``into``."""
    for pair, text in counts.items():
        if pair in into:
            a, b = unpack(into[pair]), unpack(text)
            a.executions += b.executions
            a.failures += b.failures
            a.us += b.us
            for i, n in b.buckets.items():
                a.buckets[i] = a.buckets.get(i, 0) + n
            into[pair] = pack(a)
        else:
            into[pair] = text
