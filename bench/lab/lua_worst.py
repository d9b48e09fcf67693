"""The Redis time of ONE call of each function of faktory_fast's Lua library, at its worst input.

Redis runs one command at a time: while a function runs, every other client of the shared Redis
waits. This starts a child Redis of its own, loads the library, builds for every registered
function the worst input it can get at a stated scale (the biggest job, the biggest sets, queues,
workers and batches, the callers' own limits: MUTATE's page, the web UI's scan cap, the
background tasks' batches) and times single calls of it: the ``usec`` of FCALL in ``INFO
commandstats`` before and after the one call (not SLOWLOG with every command logged: it would log
each command the function calls too, and time the logging). Each case runs ``REPEATS`` times, on
data set up afresh when the call changes it, once Redis's background thread has freed what earlier
cases dropped; the worst of the repeats is reported, and every call over ``SLOW_MS`` is listed.
Run from the repository root: ``python -m bench.lab.lua_worst [--scale S] [--out FILE]``
(default ``bench/figures/lua-worst.json``); ``--scale`` multiplies every size (jobs, sets, counts;
not the callers' limits) for a quick run.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from types import ModuleType, SimpleNamespace
from typing import Any, cast

import redis

from faktory_fast import job_metrics, jobs
from faktory_fast.jobs import Prepared
from faktory_fast.master import tasks
from faktory_fast.master.redis_child import RedisChild, binary_version, find_binary
from faktory_fast.server.lifecycle import PUSHB_CALL
from faktory_fast.storage import keys
from faktory_fast.storage.fcall import PAGE, Op, Paged
from faktory_fast.storage.ops.batches import WEB_BATCH_SCAN
from faktory_fast.storage.ops.migrations import MIGRATE_PAGE
from faktory_fast.storage.ops.queues import MUTATE_PAGE
from faktory_fast.storage.ops.web import (
    WEB_BATCH_LOOKUP,
    WEB_QUEUE_SCAN,
    WEB_SAME_SCORE,
    WEB_SET_SCAN,
)
from faktory_fast.storage.store import GROUP_MAX, Operations, SyncStore, library_source

from ..bigjob import big_args

REPEATS = 3
SLOW_MS = 20.0  # a single call over this is reported as a finding
FIGURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "figures",
                       "lua-worst.json")
#: Sizes at --scale 1.
JOB_SIZES = (1_000_000, 100_000)
DEPTH = 250  # levels of nesting of the big job's args (bench/bigjob.py's shape)
SET_SIZE = 1_000_000  # retries, scheduled, dead, working, a queue, ff:uniq-names
MUTATE_JIDS = 10_000  # jids in a MUTATE filter
QUEUES = 10_000
WORKERS = 10_000
LOCK_SETS = 10_000  # per-worker throttle lock sets
WORKER_THROTTLES = 100  # per-worker throttles the lock sets belong to
BATCHES = 100_000
BATCH_JOBS = 100_000
SERVER_PROCESSES = 64  # ff:conns entries (HELLO sums them)
WAITING_PROCESSES = 16  # processes with a FETCH waiting on a queue (woken by a throttle lapse)
CRON_ENTRIES = 1_000
PIPE = 1_000  # members per command when building the data
PIPE_COMMANDS = 100  # commands per pipeline (a round trip)
MARK = "JIDJIDJIDJIDJIDJIDJIDJID"  # a template job's jid, replaced by each job's (24 chars)


def _web(name: str) -> ModuleType:
    """A module of the web UI (``web/`` in the checkout, ``faktory_fast.web`` installed): the
    limits its requests pass."""
    try:
        return importlib.import_module(f"web.{name}")
    except ImportError:
        return importlib.import_module(f"faktory_fast.web.{name}")


ANY = object()  # a Case's reply that is not checked


@dataclass
class Case:
    """One input of one function: ``prepare`` sets its data up (afresh) and returns the FCALL;
    ``got`` of the reply must be ``want``; ``undo`` undoes what the call changed."""

    fn: str
    input: str
    prepare: Callable[[], tuple[Any, ...]]
    want: Any = ANY
    got: Callable[[Any], Any] = lambda reply: reply
    undo: Callable[[], object] | None = None
    ms: list[float] = field(default_factory=list)


class Worst:
    """The data, the cases and their measurement, on one child Redis."""

    def __init__(self, store: SyncStore, scale: float) -> None:
        self.store = store
        self.r = cast(redis.Redis, store.client)  # no reply callbacks: raw replies
        self.scale = scale
        self.n = self.count(SET_SIZE)
        self.now_ns = time.time_ns()
        self.day = jobs.today()
        self.cases: list[Case] = []
        resources, views, actions = _web("resources"), _web("views"), _web("actions")
        self.page = int(views.PAGE_SIZE)
        self.scan_cap = int(resources.FILTER_SCAN_CAP)
        self.batch_jobs_page = int(resources.BATCH_JOBS_PAGE)
        self.action_batch = int(actions.BATCH)
        self.seq = 0
        self.big_args: dict[int, list[Any]] = {}  # the big jobs' args, by size
        self.flushed = False

    # -- helpers ---------------------------------------------------------------------------
    def count(self, base: int, least: int = 10) -> int:
        return max(least, round(base * self.scale))

    def jid(self, tag: str) -> str:
        """A new 24-character jid."""
        self.seq += 1
        return f"{tag[:6]:<6}{self.seq:018x}".replace(" ", "-")

    def now(self) -> str:
        return jobs.now_score()

    def call(self, *args: Any) -> Any:
        return self.r.execute_command(*args)

    def pipeline(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        pipe = self.r.pipeline(transaction=False)
        for c in commands:
            pipe.execute_command(*c)
        return list(pipe.execute())

    def fill(self, n: int, command: Callable[[range], tuple[Any, ...]]) -> None:
        """``command(range)`` for each PIPE items of ``n``, PIPE_COMMANDS a pipeline."""
        batch: list[tuple[Any, ...]] = []
        for start in range(0, n, PIPE):
            batch.append(command(range(start, min(n, start + PIPE))))
            if len(batch) == PIPE_COMMANDS:
                self.pipeline(batch)
                batch = []
        if batch:
            self.pipeline(batch)

    def job(self, jid: str, queue: str = "big", **extra: Any) -> Prepared:
        """A small job as PUSH stores it (bench/lab/lua_cost.py's)."""
        fields = {"jid": jid, "jobtype": "SomeJob", "args": [[1, "string", 3]], "retry": 25,
                  "queue": queue, **extra}
        return jobs.prepare(fields, self.now_ns)

    def template(self, queue: str = "big") -> Callable[[str], bytes]:
        """Small jobs of ``queue`` by jid, from one prepared one (fast: a million of them)."""
        payload = self.job(MARK, queue).payload
        mark = MARK.encode()
        return lambda jid: payload.replace(mark, jid.encode(), 1)

    @staticmethod
    def set_jid(tag: str, i: int) -> str:
        return f"{tag}{i:020x}"  # tag: 4 characters

    def fcall_stats(self) -> tuple[int, int]:
        """(calls, µs) of FCALL so far, from INFO commandstats."""
        info = self.call("INFO", "commandstats").decode()
        m = re.search(r"^cmdstat_fcall:calls=(\d+),usec=(\d+),", info, re.M)
        return (int(m.group(1)), int(m.group(2))) if m else (0, 0)

    def settle(self) -> None:
        """Wait until Redis has freed what UNLINK and FLUSHDB ASYNC left to its background
        thread: freeing a million entries meanwhile would slow the next call down."""
        while re.search(rb"^lazyfree_pending_objects:0\r?$", self.call("INFO", "memory"),
                        re.M) is None:
            time.sleep(0.01)

    def measure(self, case: Case) -> float:
        """One call of ``case`` (data set up first): the time Redis spent in it, in ms."""
        args = case.prepare()
        self.settle()
        calls, usec = self.fcall_stats()
        reply = self.call(*args)
        calls2, usec2 = self.fcall_stats()
        if calls2 != calls + 1:
            raise RuntimeError(f"{case.fn}: {calls2 - calls} FCALLs counted, not 1")
        if case.want is not ANY and case.got(reply) != case.want:
            raise RuntimeError(f"{case.fn}, {case.input}: expected {case.want!r:.80}, got "
                               f"{case.got(reply)!r:.200}")
        if case.undo:
            case.undo()
        return (usec2 - usec) / 1000

    def op(self, op: Op[..., Any], *args: Any) -> Callable[[], tuple[Any, ...]]:
        """The FCALL of store operation ``op`` with these arguments, as a Case's prepare."""
        return lambda: op.build(self.store, *args).args

    def first_page(self, op: Paged[..., Any], *args: Any) -> Callable[[], tuple[Any, ...]]:
        """The FCALL of the first page of ``Paged`` store operation ``op`` (each call is one
        page: the worst call is the first, a full one)."""
        return lambda: op.build(self.store, "0", *args).args

    def add(self, fn: str, text: str, prepare: Callable[[], tuple[Any, ...]], want: Any = ANY,
            got: Callable[[Any], Any] | None = None,
            undo: Callable[[], object] | None = None) -> None:
        self.cases.append(Case(fn, text, prepare, want, got or (lambda reply: reply), undo))

    # -- the data --------------------------------------------------------------------------
    def build(self) -> None:
        """Everything the cases read: the big sets and queue, queues, workers, throttles,
        batches. Pipelined, PIPE members a command."""
        n, t0 = self.n, int(self.now_ns // 1_000_000_000)
        small = self.template()
        self.fill(n, lambda r: ("LPUSH", keys.queue("big"),
                                *(small(self.set_jid("queu", i)) for i in r)))
        self.call("SADD", keys.QUEUES, "big")
        self.call("COPY", keys.queue("big"), "bench:q-big", "REPLACE")  # to restore it from
        # retries and dead: distinct scores; scheduled: every job due at one instant
        def zadd(zset: str, tag: str, first: int) -> Callable[[range], tuple[Any, ...]]:
            return lambda r: ("ZADD", zset, *(x for i in r
                                              for x in (first + i, small(self.set_jid(tag, i)))))
        self.fill(n, zadd(keys.RETRIES, "retr", t0))
        self.fill(n, zadd(keys.DEAD, "dead", t0 + 86400))
        self.at_score = f"{t0 + 86400}.000000000"
        self.fill(n, lambda r: ("ZADD", keys.SCHEDULED, *(
            x for i in r for x in (self.at_score, small(self.set_jid("schd", i))))))
        # n reservations, all expired
        def res_record(i: int) -> bytes:
            return (b'{"rid":%d,"wid":"w-res","reserved_at":%d,"expires_at":%d,"job":%s}'
                    % (i + 1, t0 - 7200, t0 - 3600, small(self.set_jid("work", i))))
        self.fill(n, lambda r: ("HSET", keys.RESERVATIONS,
                                *(x for i in r for x in (self.set_jid("work", i), res_record(i)))))
        self.fill(n, lambda r: ("ZADD", keys.WORKING, *(
            x for i in r for x in (t0 - 3600 - n + i, self.set_jid("work", i)))))
        # n unique-lock records whose locks are gone
        self.fill(n, lambda r: ("HSET", keys.UNIQUE_NAMES, *(
            x for i in r for x in (self.set_jid("uniq", i), f"{i:040x}"))))
        self.build_counts()

    def build_counts(self) -> None:
        q = self.count(QUEUES)
        self.queue_names = [f"cq{i:06d}" for i in range(q)]
        small = self.template("cq")
        def queue_jobs(r: range) -> tuple[Any, ...]:
            return ("EVAL", "for i = 1, #KEYS do redis.call('LPUSH', KEYS[i], ARGV[1]) end",
                    2 * len(r),
                    *(k for i in r for k in (keys.queue(self.queue_names[i]),
                                             keys.priority_queue(self.queue_names[i], 9))),
                    small(MARK))
        self.fill(q, queue_jobs)
        self.fill(q, lambda r: ("SADD", keys.QUEUES, *(self.queue_names[i] for i in r)))
        self.fill(q, lambda r: ("SADD", keys.PRIORITY_QUEUES, *(self.queue_names[i] for i in r)))
        # server processes and workers
        self.call("HSET", keys.CONNECTIONS,
                  *(x for i in range(SERVER_PROCESSES) for x in (f"bench-proc-{i}", 1)))
        self.wids = [f"w{i:06d}" for i in range(self.count(WORKERS))]
        self.register_workers()
        # per-worker throttles and their lock sets (every lock held, none lapsed)
        sets = self.count(LOCK_SETS)
        per = max(1, -(-sets // WORKER_THROTTLES))
        self.throttled = [f"tq{i:03d}" for i in range(-(-sets // per))]
        self.call("HSET", keys.THROTTLES, *(x for name in self.throttled
                                             for x in (name, "worker 5 60")))
        lapse = int(self.now_ns // 1_000_000_000) + 86400
        locks = [keys.throttle_lock(self.throttled[i // per], f"w{i % per:06d}")
                 for i in range(sets)]
        self.fill(sets, lambda r: ("EVAL", "for i = 1, #KEYS do redis.call('ZADD', KEYS[i], "
                                           "ARGV[1], ARGV[2]) end", len(r),
                                   *(locks[i] for i in r), lapse, "some-jid"))
        self.fill(sets, lambda r: ("ZADD", keys.THROTTLE_LAPSES,
                                   *(x for i in r for x in (lapse, locks[i]))))
        # batches: BATCHES of them, and one of BATCH_JOBS jobs
        b = self.count(BATCHES)
        created = time.time_ns() - b * 1_000_000
        for start in range(0, b, PIPE):
            self.store.run_all([Operations.batch_new.build(
                self.store, f"bb{i:08d}", created + i * 1_000_000, f"batch number {i}", "", [])
                for i in range(start, min(b, start + PIPE))])
        self.big_bid = "bench-big-batch"
        self.store.batch_new(self.big_bid, time.time_ns(), "the big one", "", [])
        j = self.count(BATCH_JOBS)
        self.fill(j, lambda r: ("HSET", keys.batch_jobs(self.big_bid), *(
            x for i in r for x in (self.set_jid("bjob", i), "pending"))))
        self.call("HSET", keys.batch(self.big_bid), "total", j, "pending", j, "unrun", j,
                  "waiting", j)
        self.call("EXPIRE", keys.batch_jobs(self.big_bid), 1800)

    def register_workers(self) -> None:
        now = self.now()
        for start in range(0, len(self.wids), PIPE):
            self.store.run_all([Operations.hello.build(
                self.store, "bench-proc-0", 10**9, wid, "bench-host", 1000 + i, b'["bench"]', 2,
                now, "127.0.0.1:1234") for i, wid in enumerate(self.wids[start:start + PIPE])])

    # -- the cases -------------------------------------------------------------------------
    def big_job(self, size: int, unique: bool = True, queue: str = "bigjob",
                custom: dict[str, Any] | None = None) -> Prepared:
        """A job of about ``size`` bytes (bench/bigjob.py's nested args), unique for 10
        minutes if ``unique``."""
        job: dict[str, Any] = {"jid": self.jid("big"), "jobtype": "Big", "queue": queue,
                               "args": self.big_args[size]}
        if unique or custom:
            job["custom"] = {**({"unique_for": 600} if unique else {}), **(custom or {})}
        return jobs.prepare(job, time.time_ns())

    def forget(self, *ps: Prepared) -> None:
        """Drop every trace of jobs ``ps``: their queues, locks, lock records, reservations
        and tracking."""
        cmds: list[tuple[Any, ...]] = []
        for p in ps:
            cmds += [("DEL", keys.queue(p.queue), keys.tracking(p.jid),
                      *([keys.unique_lock(p.unique)] if p.unique else [])),
                     ("HDEL", keys.UNIQUE_NAMES, p.jid), ("HDEL", keys.RESERVATIONS, p.jid),
                     ("ZREM", keys.WORKING, p.jid)]
        self.pipeline(cmds)

    def reserved(self, p: Prepared) -> int:
        """Push ``p`` and fetch it: its reservation's token."""
        self.forget(p)
        assert self.store.push([p]) == {}
        got = self.store.fetch("w-big", "bench-proc-0", self.now(), 1800, [p.queue])
        assert not isinstance(got, int) and got.job == p.payload, got
        return got.token

    def job_size_cases(self) -> None:
        """The functions that take or move one job: a nested job of 1 MB and 100 KB."""
        for base in JOB_SIZES:
            size = self.count(base, 1_000)
            self.big_args[size] = big_args(size, DEPTH)
            what = f"a {human(size)} job, args {DEPTH} deep, unique"
            self.one_job_cases(size, what, f"a {human(size)} job, args {DEPTH} deep (no custom)")

    def one_job_cases(self, size: int, what: str, plain: str) -> None:
        p = self.big_job(size)

        def push() -> tuple[Any, ...]:
            self.forget(p)
            return Operations.push.build(self.store, [p]).args
        self.add("ff_push", what, push, 1, undo=lambda: self.forget(p))

        def fetch() -> tuple[Any, ...]:
            self.forget(p)
            self.store.push([p])
            return Operations.fetch.build(self.store, "w-big", "bench-proc-0", self.now(), 1800,
                                          [p.queue]).args
        self.add("ff_fetch", what, fetch, p.payload, fetched, lambda: self.forget(p))

        q = self.big_job(size, unique=False, queue="bigjob-to")

        def push_to() -> tuple[Any, ...]:
            self.forget(q)
            return Operations.push_to.build(self.store, q, "w-big", self.now(), 1800).args
        self.add("ff_push_to", plain, push_to, q.payload, first, lambda: self.forget(q))

        def ack() -> tuple[Any, ...]:
            self.reserved(p)
            return Operations.ack.build(self.store, p.jid, self.day, False).args
        self.add("ff_ack", what, ack, [1], undo=lambda: self.forget(p))

        failed = jobs.apply_failure(p.payload, jobs.FailInfo("Boom", "it failed", ["a:1"] * 50),
                                    self.now_ns)[1]
        dead_score = jobs.dead_score(self.now_ns)

        def fail() -> tuple[Any, ...]:
            token = self.reserved(p)
            return Operations.fail.build(self.store, p.jid, token, self.day, "dead", failed,
                                         dead_score).args
        def unfail() -> None:
            self.call("ZREM", keys.DEAD, failed)
            self.forget(p)
        self.add("ff_fail", what + " (dead: its lock released)", fail, 1, first, unfail)

        def release() -> tuple[Any, ...]:
            self.reserved(p)
            return Operations.release.build(self.store, p.jid, p.queue, 5, p.payload).args
        self.add("ff_release", what, release, 1, undo=lambda: self.forget(p))

        moves = jobs.requeue_moves([p.payload], self.now_ns)[0]

        def enqueue_from() -> tuple[Any, ...]:
            self.forget(p)
            self.call("ZADD", keys.RETRIES, self.now(), p.payload)
            return Operations.enqueue_from.build(self.store, keys.RETRIES, moves).args
        self.add("ff_enqueue_from", what + f", from retries ({self.n:,})", enqueue_from, 1,
                 undo=lambda: self.forget(p))

        def set_aside() -> tuple[Any, ...]:
            self.reserved(p)
            record = self.call("HGET", keys.RESERVATIONS, p.jid)
            return Operations.set_aside.build(self.store, keys.WORKING, p.jid, record,
                                              dead_score, b"", "bench", self.now()).args
        def unset() -> None:
            self.call("DEL", keys.BAD_RECORDS)
            self.forget(p)
        self.add("ff_set_aside", what + ": its reservation to ff:bad", set_aside, 1,
                 undo=unset)

        tick = int(self.now_ns // 1_000_000_000)

        def cron_push() -> tuple[Any, ...]:
            self.forget(p)
            self.call("DEL", keys.cron_claim("bench-entry", tick))
            return Operations.cron_push.build(self.store, "bench-entry", tick, 120, p).args
        self.add("ff_cron_push", what, cron_push, 1, undo=lambda: self.forget(p))

    def many_jobs_cases(self) -> None:
        """Calls that handle many jobs at once, at their callers' limits."""
        batch = [self.job(self.jid("pushb"), "pushb", custom={"unique_for": 600},
                          args=[i, "string", 3]) for i in range(PUSHB_CALL)]

        def pushb() -> tuple[Any, ...]:
            self.forget(*batch)
            return Operations.push.build(self.store, batch).args
        self.add("ff_push", f"{PUSHB_CALL:,} small unique jobs (a PUSHB's call)", pushb,
                 PUSHB_CALL, undo=lambda: self.forget(*batch))

        # the scheduler's call: SCAN_BATCH due jobs to their queue
        due = [self.job(self.jid("due"), "due") for _ in range(tasks.SCAN_BATCH)]
        due_moves = jobs.requeue_moves([p.payload for p in due], self.now_ns)[0]

        def enqueue_due() -> tuple[Any, ...]:
            self.call("DEL", keys.queue("due"))
            self.call("ZADD", keys.SCHEDULED, *(x for p in due for x in (self.now(), p.payload)))
            return Operations.enqueue_from.build(self.store, keys.SCHEDULED, due_moves).args
        self.add("ff_enqueue_from", f"{tasks.SCAN_BATCH} small jobs (the scheduler's page)",
                 enqueue_due, tasks.SCAN_BATCH, undo=lambda: self.call("DEL", keys.queue("due")))

        # group commit: a turn's PUSHes, FETCHes and ACKs, as many as one call carries
        group = [self.job(self.jid("grp"), f"grp{i % 5}", custom={"unique_for": 600},
                          args=[i]) for i in range(GROUP_MAX)]
        fetches = [(f"w-grp{i}", [f"grp{(i + k) % 5}" for k in range(5)])
                   for i in range(GROUP_MAX)]

        def push_group() -> tuple[Any, ...]:
            self.forget(*group)
            return Operations.push.build(self.store, group).args
        self.add("ff_push", f"{GROUP_MAX} small unique jobs (a turn's group commit)", push_group,
                 GROUP_MAX, undo=lambda: self.forget(*group))

        def fetch_group() -> tuple[Any, ...]:
            self.forget(*group)
            self.store.push(group)
            return Operations.fetch_all.build(self.store, "bench-proc-0", self.now(), 1800,
                                              fetches).args
        self.add("ff_fetch", f"{GROUP_MAX} FETCHes of 5 queues each finding a unique job "
                                 "(a turn's group commit)", fetch_group, GROUP_MAX, len,
                 lambda: self.forget(*group))

        def ack_group() -> tuple[Any, ...]:
            self.forget(*group)
            self.store.push(group)
            for wid, queues in fetches:
                self.store.fetch(wid, "bench-proc-0", self.now(), 1800, queues)
            return Operations.ack_all.build(self.store, [(p.jid, False) for p in group],
                                            self.day).args
        self.add("ff_ack", f"{GROUP_MAX} unique jobs (a turn's group commit)", ack_group,
                 [1] * GROUP_MAX, undo=lambda: self.forget(*group))

        # a FETCH that meets a run of expired unique jobs: it discards as many as one call may
        limit = re.search(r"^local EXPIRED_PER_FETCH = (\d+)", library_source(), re.M)
        assert limit, "lua/jobs.lua has no EXPIRED_PER_FETCH"
        per_fetch = int(limit.group(1))
        past = jobs.rfc3339(self.now_ns - 60 * 1_000_000_000)
        expired = [self.job(self.jid("exp"), "expired",
                            custom={"unique_for": 600, "expires_at": past}, args=[i])
                   for i in range(per_fetch + 1)]

        def fetch_expired() -> tuple[Any, ...]:
            self.forget(*expired)
            self.store.push(expired)
            return Operations.fetch.build(self.store, "w-big", "bench-proc-0", self.now(), 1800,
                                          ["expired"]).args
        self.add("ff_fetch", f"past {per_fetch:,} expired unique jobs (its limit)",
                 fetch_expired, per_fetch, lambda reply: len(reply[0][1]),
                 lambda: self.forget(*expired))

    def set_cases(self) -> None:
        """The functions that work on the big sets and queue (``self.n`` entries each)."""
        n = self.n
        big = f"{n:,}"
        dead_score = jobs.dead_score(self.now_ns)
        # MUTATE's first page of retries, as ZSCAN gives it: the jids filter names every
        # entry of it (each is removed), the rest of the jids are of other entries
        page = self.call("ZSCAN", keys.RETRIES, "0", "COUNT", MUTATE_PAGE)[1]
        members, scores = page[0::2], page[1::2]
        jids = [m[8:32].decode() for m in members]
        step = max(1, n // self.count(MUTATE_JIDS))
        jids += [self.set_jid("retr", i)
                 for i in range(0, n, step)][:max(0, self.count(MUTATE_JIDS) - len(jids))]

        def restore_page() -> None:
            self.call("ZADD", keys.RETRIES, *(x for s, m in zip(scores, members) for x in (s, m)))
            self.call("ZREM", keys.DEAD, *members)

        def mutate(mode: str, pattern: str, extra: list[str]) -> Callable[[], tuple[Any, ...]]:
            def prepare() -> tuple[Any, ...]:
                restore_page()
                return Operations.mutate.build(self.store, "kill", keys.RETRIES, dead_score, mode,
                                               pattern, extra).args
            return prepare
        killed = f"kill, one page ({MUTATE_PAGE}) of retries ({big}), all selected"
        glob = ('*"jobtype":"SomeJob"*', ['"jobtype":"SomeJob"'])
        self.add("ff_mutate", f"{killed}: jids filter ({len(jids):,} jids)",
                 mutate("jids", "", jids), len(members), second, restore_page)
        self.add("ff_mutate", f"{killed}: regexp and jobtype filter",
                 mutate("glob", *glob), len(members), second, restore_page)

        def clear() -> tuple[Any, ...]:
            self.call("COPY", keys.DEAD, "bench:dead-copy", "REPLACE")
            return Operations.mutate.build(self.store, "clear", "bench:dead-copy", "", "all", "",
                                           []).args
        self.add("ff_mutate", f"clear of a set of {big}", clear)
        selected = f"one page ({MUTATE_PAGE}) of retries ({big})"
        self.add("ff_mutate_select", f"{selected}: jids filter ({len(jids):,} jids)",
                 self.op(Operations.mutate_select, keys.RETRIES, "jids", "", jids),
                 len(members), lambda reply: len(reply[1]))
        self.add("ff_mutate_select", f"{selected}: regexp and jobtype filter",
                 self.op(Operations.mutate_select, keys.RETRIES, "glob", *glob))
        last = max(0, n - self.action_batch)
        self.add("ff_web_set_page", f"retries ({big}): the last {self.action_batch} (offset "
                                    f"{last:,})",
                 self.op(Operations.set_page, keys.RETRIES, last, self.action_batch))
        # entries named (score, jid): a page's selection (PAGE_SIZE) of the last entries, of
        # a set of distinct scores and of one whose entries share one score (a binary search
        # among them each)
        for zset, what in (
                (keys.RETRIES, f"of retries ({big}, distinct scores)"),
                (keys.SCHEDULED, f"of scheduled ({big}, all due at one instant)")):
            flat = self.call("ZRANGE", zset, -self.page, -1, "WITHSCORES")
            picked = list(zip(flat[0::2], flat[1::2]))
            entries = [(s.decode(), m[8:32].decode(), "") for m, s in picked]
            named = f"{self.page} entries (a page's selection) {what}"
            self.add("ff_web_set_get", named, self.op(Operations.set_entries, zset, entries),
                     (2 * len(picked), 0), lambda reply: (len(reply[0]), len(reply[1])))

            def remove(zset: str = zset, entries: list[tuple[str, str, str]] = entries,
                       picked: list[Any] = picked) -> tuple[Any, ...]:
                self.call("ZADD", zset, *(x for m, s in picked for x in (s, m)))
                return Operations.set_remove.build(self.store, zset, entries).args
            self.add("ff_web_set_remove", named, remove, (len(picked), 0),
                     lambda reply: (reply[0], len(reply[1])),
                     undo=partial(self.call, "ZADD", zset,
                                  *(x for m, s in picked for x in (s, m))))
        # an entry that is not there (deleted meanwhile): its score's members are read for the
        # jid anywhere in them, a page a call
        gone = [(self.at_score, "no-such-jid", "")]
        scanned = (f"1 entry no member has, of scheduled ({big}, all due at one instant): one "
                   f"call (~{WEB_SAME_SCORE:,} of them read)")
        self.add("ff_web_set_get", scanned, self.op(Operations.set_entries, keys.SCHEDULED, gone),
                 0, lambda reply: len(reply[0]))
        self.add("ff_web_set_remove", scanned,
                 self.op(Operations.set_remove, keys.SCHEDULED, gone), 0, lambda reply: reply[0])
        self.add("ff_web_set_filter", f"retries ({big}): jobtype, queue and a text no entry "
                                      f"has, scan cap {self.scan_cap:,}: one call "
                                      f"({WEB_SET_SCAN:,} of them)",
                 self.op(Operations.set_filter, keys.RETRIES, "0", self.scan_cap, self.page,
                         "SomeJob", "big", "no-such-text"),
                 [], lambda reply: reply[2])
        for offset, where in ((n // 2, "the middle (the longest walk)"),
                              (n - self.page, "the last page")):
            self.add("ff_web_queue_page", f"a queue of {big}, {where}: offset {offset:,}",
                     self.op(Operations.queue_page, "big", offset, self.page),
                     2 * self.page, lambda reply: len(reply[1]))
        # a slice from the middle: the longest walk to it
        half = min(n // 2, max(0, n - WEB_QUEUE_SCAN))
        scan = min(n - half, WEB_QUEUE_SCAN)
        self.add("ff_web_queue_filter", f"a queue of {big}: a job type and text no job has, "
                                        f"from the middle: one call ({WEB_QUEUE_SCAN:,} jobs)",
                 self.op(Operations.queue_filter, "big", f"5.{half}", self.scan_cap, self.page,
                         "", "SomeJob", "no-such-text"),
                 scan, lambda reply: reply[1])
        self.add("ff_web_queue_filter", f"a queue of {big}: a jid no job has (find), from the "
                                        f"middle: one call ({WEB_QUEUE_SCAN:,} jobs)",
                 self.op(Operations.queue_filter, "big", f"5.{half}", WEB_QUEUE_SCAN, 1,
                         "no-such-jid", "", ""),
                 scan, lambda reply: reply[1])
        self.add("ff_web_queue_types", f"a queue of {big}: the job types of {WEB_QUEUE_SCAN:,} "
                                       "jobs from the middle",
                 self.op(Operations.queue_types, "big", half, WEB_QUEUE_SCAN),
                 scan, lambda reply: sum(reply[1][1::2]))
        # one job a call, walking from the end nearer to it: the next to be fetched (the far
        # end from the list's head), the middle (the longest walk), a job no longer there
        # (searched for in one half of the list a call)
        for position, where in ((0, "the next to be fetched"),
                                (n // 2, f"the middle (position {n // 2:,})")):
            job = self.call("LINDEX", keys.queue("big"), -(position + 1))

            def delete(job: bytes = job, position: int = position) -> tuple[Any, ...]:
                return Operations.queue_delete.build(self.store, "big", 5, job, position).args

            def undelete(job: bytes = job, position: int = position) -> None:
                if position == 0:
                    self.call("RPUSH", keys.queue("big"), job)
                else:
                    self.call("COPY", "bench:q-big", keys.queue("big"), "REPLACE")
            self.add("ff_web_queue_delete", f"1 job of a queue of {big}: {where}", delete, [1],
                     undo=undelete)
        self.add("ff_web_queue_delete", f"1 job no longer in a queue of {big}: one call (half "
                                        "the list searched)",
                 self.op(Operations.queue_delete, "big", 5, b'{"jid":"gone"}', 0),
                 [0, b"0", b"head"])
        self.add("ff_expired", f"{tasks.EXPIRED_BATCH} (the reaper's batch) of {big} expired "
                               "reservations",
                 lambda: Operations.expired.build(self.store, self.now(),
                                                  tasks.EXPIRED_BATCH).args,
                 2 * tasks.EXPIRED_BATCH, len)
        self.add("ff_reservations", f"1,000 (the Busy page's) of {big} reservations",
                 self.op(Operations.reservations, 1000),
                 min(1000, n), len)
        records = self.call("HSCAN", keys.UNIQUE_NAMES, "0", "COUNT", tasks.SCAN_BATCH)[1]

        def sweep() -> tuple[Any, ...]:
            self.call("HSET", keys.UNIQUE_NAMES, *records)
            return Operations.unique_sweep.build(self.store, "0", tasks.SCAN_BATCH).args
        self.add("ff_unique_sweep", f"one page ({tasks.SCAN_BATCH}) of {big} records, every "
                                    "lock gone", sweep,
                 undo=lambda: self.call("HSET", keys.UNIQUE_NAMES, *records))

        def unremove() -> None:
            self.call("COPY", "bench:q-big", keys.queue("big"), "REPLACE")
            self.call("SADD", keys.QUEUES, "big")
        self.add("ff_queue", f"REMOVE of a queue of {big}",
                 self.first_page(Operations.queue_op, "REMOVE", ["big"]), [b"0", 1], undo=unremove)

        def migrate_queue() -> tuple[Any, ...]:
            self.call("COPY", "bench:q-big", "mq", "REPLACE")
            self.call("DEL", keys.queue("mq"))
            self.call("LPUSH", keys.queue("mq"), b"{}")
            return Operations.migrate_queue.build(self.store, "0", "mq").args
        self.add("ff_migrate_queue", f"a Faktory 1.9 queue of {big} onto its non-empty q: list "
                                     f"(one call: {MIGRATE_PAGE:,} jobs)",
                 migrate_queue, min(n, MIGRATE_PAGE),
                 undo=lambda: self.call("DEL", "mq", keys.queue("mq")))

    def count_cases(self) -> None:
        """The functions whose work grows with the number of queues, workers, batches."""
        names = self.queue_names
        qs = f"{len(names):,} queues, each with priority lists"
        self.add("ff_info", f"{qs}; sets of {self.n:,} (one call: a page of ~{PAGE})",
                 self.first_page(Operations.info))
        self.add("ff_web_queues", f"{qs} (one call: a page of ~{PAGE // 4})",
                 self.first_page(Operations.queue_list))
        self.add("ff_queue_heads", f"{qs}, all named (one call: {PAGE} of them)",
                 self.first_page(Operations.queue_heads, names))

        def pause() -> tuple[Any, ...]:
            self.call("DEL", keys.PAUSED)
            return Operations.queue_op.build(self.store, "0", "PAUSE", ["*"]).args
        self.add("ff_queue", f"PAUSE '*' of {qs} (one call: a page of ~{PAGE})", pause,
                 undo=lambda: self.call("DEL", keys.PAUSED))
        p = self.job(self.jid("small"), "small")

        def fetch_paused() -> tuple[Any, ...]:
            self.forget(p)
            self.store.push([p])
            self.fill(len(names), lambda r: ("SADD", keys.PAUSED, *(names[i] for i in r)))
            return Operations.fetch.build(self.store, "w-big", "bench-proc-0", self.now(), 1800,
                                          ["small"]).args
        def unpause() -> None:
            self.call("DEL", keys.PAUSED)
            self.forget(p)
        self.add("ff_fetch", f"a small job, {len(names):,} other queues paused", fetch_paused,
                 p.payload, fetched, unpause)

        ws = f"{len(self.wids):,} workers"
        self.add("ff_workers", f"{ws} (one call: a page of ~{PAGE})",
                 self.first_page(Operations.workers))

        def running() -> None:
            self.fill(len(self.wids), lambda r: ("EVAL", "for i = 1, #KEYS do redis.call('HSET', "
                                                         "KEYS[i], 'state', 'running') end",
                                                 len(r), *(keys.worker(self.wids[i]) for i in r)))
            self.call("DEL", keys.QUIET_WORKERS)

        def signal() -> tuple[Any, ...]:
            running()
            return Operations.signal_workers.build(self.store, "0", "quiet", ["*"]).args
        self.add("ff_signal", f"quiet '*' of {ws} (one call: a page of ~{PAGE})", signal,
                 undo=running)

        def reap() -> tuple[Any, ...]:
            self.register_workers()
            return Operations.reap_workers.build(self.store, "0", str(time.time() + 3600)).args
        self.add("ff_reap_workers", f"{ws} without a recent heartbeat (one call: {PAGE})", reap,
                 min(PAGE, len(self.wids)), undo=self.register_workers)

        def all_quiet() -> tuple[Any, ...]:
            running()
            self.store.signal_workers("quiet", ["*"])
            return Operations.quiet_states.build(self.store, "0").args
        self.add("ff_quiet_states", f"{ws}, all quiet (one call: a page of ~{PAGE})", all_quiet,
                 undo=running)
        mirrored = [x for wid in self.wids[:tasks.SCAN_BATCH] for x in (wid, "quiet")]

        def mirror() -> tuple[Any, ...]:
            self.call("DEL", keys.QUIET_WORKERS)
            return Operations.mirror_quiet.build(self.store, 10, True, mirrored).args
        self.add("ff_quiet_mirror", f"{len(mirrored) // 2:,} quiet workers copied (one call of "
                 "the master's)", mirror, undo=running)
        conns = f"{SERVER_PROCESSES} server processes"

        def hello() -> tuple[Any, ...]:
            return Operations.hello.build(self.store, "bench-proc-1", 10**9, self.jid("w"),
                                          "bench-host", 1, b'["bench"]', 2, self.now(),
                                          "127.0.0.1:1").args
        self.add("ff_hello", f"a new worker; {ws}, {conns}", hello,
                 0)

        def bye() -> tuple[Any, ...]:
            wid = self.jid("w")
            self.store.hello("bench-proc-1", 10**9, wid, "h", 1, b"[]", 2, self.now())
            return Operations.bye.build(self.store, "bench-proc-1", wid).args
        self.add("ff_bye", f"a worker's last connection; {ws}", bye)

        def beat() -> tuple[Any, ...]:
            self.call("HSET", keys.worker(self.wids[0]), "state", "running")
            return Operations.beat.build(self.store, self.wids[0], self.now(), "quiet", 123456).args
        self.add("ff_beat", f"a worker going quiet; {ws}", beat,
                 b"quiet", undo=running)

        def gone() -> tuple[Any, ...]:
            self.call("HSET", keys.CONNECTIONS, "bench-gone", 3)
            self.call("HSET", keys.COMMANDS, "bench-gone", 10**6)
            return Operations.process_gone.build(self.store, "bench-gone").args
        self.add("ff_process_gone", f"one of {conns}", gone)

        sets = self.count(LOCK_SETS)
        self.add("ff_throttle_usage", f"{len(self.throttled)} per-worker throttles, {sets:,} "
                                      f"lock sets (each holding a lock; one call: a page of ~{PAGE})",
                 self.first_page(Operations.throttle_usage),
                 len(self.throttled), lambda reply: len(reply[1]))
        lapsed = [f"lq{i:03d}" for i in range(tasks.EXPIRED_BATCH)]
        lapsed_at = int(self.now_ns // 1_000_000_000) - 60

        def lapses() -> tuple[Any, ...]:
            cmds: list[tuple[Any, ...]] = []
            for q in lapsed:
                lock = keys.throttle_lock(q)
                cmds.append(("ZADD", lock, *(x for i in range(10) for x in (lapsed_at, f"j{i}"))))
                cmds.append(("ZADD", keys.THROTTLE_LAPSES, lapsed_at, lock))
                cmds.append(("SADD", keys.waiters(q),
                             *(f"bench-proc-{i}" for i in range(WAITING_PROCESSES))))
            self.pipeline(cmds)
            return Operations.throttle_lapsed.build(self.store, self.now(),
                                                    tasks.EXPIRED_BATCH).args
        self.add("ff_throttle_lapsed", f"{tasks.EXPIRED_BATCH} (its limit) lock sets lapsed, "
                                       f"10 locks each, {WAITING_PROCESSES} processes waiting "
                                       "on each queue", lapses,
                 tasks.EXPIRED_BATCH)

        b = f"{self.count(BATCHES):,} batches"
        total = self.count(BATCHES) + 1
        last = max(0, total - self.page)
        one = f"one call ({WEB_BATCH_SCAN:,} of them)"
        self.add("ff_batch_page", f"{b}: the first page",
                 self.op(Operations.batch_page, 0, 0, self.page + 1, "",
                         self.page + self.scan_cap),
                 self.page + 1, lambda reply: len(reply[3]))
        self.add("ff_batch_page", f"{b}: the last page (offset {last:,}): {one}",
                 self.op(Operations.batch_page, 0, last, self.page + 1, "",
                         last + self.page + self.scan_cap))
        self.add("ff_batch_page", f"{b}: a text no batch has, scan cap {self.scan_cap:,}: {one}",
                 self.op(Operations.batch_page, 0, 0, self.page + 1, "no-such-text",
                         self.page + self.scan_cap))
        self.add("ff_batch_stats", f"{b} open: {one}", self.op(Operations.batch_stats))
        self.add("ff_web_batch_of", f"{b}: a jid in none of them (find): one call "
                                    f"({WEB_BATCH_LOOKUP:,} of them)",
                 self.op(Operations.batch_of, "no-such-jid", 0), b"", lambda reply: reply[1])
        bj = f"a batch of {self.count(BATCH_JOBS):,} jobs"
        self.add("ff_batch_detail", f"{bj}: a state no job has: one call (~{WEB_BATCH_SCAN:,} "
                                    "jobs)",
                 self.op(Operations.batch_detail, self.big_bid, "0", self.batch_jobs_page, "dead"))
        self.add("ff_batch_detail", f"{bj}: the first page",
                 self.op(Operations.batch_detail, self.big_bid, "0", self.batch_jobs_page, ""))
        self.add("ff_batch_status", bj,
                 self.op(Operations.batch_status, self.big_bid))
        callback = self.job("JIDJIDJIDJIDJIDJIDJID-cb", "callbacks").payload

        def batch_new() -> tuple[Any, ...]:
            parent = self.jid("parent")
            self.store.batch_new(parent, time.time_ns(), "parent", "", [])
            return Operations.batch_new.build(
                self.store, self.jid("bid"), time.time_ns(), "a child batch", parent,
                [(w, callback, "callbacks", 5, self.jid("cb")) for w in ("complete", "success")]
            ).args
        self.add("ff_batch_new", "a child batch with both callbacks", batch_new,
                 b"")
        levels = 4
        bids: list[str] = []

        def chain() -> tuple[Any, ...]:
            # a batch whose commit completes it and its ancestors: each waits on its child only
            bids[:] = [self.jid("chain") for _ in range(levels)]
            for i, bid in enumerate(bids):
                self.store.batch_new(bid, time.time_ns(), "chain", bids[i - 1] if i else "", [])
            for bid in bids[:-1]:
                self.store.batch_commit(bid, 3600)
            return Operations.batch_commit.build(self.store, bids[-1], 3600).args

        def succeeded() -> None:
            if self.store.batch_status(bids[0]).get("success_st") != "2":
                raise RuntimeError("ff_batch_commit: the chain's root did not succeed")
        self.add("ff_batch_commit", f"the last of a chain of {levels} nested batches: all of "
                                    "them complete and succeed", chain, 1, undo=succeeded)

        def batch_open() -> tuple[Any, ...]:
            bid = self.jid("open")
            self.store.batch_new(bid, time.time_ns(), "open", "", [])
            self.store.batch_commit(bid, 3600)
            return Operations.batch_open.build(self.store, bid).args
        self.add("ff_batch_open", "a committed batch", batch_open, 1)

        size = max(self.big_args)
        t = self.big_job(size, unique=False, custom={"track": 1})
        until = str(int(self.now_ns // 1_000_000_000) + 7200)

        def track_set() -> tuple[Any, ...]:
            self.reserved(t)
            self.call("HSET", keys.tracking(t.jid), "state", "enqueued")
            return Operations.track_set.build(self.store, t.jid, 50, "half way", until).args
        self.add("ff_track_set", "percent, desc and a later reservation of a job of "
                                 f"{human(size)}", track_set,
                 1, undo=lambda: self.forget(t))
        self.add("ff_track_get", "a tracked job", self.op(Operations.track_get, t.jid))

        entries = [SimpleNamespace(id=f"entry-{i:04d}", schedule="*/5 * * * *",
                                   job={"jobtype": "Cron", "queue": "cron", "args": [i]},
                                   source=f"conf.d/cron.toml entry {i}")
                   for i in range(CRON_ENTRIES)]
        self.store.set_cron_entries(entries)
        self.add("ff_replace_hash", f"the cron table: {CRON_ENTRIES:,} entries over as many",
                 self.op(Operations.set_cron_entries, entries),
                 CRON_ENTRIES)
        lock_args = [[1, "string", 3]]
        self.add("ff_lock", "a unique lock",
                 self.op(Operations.unique_lock, "SomeJob", "default", lock_args))

        def seen() -> tuple[Any, ...]:
            self.seq += 1
            return Operations.cron_seen.build(self.store, int(time.time()) + self.seq).args
        self.add("ff_cron_seen", "the watermark moving on", seen)
        full = job_metrics.Counts()
        full.executions, full.failures, full.us = 10**9, 10**8, 10**15
        full.buckets = {i: 10**6 for i in range(len(job_metrics.BUCKETS_MS) + 1)}
        minute = int(time.time() // 60)
        flush = {minute + i // 100: {f"queue{i % 10}|App::Job{i:04d}": job_metrics.pack(full)}
                 for i in range(job_metrics.FLUSH_CALL)}
        self.add("ff_metrics", f"one call of a flush: {job_metrics.FLUSH_CALL} pairs over 2 "
                               "minutes, every histogram bucket in use, into buckets that hold "
                               "them already", self.op(Operations.add_job_metrics, flush, 600,
                                                       7200, job_metrics.MAX_PAIRS))
        m = self.big_job(size, unique=False)
        member = b'{"job":%s,"since":"2026-01-01T00:00:00Z","expiry":"2026-01-01T00:30:00Z",' \
                 b'"wid":"w-old"}' % m.payload
        record = b'{"rid":1,"wid":"w-old","reserved_at":1,"expires_at":2,"job":%s}' % m.payload

        def migrate_reservation() -> tuple[Any, ...]:
            self.call("ZADD", keys.WORKING, 2, member)
            return Operations.migrate_reservation.build(self.store, member, m.jid, record,
                                                        2.0).args
        self.add("ff_migrate_reservation", f"a Faktory reservation of a {human(size)} job "
                                           f"among {self.n:,}", migrate_reservation,
                 1, undo=lambda: self.forget(m))

    def flush_case(self) -> None:
        def flush() -> tuple[Any, ...]:
            if self.flushed:
                self.build()
            self.flushed = True
            return Operations.flush.build(self.store, "0").args
        self.add("ff_flush", f"every set, queue, worker and batch above ({self.n:,} entries "
                             "a set)", flush)



def human(size: int) -> str:
    """1,000,000 as '1 MB', 100,000 as '100 KB', 1,500 as '1.5 KB'."""
    for unit, div in (("MB", 1_000_000), ("KB", 1_000)):
        if size >= div:
            return f"{size / div:g} {unit}"
    return f"{size} bytes"


def first(reply: Any) -> Any:
    return reply[0]


def fetched(reply: Any) -> Any:
    """The job ff_fetch found for its one FETCH."""
    return reply[0][0]


def second(reply: Any) -> Any:
    return reply[1]


def registered(store: SyncStore) -> list[str]:
    """Every function the library registers, as Redis lists them."""
    libs = store.client.execute_command("FUNCTION", "LIST", "LIBRARYNAME", "faktory_fast")
    lib = dict(zip(libs[0][0::2], libs[0][1::2]))
    return sorted(dict(zip(f[0::2], f[1::2]))[b"name"].decode() for f in lib[b"functions"])


def git_head() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10, cwd=os.path.dirname(FIGURES)).stdout.strip()
    except OSError:
        return ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0,
                    help="multiply every size by this (default 1: jobs of 1 MB, sets of 1,000,000)")
    ap.add_argument("--out", default=FIGURES, help=f"result JSON (default {FIGURES})")
    ap.add_argument("--only", metavar="REGEX", help="only the functions whose name matches")
    opts = ap.parse_args()
    data_dir = tempfile.mkdtemp(prefix="lua-worst-")
    child = RedisChild(data_dir)
    child.start()
    started = time.monotonic()
    try:
        store = SyncStore.connect(child.url)
        store.load_library()
        r = store.client
        # no snapshots or AOF of the data built (a fork or a rewrite would skew the figures)
        for k, v in (("save", ""), ("appendonly", "no")):
            r.execute_command("CONFIG", "SET", k, v)
        w = Worst(store, opts.scale)
        t0 = time.monotonic()
        w.build()
        print(f"data built in {time.monotonic() - t0:.1f} s "
              f"(Redis uses {store.redis_info()['used_memory_human']})", flush=True)
        w.job_size_cases()
        w.many_jobs_cases()
        w.set_cases()
        w.count_cases()
        w.flush_case()
        cases = [c for c in w.cases if not opts.only or re.search(opts.only, c.fn)]
        names = registered(store)
        missing = sorted(set(names) - {c.fn for c in w.cases})
        if missing:
            raise SystemExit(f"no case for {', '.join(missing)}")
        width = max(len(c.input) for c in cases)
        print(f"{'function':<24} {'input':<{width}} {'worst ms':>9}")
        for case in cases:
            case.ms = [w.measure(case) for _ in range(REPEATS)]
            worst = max(case.ms)
            flag = "  SLOW" if worst > SLOW_MS else ""
            print(f"{case.fn:<24} {case.input:<{width}} {worst:9.2f}{flag}", flush=True)
        result = report(cases, names, opts.scale)
        slow = result["slow"]
        print(f"\n{len(slow)} of {len(cases)} calls over {SLOW_MS:g} ms"
              + "".join(f"\n  {s['function']}: {s['worst_ms']:.1f} ms, {s['input']}"
                        for s in slow))
        os.makedirs(os.path.dirname(os.path.abspath(opts.out)), exist_ok=True)
        with open(opts.out, "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
        print(f"written {opts.out} ({time.monotonic() - started:.0f} s)")
    finally:
        child.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def report(cases: list[Case], names: list[str], scale: float) -> dict[str, Any]:
    functions: dict[str, Any] = {}
    for case in cases:
        entry = functions.setdefault(case.fn, {"worst_ms": 0.0, "input": "", "cases": []})
        worst = round(max(case.ms), 3)
        entry["cases"].append({"input": case.input, "ms": [round(x, 3) for x in case.ms],
                               "worst_ms": worst})
        if worst >= entry["worst_ms"]:
            entry["worst_ms"], entry["input"] = worst, case.input
    binary = find_binary()
    return {
        "command": "python -m bench.lab.lua_worst" + (f" --scale {scale:g}" if scale != 1 else ""),
        "scale": scale, "repeats": REPEATS, "slow_ms": SLOW_MS,
        "measured": time.strftime("%Y-%m-%d"), "commit": git_head(),
        "redis": f"{os.path.basename(binary)} {'.'.join(map(str, binary_version(binary)))}",
        "registered": names,
        "functions": dict(sorted(functions.items())),
        "slow": [{"function": c.fn, "input": c.input, "worst_ms": round(max(c.ms), 3)}
                 for c in sorted(cases, key=lambda c: -max(c.ms)) if max(c.ms) > SLOW_MS],
    }


if __name__ == "__main__":
    main()
