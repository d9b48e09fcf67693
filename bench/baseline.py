"""``baseline``: the per-job Redis round trips of a Redis-backed Faktory, issued straight to Redis.

Push = LPUSH; fetch = BRPOP (or RPOP) + ZADD working; ack = ZREM working + INCR processed. One round
trip per operation (no pipelining), same worker/process layout as ``load``: the physical ceiling of a
design that does those round trips per job over one Redis.
"""
from __future__ import annotations

import argparse
import itertools
import os
import random
import time
from dataclasses import dataclass
from typing import Any

import orjson

from .client import BenchError, Conn, Endpoint, Script, run_pushers_and_fetchers
from .common import Target, cpu_count, layout, run_push_fetch
from .procs import WorkerCtx
from .resp import ErrorReply, encode_command

NAME = "baseline"
HELP = "raw Redis ceiling: LPUSH / BRPOP+ZADD / ZREM+INCR per job, one round trip each"
METRICS = [
    ("jobs_per_s", "jobs/s"),
    ("elapsed_s", "elapsed s"),
    ("redis_ops_per_s", "redis ops/s"),
    ("client_cpu_us_per_job", "client CPU µs/job"),
    ("server_cpu_us_per_job", "redis CPU µs/job"),
]

PREFIX = "fbench:"
QUEUES = [f"{PREFIX}q:queue{i}" for i in range(5)]
WORKING = f"{PREFIX}working"
PROCESSED = f"{PREFIX}processed"
JOB_TMPL = b'{"jid":"%s%08x","jobtype":"SomeJob","args":[[1,"string",3]],"retry":25,"queue":"queue%d"}'
# LPUSH <queue> <job>: the constant head of each of the five commands, precomputed.
_LPUSH_PREFIX = [b"*3\r\n$5\r\nLPUSH\r\n$%d\r\n%s\r\n" % (len(q), q.encode()) for q in QUEUES]


def _lpush(qi: int, job: bytes) -> bytes:
    return b"%s$%d\r\n%s\r\n" % (_LPUSH_PREFIX[qi], len(job), job)



def add_args(p: argparse.ArgumentParser) -> None:
    """Options of the baseline scenario (same workload knobs as load)."""
    p.add_argument("-j", "--jobs", type=int, default=30000, help="jobs (default 30000)")
    p.add_argument("-t", "--threads", type=int, default=10, help="workers, half push half fetch (default 10)")
    p.add_argument("--procs", type=int, default=0, help="load processes (default min(threads, cpus))")
    p.add_argument("--rpop", action="store_true", help="poll with RPOP instead of BRPOP")


def params(args: argparse.Namespace) -> dict[str, Any]:
    """Parameters recorded in the result JSON."""
    procs = args.procs or min(args.threads, cpu_count())
    return {"jobs": args.jobs, "threads": args.threads, "procs": len(layout(args.threads, procs)),
            "pop": "RPOP" if args.rpop else "BRPOP"}


@dataclass
class _Arg:
    ep: Endpoint
    jobs: int
    quotas: list[int]
    nfetch: int
    rpop: bool
    fetched: Any  # RawArray: per-process fetched counts (global stop condition)
    pushed: Any


def _worker(ctx: WorkerCtx, a: _Arg) -> dict:
    socks = [Conn(a.ep).detach() for _ in range(len(a.quotas) + a.nfetch)]
    idx, jobs, fetched_arr, pushed_arr = ctx.index, a.jobs, a.fetched, a.pushed
    prefix = (os.urandom(4).hex() + f"{idx:02x}").encode()
    st = {"pushed": 0, "fetched": 0, "t_last": 0.0}
    randrange, choice, loads = random.randrange, random.choice, orjson.loads
    if a.rpop:  # RPOP takes one key: poll the queues in a shuffled order
        pops = [[encode_command("RPOP", q) for q in perm] for perm in itertools.permutations(QUEUES)]
    else:
        pops = [[encode_command("BRPOP", *perm, 2)] for perm in itertools.permutations(QUEUES)]

    def check(reply: Any, what: str) -> None:
        if type(reply) is not int:
            raise BenchError(f"{what}: unexpected reply {reply!r}")

    def pusher(first: int, quota: int) -> Script:
        for i in range(first, first + quota):
            q = randrange(5)
            check((yield _lpush(q, JOB_TMPL % (prefix, i, q))), "LPUSH")
            st["pushed"] += 1
            pushed_arr[idx] = st["pushed"]

    def fetcher() -> Script:
        while sum(fetched_arr) < jobs:
            job = None
            for cmd in choice(pops):
                job = yield cmd
                if job is not None:
                    break
            if job is None:
                continue
            if type(job) is ErrorReply:
                raise BenchError(f"pop: -{job}")
            if type(job) is list:  # BRPOP → [key, value]
                job = job[1]
            jid = loads(job)["jid"]
            check((yield encode_command("ZADD", WORKING, b"%.6f" % time.time(), jid)), "ZADD")
            check((yield encode_command("ZREM", WORKING, jid)), "ZREM")
            check((yield encode_command("INCR", PROCESSED)), "INCR")
            st["fetched"] += 1
            fetched_arr[idx] = st["fetched"]
            st["t_last"] = time.monotonic()

    ctx.ready()
    run_pushers_and_fetchers(socks, a.quotas, pusher, fetcher, lambda: sum(fetched_arr) >= jobs)
    return st


def run_once(args: argparse.Namespace, target: Target) -> dict[str, Any]:
    """One baseline run against the Redis at ``target``."""
    if args.threads < 2:
        raise SystemExit("baseline needs at least 2 threads (one pusher, one fetcher)")
    c = Conn(target.endpoint)
    try:  # the FLUSH analogue: only our own keys, never FLUSHDB on someone's Redis
        c.call_raw(encode_command("DEL", *QUEUES, WORKING, PROCESSED))
    finally:
        c.sock.close()
    results, elapsed, meter = run_push_fetch(
        "baseline", args, target, _worker,
        lambda quotas, nfetch, pushed, fetched: _Arg(target.endpoint, args.jobs, quotas, nfetch,
                                                     args.rpop, fetched, pushed))
    cpu = meter.cpu_s()
    return {
        "jobs_per_s": args.jobs / elapsed,
        "elapsed_s": elapsed,
        "redis_ops_per_s": args.jobs * 5 / elapsed,  # LPUSH, pop, ZADD, ZREM, INCR (BRPOP case)
        "pushed": sum(r["pushed"] for r in results),
        "fetched": sum(r["fetched"] for r in results),
        "client_cpu_us_per_job": sum(r["cpu_s"] for r in results) / args.jobs * 1e6,
        "server_cpu_us_per_job": None if cpu is None else cpu / args.jobs * 1e6,
    }
