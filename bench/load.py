"""``load``: Faktory's own load test (contribsys/faktory test/load) — push, fetch, ack/fail."""
from __future__ import annotations

import argparse
import itertools
import os
import random
import time
from dataclasses import dataclass
from typing import Any

import orjson

from .client import BenchError, Conn, Endpoint, Script, check_ok, run_pushers_and_fetchers
from .common import SERVER_CPU_METRICS, Target, cpu_count, flush, layout, run_push_fetch
from .procs import WorkerCtx
from .resp import ErrorReply

NAME = "load"
HELP = "Faktory's load test: T workers, half PUSH to queue0..4, half FETCH+ACK (1%% FAIL)"
METRICS = [
    ("jobs_per_s", "jobs/s"),
    ("elapsed_s", "elapsed s"),
    ("pushed", "pushed"),
    ("fetched", "fetched (acked+failed)"),
    ("failed", "failed"),
    ("client_cpu_us_per_job", "client CPU µs/job"),
    *SERVER_CPU_METRICS,
]

QUEUES = [f"queue{i}" for i in range(5)]
PUSH_TMPL = (b'PUSH {"jid":"%s%08x","jobtype":"SomeJob","args":[[1,"string",3]],'
             b'"retry":25,"queue":"queue%d"}\r\n')
# --ent: Enterprise jobs against plain ones, alternating on the one server. unique: every job
# unique (unique_for; distinct args, so none is refused: the lock is taken and released per
# job). throttle: jobs in tqueue0..4, which the server must throttle, e.g. with conf.d
# `[throttles]` tqueue0 = { concurrency = 1000, timeout = 60 } ... tqueue4 (bench/README.md).
VARIANTS = ("unique", "throttle")
PUSH_TMPLS = {
    "plain": PUSH_TMPL,
    "unique": (b'PUSH {"jid":"%s%08x","jobtype":"SomeJob","args":[[1,"string",3],"%s%08x"],'
               b'"retry":25,"queue":"queue%d","custom":{"unique_for":600}}\r\n'),
    "throttle": PUSH_TMPL.replace(b'"queue":"queue', b'"queue":"tqueue'),
}


def _fetch_cmds(prefix: str) -> list[bytes]:
    # Every ordering of the five queues, precomputed: cheaper than shuffling per FETCH.
    names = [f"{prefix}{i}" for i in range(5)]
    return [b"FETCH " + " ".join(p).encode() + b"\r\n" for p in itertools.permutations(names)]


FETCH_CMDS = _fetch_cmds("queue")
FETCH_CMDS_BY_VARIANT = {"plain": FETCH_CMDS, "unique": FETCH_CMDS,
                         "throttle": _fetch_cmds("tqueue")}
ACK_TMPL = b'ACK {"jid":"%s"}\r\n'
FAIL_TMPL = (b'FAIL {"jid":"%s","errtype":"RuntimeError","message":"bench: simulated failure",'
             b'"backtrace":["bench/load.py:1:in fetcher"]}\r\n')


def add_args(p: argparse.ArgumentParser) -> None:
    """Options of the load scenario."""
    p.add_argument("-j", "--jobs", type=int, default=30000, help="jobs to push and to fetch (default 30000)")
    p.add_argument("-t", "--threads", type=int, default=10, help="workers, half push half fetch (default 10)")
    p.add_argument("--procs", type=int, default=0, help="load processes (default min(threads, cpus))")
    p.add_argument("--fail-rate", type=float, default=0.01, help="fraction of fetched jobs FAILed (0.01)")
    p.add_argument("--ent", choices=VARIANTS,
                   help="compare plain jobs with unique jobs (unique_for) or jobs of throttled "
                        "queues tqueue0..4, alternating on the one server (ratio: plain/ent)")


def params(args: argparse.Namespace) -> dict[str, Any]:
    """Parameters recorded in the result JSON."""
    procs = args.procs or min(args.threads, cpu_count())
    return {"jobs": args.jobs, "threads": args.threads, "procs": len(layout(args.threads, procs)),
            "fail_rate": args.fail_rate, "ent": args.ent}


def variant_targets(args: argparse.Namespace, target: Target) -> list[Target]:
    """``--ent``: the one server twice, as "plain" and as the Enterprise variant."""
    return [Target("plain", target.endpoint, target.pids),
            Target(args.ent, target.endpoint, target.pids)]


@dataclass
class _Arg:
    ep: Endpoint
    jobs: int
    quotas: list[int]  # one push quota per pusher connection of this process
    nfetch: int
    fail_rate: float
    pushed: Any  # RawArray: per-process pushed counts (progress)
    fetched: Any  # RawArray: per-process fetched counts (global stop condition)
    variant: str = "plain"  # plain, or one of VARIANTS


def _worker(ctx: WorkerCtx, a: _Arg) -> dict:
    conns = [Conn(a.ep) for _ in range(len(a.quotas) + a.nfetch)]
    socks = [c.detach() for c in conns]
    idx, jobs, fetched_arr, pushed_arr = ctx.index, a.jobs, a.fetched, a.pushed
    prefix = (os.urandom(4).hex() + f"{idx:02x}").encode()
    st = {"pushed": 0, "fetched": 0, "failed": 0, "t_last": 0.0}
    fail_rate = a.fail_rate
    rnd, choice, randrange, loads, mono = random.random, random.choice, random.randrange, orjson.loads, time.monotonic

    tmpl, fetch_cmds = PUSH_TMPLS[a.variant], FETCH_CMDS_BY_VARIANT[a.variant]
    unique = a.variant == "unique"

    def pusher(first: int, quota: int) -> Script:
        for i in range(first, first + quota):
            if unique:  # the jid in the args too: every job is another unique job
                cmd = tmpl % (prefix, i, prefix, i, randrange(5))
            else:
                cmd = tmpl % (prefix, i, randrange(5))
            check_ok((yield cmd), "PUSH")
            st["pushed"] += 1
            pushed_arr[idx] = st["pushed"]

    def fetcher() -> Script:
        while sum(fetched_arr) < jobs:
            job = yield choice(fetch_cmds)
            if job is None:
                continue
            if type(job) is ErrorReply:
                raise BenchError(f"FETCH: -{job}")
            jid = loads(job)["jid"].encode()
            if rnd() < fail_rate:
                check_ok((yield FAIL_TMPL % jid), "FAIL")
                st["failed"] += 1
            else:
                check_ok((yield ACK_TMPL % jid), "ACK")
            st["fetched"] += 1
            fetched_arr[idx] = st["fetched"]
            st["t_last"] = mono()

    ctx.ready()
    run_pushers_and_fetchers(socks, a.quotas, pusher, fetcher, lambda: sum(fetched_arr) >= jobs)
    return st


def run_once(args: argparse.Namespace, target: Target) -> dict[str, Any]:
    """One load run against ``target``; returns the metrics dict."""
    if args.threads < 2:
        raise SystemExit("load needs at least 2 threads (one pusher, one fetcher)")
    flush(target.endpoint)
    variant = target.name if target.name in VARIANTS else "plain"
    results, elapsed, meter = run_push_fetch(
        "load", args, target, _worker,
        lambda quotas, nfetch, pushed, fetched: _Arg(target.endpoint, args.jobs, quotas, nfetch,
                                                     args.fail_rate, pushed, fetched, variant))
    n_fetched = sum(r["fetched"] for r in results)
    server_cpu = meter.cpu_s()
    return {
        "jobs_per_s": args.jobs / elapsed,
        "elapsed_s": elapsed,
        "pushed": sum(r["pushed"] for r in results),
        "fetched": n_fetched,
        "failed": sum(r["failed"] for r in results),
        "client_cpu_us_per_job": sum(r["cpu_s"] for r in results) / args.jobs * 1e6,
        "client_cpu_user_share": sum(r["cpu_user_s"] for r in results) / max(1e-9, sum(r["cpu_s"] for r in results)),
        "server_cpu_us_per_job": None if server_cpu is None else server_cpu / args.jobs * 1e6,
        "server_cpu_pct": None if server_cpu is None else server_cpu / elapsed * 100,
        "server_procs": meter.nprocs(),
        **{key.replace(" ", "_") + "_us_per_job": cpu / args.jobs * 1e6
           for key, cpu in meter.parts().items()},
    }
