"""``bulk``: PUSHB throughput, then (``--scheduled N``) N jobs sharing one ``at``: time from ``at`` to all ACKed."""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from .client import BenchError, Conn, Endpoint, Reactor, Script, check_ok
from .common import StallGuard, Target, cpu_count, flush, split_evenly
from .procs import MP, WorkerCtx, run_workers
from .procstat import ServerMeter
from .resp import ErrorReply

NAME = "bulk"
HELP = "PUSHB throughput (batches of 1000) and time-to-drain of N jobs scheduled at one instant"
METRICS = [
    ("jobs_per_s", "PUSHB jobs/s"),
    ("elapsed_s", "PUSHB elapsed s"),
    ("client_cpu_us_per_job", "client CPU µs/job"),
    ("server_cpu_us_per_job", "server CPU µs/job"),
    ("scheduled", "scheduled jobs"),
    ("sched_push_s", "scheduled PUSHB s"),
    ("sched_pushed_before_at", "pushed before at"),
    ("sched_drain_s", "at → all ACKed s"),
    ("sched_jobs_per_s", "scheduled drain jobs/s"),
    ("sched_server_cpu_us_per_job", "sched server CPU µs/job"),
]

BULK_QUEUE = "bulk"
SCHED_QUEUE = "bulk-sched"
JOB_TMPL = b'{"jid":"%s%08x","jobtype":"BulkJob","args":[[1,"string",3]],"retry":25,"queue":"%s"%s}'


def add_args(p: argparse.ArgumentParser) -> None:
    """Options of the bulk scenario."""
    p.add_argument("-j", "--jobs", type=int, default=100000, help="jobs pushed with PUSHB (default 100000)")
    p.add_argument("-b", "--batch", type=int, default=1000, help="jobs per PUSHB (default 1000)")
    p.add_argument("-c", "--conns", type=int, default=4, help="pushing connections (default 4)")
    p.add_argument("--procs", type=int, default=0, help="load processes (default min(conns, cpus))")
    p.add_argument("--scheduled", type=int, default=1_000_000,
                   help="jobs scheduled at one instant, then drained (default 1000000; 0 skips)")
    p.add_argument("--at-delay", type=float, default=0.0,
                   help="seconds from start until the shared 'at' (default 3 + scheduled/50000)")
    p.add_argument("--fetchers", type=int, default=10, help="fetch+ack connections for the drain (default 10)")


def params(args: argparse.Namespace) -> dict[str, Any]:
    """Parameters recorded in the result JSON."""
    return {"jobs": args.jobs, "batch": args.batch, "conns": args.conns,
            "procs": max(1, min(args.procs or cpu_count(), args.conns)), "scheduled": args.scheduled,
            "at_delay": _at_delay(args), "fetchers": args.fetchers}


def _at_delay(args: argparse.Namespace) -> float:
    return args.at_delay or 3.0 + args.scheduled / 50000


def rfc3339(ts: float) -> str:
    """``2025-01-02T03:04:05.123456Z`` for a Unix timestamp."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class _PushArg:
    ep: Endpoint
    jobs: int  # jobs this process pushes
    conns: int
    batch: int
    queue: str
    at: str | None
    done: Any  # RawArray: jobs acknowledged by PUSHB per process (progress)


def _build_batches(prefix: bytes, total: int, batch: int, queue: str,
                   at: str | None) -> list[tuple[bytes, int]]:
    """PUSHB lines of at most ``batch`` jobs each, with their job counts."""
    extra = b',"at":"%s"' % at.encode() if at else b""
    q = queue.encode()
    out, n = [], 0
    while n < total:
        k = min(batch, total - n)
        body = b",".join([JOB_TMPL % (prefix, i, q, extra) for i in range(n, n + k)])
        out.append((b"PUSHB [" + body + b"]\r\n", k))
        n += k
    return out


def _pusher(ctx: WorkerCtx, a: _PushArg) -> dict:
    prefix = (os.urandom(4).hex() + f"b{ctx.index:02x}").encode()
    # Payloads are built before the start barrier: we time the server, not bytes formatting.
    lines = _build_batches(prefix, a.jobs, a.batch, a.queue, a.at)
    per_conn = [lines[i::a.conns] for i in range(a.conns)]
    socks = [Conn(a.ep).detach() for _ in range(a.conns)]
    st = {"pushed": 0, "errors": 0, "t_last": 0.0}
    done, idx = a.done, ctx.index

    def script(mine: list[tuple[bytes, int]]) -> Script:
        for line, k in mine:
            reply = yield line
            if type(reply) is ErrorReply or reply is None:
                raise BenchError(f"PUSHB: {reply!r}")
            if reply != b"{}":
                st["errors"] += len(orjson.loads(reply))
            st["pushed"] += k
            done[idx] = st["pushed"]
            st["t_last"] = time.monotonic()

    reactor = Reactor()
    ctx.ready()
    for s, mine in zip(socks, per_conn):
        reactor.add(s, script(mine))
    reactor.run_to_end()
    return st


@dataclass
class _FetchArg:
    ep: Endpoint
    conns: int
    jobs: int
    done: Any  # RawArray: per-process acked counts (global stop condition)
    deadline: float  # wall clock


def _fetcher(ctx: WorkerCtx, a: _FetchArg) -> dict:
    socks = [Conn(a.ep).detach() for _ in range(a.conns)]
    st = {"acked": 0, "t_last": 0.0}
    done, idx, jobs, loads = a.done, ctx.index, a.jobs, orjson.loads

    def script() -> Script:
        while sum(done) < jobs:
            job = yield b"FETCH bulk-sched\r\n"
            if job is None:
                continue
            if type(job) is ErrorReply:
                raise BenchError(f"FETCH: -{job}")
            check_ok((yield b'ACK {"jid":"%s"}\r\n' % loads(job)["jid"].encode()), "ACK")
            st["acked"] += 1
            done[idx] = st["acked"]
            st["t_last"] = time.time()

    reactor = Reactor()
    for s in socks:
        reactor.add(s, script())
    ctx.ready()
    reactor.run_to_end(lambda: sum(done) >= jobs or time.time() > a.deadline)
    return st


def _push_phase(args: argparse.Namespace, target: Target, total: int, queue: str, at: str | None,
                what: str) -> tuple[float, list[dict], ServerMeter]:
    nproc = max(1, min(args.procs or cpu_count(), args.conns))
    conns = split_evenly(args.conns, nproc)
    jobs = split_evenly(total, nproc)
    done = MP.RawArray("q", nproc)
    wargs = [_PushArg(target.endpoint, j, c, args.batch, queue, at, done) for j, c in zip(jobs, conns)]
    meter = ServerMeter(target.pids)
    stall = StallGuard(args.stall, what)

    def progress(elapsed: float) -> str | None:
        stall.check(sum(done), total)
        return f"  {what} {elapsed:5.1f}s pushed {sum(done):,}/{total:,}" if elapsed >= 2 else None

    t0, results = run_workers(_pusher, wargs, on_go=meter.start, progress=progress, timeout=args.timeout,
                              done=lambda: sum(done) >= total, on_done=meter.stop)
    errors = sum(r["errors"] for r in results)
    if errors:
        raise BenchError(f"{what}: server rejected {errors} jobs")
    return max(r["t_last"] for r in results) - t0, results, meter


def run_once(args: argparse.Namespace, target: Target) -> dict[str, Any]:
    """One bulk run (and the scheduled drain unless --scheduled 0) against ``target``."""
    flush(target.endpoint)
    elapsed, results, meter = _push_phase(args, target, args.jobs, BULK_QUEUE, None, "PUSHB")
    cpu = meter.cpu_s()
    out: dict[str, Any] = {
        "jobs_per_s": args.jobs / elapsed,
        "elapsed_s": elapsed,
        "client_cpu_us_per_job": sum(r["cpu_s"] for r in results) / args.jobs * 1e6,
        "server_cpu_us_per_job": None if cpu is None else cpu / args.jobs * 1e6,
    }
    flush(target.endpoint)
    if args.scheduled > 0:
        out.update(_scheduled(args, target))
    flush(target.endpoint)  # leave no million-job backlog behind
    return out


def _scheduled(args: argparse.Namespace, target: Target) -> dict[str, Any]:
    n = args.scheduled
    at_ts = time.time() + _at_delay(args)
    at = rfc3339(at_ts)
    push_s, _, _ = _push_phase(args, target, n, SCHED_QUEUE, at, "scheduled PUSHB")
    pushed_before_at = time.time() < at_ts
    if not pushed_before_at:
        print(f"  warning: scheduling took longer than --at-delay {_at_delay(args):g}s; the drain "
              f"time is inflated — raise --at-delay", file=sys.stderr)
    nproc = max(1, min(args.procs or cpu_count(), args.fetchers))
    done = MP.RawArray("q", nproc)
    deadline = at_ts + max(60.0, n / 1000)
    wargs = [_FetchArg(target.endpoint, c, n, done, deadline) for c in split_evenly(args.fetchers, nproc)]
    meter = ServerMeter(target.pids)
    stall = StallGuard(args.stall, "scheduled drain")

    def progress(elapsed: float) -> str | None:
        wait = at_ts - time.time()
        if wait > 0:
            return f"  scheduled: {wait:4.1f}s until at" if elapsed >= 2 else None
        stall.check(sum(done), n)
        return f"  scheduled drain {-wait:5.1f}s acked {sum(done):,}/{n:,}"

    _, results = run_workers(_fetcher, wargs, on_go=meter.start, progress=progress,
                             timeout=deadline - time.time() + 30, done=lambda: sum(done) >= n,
                             on_done=meter.stop)
    acked = sum(r["acked"] for r in results)
    drain = max(r["t_last"] for r in results) - at_ts if acked else None
    cpu = meter.cpu_s()
    return {
        "scheduled": n,
        "sched_push_s": push_s,
        "sched_pushed_before_at": pushed_before_at,
        "sched_acked": acked,
        "sched_drain_s": drain,
        "sched_jobs_per_s": acked / drain if drain else None,
        # From the fetchers' start (before `at`) to the end: scheduler + FETCH/ACK, not the PUSHB itself.
        "sched_server_cpu_us_per_job": None if cpu is None else cpu / n * 1e6,
    }
