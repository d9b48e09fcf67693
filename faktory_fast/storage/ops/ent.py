"""Unique locks and throttles (``lua/ent.lua``), and the replacing of the master's tables."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from faktory_fast.jobs import unique_name
from faktory_fast.storage import keys
from faktory_fast.storage.fcall import PAGE, Call, Fn, Op, as_int, as_none, as_text, paged


class Throttle(NamedTuple):
    """A throttle's configuration and use (``ff_throttle_usage``), for the web UI."""

    queue: str
    kind: str  # concurrency | worker
    limit: int
    timeout: int
    in_use: int  # locks held (cluster-wide, or summed over workers)
    workers: int  # workers holding locks (per-worker throttles)
    waiting: int  # jobs in the queue


class UniqueLock(NamedTuple):
    """A unique job's lock (``ff_lock``): its key, the jid holding it ('' if none) and the
    seconds it has left."""

    key: str
    holder: str
    ttl: float


def _throttle_rows(reply: Any) -> tuple[str, list[Throttle]]:
    out = []
    for queue, spec, held, holders, waiting in reply[1]:
        kind, limit, timeout = as_text(spec).split()
        out.append(Throttle(as_text(queue), kind, int(limit), int(timeout), held, holders, waiting))
    return as_text(reply[0]), out


def _sum_throttles(pages: list[list[Throttle]]) -> list[Throttle]:
    """The throttles' use over every page of lock sets (``ff_throttle_usage``)."""
    total: dict[str, Throttle] = {}
    for page in pages:
        for t in page:
            had = total.get(t.queue)
            total[t.queue] = t if had is None else had._replace(
                in_use=had.in_use + t.in_use, workers=had.workers + t.workers,
                waiting=had.waiting + t.waiting)
    return sorted(total.values())


def _lock_state(key: str) -> Callable[[Any], UniqueLock]:
    def decode(reply: Any) -> UniqueLock:
        holder, pttl = reply
        return UniqueLock(key, as_text(holder) if holder else "", max(pttl, 0) / 1000)
    return decode


FF_LOCK = Fn("ff_lock", (), as_none)  # decoded with the lock's name: unique_lock
FF_REPLACE_HASH = Fn("ff_replace_hash", (), as_int)
FF_THROTTLE_USAGE = Fn("ff_throttle_usage", (keys.THROTTLES, keys.PRIORITY_QUEUES,
                                             keys.THROTTLE_LAPSES), _throttle_rows)
FF_THROTTLE_LAPSED = Fn("ff_throttle_lapsed", (keys.THROTTLE_LAPSES,), as_int)
FF_UNIQUE_SWEEP = Fn("ff_unique_sweep", (keys.UNIQUE_NAMES,), as_text)


class EntOps:
    """The operations on throttles and unique locks."""

    @Op
    def set_throttles(self, throttles: dict[str, tuple[str, int, int]]) -> Call[int]:
        """Replace the throttle table: queue -> (kind, limit, timeout); how many there are."""
        args: list[Any] = []
        for queue, (kind, limit, timeout) in throttles.items():
            args += (queue, f"{kind} {limit} {timeout}")
        return FF_REPLACE_HASH.call((), *args, lead=(keys.THROTTLES,))

    @paged(_sum_throttles)
    def throttle_usage(self, cursor: str) -> Call[tuple[str, list[Throttle]]]:
        """Every configured throttle with its use, by queue name."""
        return FF_THROTTLE_USAGE.call((), cursor, PAGE)

    @Op
    def throttle_lapsed(self, now: str, limit: int) -> Call[int]:
        """Wake the FETCHes waiting on queues whose throttle had a lock lapse by ``now`` (a
        time score), looking at ``limit`` lock sets at most; how many it looked at."""
        return FF_THROTTLE_LAPSED.call((), now, limit)

    @Op
    def unique_lock(self, jobtype: str, queue: str, args: Any) -> Call[UniqueLock]:
        """The unique lock a job of ``jobtype`` in ``queue`` with ``args`` (decoded) takes."""
        key = keys.unique_lock(unique_name(jobtype, queue, args))
        return Call(FF_LOCK.args((key,), ()), _lock_state(key))

    @Op
    def unique_sweep(self, cursor: str, count: int) -> Call[str]:
        """Forget the unique-lock records (jid -> lock name) of jobs whose lock is gone,
        about ``count`` of them from ``cursor`` on; the next cursor ('0': done)."""
        return FF_UNIQUE_SWEEP.call((), cursor, count)

    @Op
    def mark_tables(self, mark: str) -> Call[str]:
        """Record ``mark`` ("<node> <digest>") as the writer of the throttle and cron tables;
        the mark it replaced ('' if none)."""
        return Call(("SET", keys.TABLES_BY, mark, "GET"),
                    lambda v: "" if v is None else as_text(v), keyed=1)
