"""The master's background tasks, run once per server (not once per server process): the
scheduler, the reservation reaper, the worker reaper, the dead-set purge, the backups, and
Enterprise's cron and throttle table (``publish_config``, ``cron.CronRunner``).

Each runs every so often until cancelled; a round that fails is logged and the next one tries
again. Their counters feed INFO's ``tasks`` section (``keys.TASKS``).
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis

from faktory_fast import cron, jobs
from faktory_fast.config import Config
from faktory_fast.job_metrics import JobMetrics
from faktory_fast.jobs import now_score
from faktory_fast.log import FailureLog
from faktory_fast.master import backup
from faktory_fast.master.redis_child import RedisChild
from faktory_fast.server.failures import expire_reservation, set_aside
from faktory_fast.storage import keys, redis_client
from faktory_fast.storage.partitions import Partitions
from faktory_fast.storage.store import AsyncStore

log = logging.getLogger("faktory_fast")

SCHEDULER_INTERVAL = 0.25  # due scheduled/retry jobs are enqueued within this
RESERVATION_INTERVAL = 1.0
WORKER_REAP_INTERVAL = 15.0
WORKER_TIMEOUT = 60.0  # a worker without a heartbeat for this long is forgotten
DEAD_PURGE_INTERVAL = 60.0
BACKUP_CHECK_INTERVAL = 1.0  # how often the backup task looks at the (reloadable) schedule
CRON_INTERVAL = 1.0  # cron ticks are pushed within this (and a reloaded config published)
# With partitions, quiet workers are copied from the home partition to the others this often;
# a copy lapses after QUIET_MIRROR_TTL seconds (the worker is gone, or the master is).
QUIET_MIRROR_INTERVAL = 0.5
QUIET_MIRROR_TTL = 10
REPUBLISH_INTERVAL = 60.0  # the config's tables are written again this often (a Redis that lost
#                            its data, say), changed or not
SCAN_BATCH = 500
EXPIRED_BATCH = 100
SWEEP_PAGES = 10  # pages of unique-lock records (SCAN_BATCH each) one dead-set round sweeps


@dataclass
class TaskStats:
    """Counters behind INFO's ``tasks`` section."""

    values: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, **fields: float) -> None:
        for k, v in fields.items():
            key = f"{name}.{k}"
            self.values[key] = self.values.get(key, 0) + v


class BackgroundTasks:
    """The background tasks of one server, over the stores of the key partitions (``parts``:
    each partition's sets and reservations are swept in turn; workers and cron are the home
    partition's).

    ``config``: the configuration as it is now (a SIGHUP may change the backup schedule);
    ``redis``: the child Redis, whose data the backups copy (None: a Redis of the user's, and
    no backups).
    """

    def __init__(self, parts: Partitions[AsyncStore], config: Callable[[], Config],
                 redis_child: RedisChild | None) -> None:
        self.parts = parts
        self.store = parts.home
        self.config = config
        self.redis_child = redis_child
        self.stats = TaskStats()
        self.cron = cron.CronRunner(parts, lambda: self.config().cron, cron.clock(os.environ))
        self._published: Config | None = None  # the config whose Enterprise tables Redis has
        self._published_at = 0.0  # time.monotonic() of that
        # This node in the mark it leaves on those tables: the same across its restarts (which
        # may bring a changed conf.d: no other node's doing).
        self._node = f"{os.uname().nodename}:{config().port}"
        self._disagreed: set[str] = set()  # marks of other nodes' tables already warned of
        # Where the unique-lock records' sweep goes on from (purge_dead), by partition.
        self._swept = ["0"] * parts.count

    def start(self) -> list[asyncio.Future[None]]:
        """Start every task; the caller cancels them."""
        coros: list[Coroutine[Any, Any, None]] = [
            _every(SCHEDULER_INTERVAL, self.enqueue_due),
            _every(RESERVATION_INTERVAL, self.expire_reservations),
            _every(WORKER_REAP_INTERVAL, self.reap_workers),
            _every(DEAD_PURGE_INTERVAL, self.purge_dead),
            _every(CRON_INTERVAL, self.run_cron),
        ]
        if self.parts.count > 1:
            coros.append(_every(QUIET_MIRROR_INTERVAL, self.mirror_quiet))
        if self.redis_child is not None:
            coros.append(self.backups())
        return [asyncio.ensure_future(c) for c in coros]

    async def enqueue_due(self) -> None:
        """The scheduler: scheduled jobs and retries that are due go to their queues."""
        for zset, name in ((keys.SCHEDULED, "Scheduled"), (keys.RETRIES, "Retries")):
            t0 = time.perf_counter()
            moved = 0
            for store in self.parts.stores:
                while True:
                    due = await store.due(zset, now_score(), SCAN_BATCH)
                    if not due:
                        break
                    moves, refused = jobs.requeue_moves(due, time.time_ns())
                    for member, exc in refused:  # one bad entry must not hold up the others
                        await set_aside(store, zset, member, b"", str(exc))
                    if moves:
                        moved += await store.enqueue_from(zset, moves)
                    if len(due) < SCAN_BATCH:
                        break
            self.stats.add(name, cycles=1, enqueued=moved, wall_time_sec=time.perf_counter() - t0)
        await self.store.set_task_stats(self.stats.values)

    async def expire_reservations(self) -> None:
        """Reservations past their time are failed, as Faktory does; FETCHes waiting on a
        throttle that had a lock lapse are woken."""
        n = 0
        metrics = JobMetrics() if self.config().metrics_job_types else None
        for store in self.parts.stores:
            while True:
                expired = await store.expired(now_score(), EXPIRED_BATCH)
                for jid, record in expired:
                    if await expire_reservation(store, jid, record, metrics):  # or set aside
                        n += 1
                if len(expired) < EXPIRED_BATCH:
                    break
        if metrics is not None:
            await metrics.flush(self.store)
        if n:
            log.info("%d job reservations expired", n)
            self.stats.add("Busy", reaped=n)
        # Throttle locks that lapsed by their own timeout free a place nobody was told of.
        now = now_score()
        for store in self.parts.stores:
            while await store.throttle_lapsed(now, EXPIRED_BATCH) == EXPIRED_BATCH:
                pass

    async def mirror_quiet(self) -> None:
        """Copy the quiet and terminating workers (home) to the other partitions, whose FETCHes
        answer such a worker nil as the home partition's do."""
        states = await self.store.quiet_states()
        step = 2 * SCAN_BATCH
        for store in self.parts.stores[1:]:
            for start in range(0, max(len(states), 1), step):
                await store.mirror_quiet(QUIET_MIRROR_TTL, start == 0, states[start:start + step])

    async def publish_config(self) -> None:
        """Give Redis the throttle table and cron entries of the configuration (at start, after
        a SIGHUP changed them, and every REPUBLISH_INTERVAL): every process and node reads them
        there (the last node to write wins: nodes should share their conf.d, and a node that
        finds another's different tables there says so, once per such table)."""
        cfg, last = self.config(), self._published
        if last is not None and (last.throttles, last.cron) == (cfg.throttles, cfg.cron) \
                and time.monotonic() - self._published_at < REPUBLISH_INTERVAL:
            return
        digest = hashlib.sha1(orjson.dumps(
            [sorted(cfg.throttles.items()), sorted(e.id for e in cfg.cron)])).hexdigest()[:12]
        before = await self.store.mark_tables(f"{self._node} {digest}")
        for store in self.parts.stores:  # every FETCH reads its partition's
            await store.set_throttles(cfg.throttles)
        await self.store.set_cron_entries(cfg.cron)
        self._published, self._published_at = cfg, time.monotonic()
        node, _, theirs = before.partition(" ")
        if node and node != self._node and theirs != digest and before not in self._disagreed:
            self._disagreed.add(before)
            log.warning("Another node on this Redis (%s) had published different [throttles] or "
                        "[[cron]] tables: nodes sharing a Redis must share their conf.d, else the "
                        "last to write wins (every minute)", node)

    async def run_cron(self) -> None:
        """Cron: push the jobs of the ticks that came since the last round."""
        await self.publish_config()
        t0 = time.perf_counter()
        pushed = await self.cron.run_due()
        self.stats.add("Cron", cycles=1, enqueued=pushed, wall_time_sec=time.perf_counter() - t0)

    async def reap_workers(self) -> None:
        """Workers that stopped sending heartbeats are forgotten (and their connections
        closed by the server processes)."""
        n = await self.store.reap_workers(jobs.score(time.time_ns() - int(WORKER_TIMEOUT * 1e9)))
        if n:
            log.info("Reaped %d workers that stopped sending heartbeats", n)
            self.stats.add("Workers", reaped=n)

    async def purge_dead(self) -> None:
        """Dead jobs past their retention are forgotten; so are the records of unique locks
        that are gone (``ff_unique_sweep``): SWEEP_PAGES pages a round at most, going on from
        where the last round stopped, so a million unique jobs in flight cost Redis a few
        pages a minute, not a pass over all of them."""
        t0 = time.perf_counter()
        for store in self.parts.stores:
            await store.purge_dead(now_score())
        self.stats.add("Dead", cycles=1, wall_time_sec=time.perf_counter() - t0)
        for i, store in enumerate(self.parts.stores):
            for _ in range(SWEEP_PAGES):
                self._swept[i] = await store.unique_sweep(self._swept[i], SCAN_BATCH)
                if self._swept[i] == "0":
                    break

    async def backups(self) -> None:
        """A backup every ``backup_every`` seconds of the configuration (read each time)."""
        last = time.monotonic()
        failures = FailureLog("Backup")  # every second a backup could fail every second
        while True:
            await asyncio.sleep(BACKUP_CHECK_INTERVAL)
            every = self.config().backup_every
            if every and time.monotonic() - last >= every:
                last = time.monotonic()
                try:
                    await self.backup()
                except Exception as exc:  # BackupError, RedisError, OSError... or a bug
                    failures.failed(exc)

    async def backup(self) -> None:
        """One backup of the child Redis's data now."""
        assert self.redis_child is not None
        client = redis.Redis(unix_socket_path=self.redis_child.socket_path)
        try:
            taken = await asyncio.to_thread(backup.take, client, self.redis_child.data_dir,
                                            self.config().backup_keep)
        finally:
            client.close()
        log.info("Backup written to %s (%.1f MiB)", taken.path, taken.size / 2**20)


async def _every(interval: float, fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``fn`` every ``interval`` seconds until cancelled; a failed round is reported
    (once a minute per distinct failure: ``log.FailureLog``) and the next one tries again."""
    failures = FailureLog(f"Background task {fn.__name__}")
    while True:
        await asyncio.sleep(interval)
        try:
            await fn()
        except (redis_client.RedisClosed, redis_client.NotReplicated):
            # Redis is away (the supervisor reconnects, or the server stops), or refuses
            # writes for want of replicas (its clients are told): next round.
            pass
        except Exception as exc:
            failures.failed(exc)
