"""``latency``: push→start latency with W workers already waiting in FETCH and a steady light push rate."""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Any

import orjson

from .client import BenchError, Conn, Endpoint, Reactor, Script, check_ok, now_us
from .common import StallGuard, Target, flush, split_evenly
from .procs import MP, WorkerCtx, run_workers
from .procstat import ServerMeter
from .resp import ErrorReply

NAME = "latency"
HELP = "push→start latency percentiles: W fetchers waiting, one pusher at a steady rate"
METRICS = [
    ("p50_ms", "p50 ms"),
    ("p90_ms", "p90 ms"),
    ("p99_ms", "p99 ms"),
    ("max_ms", "max ms"),
    ("mean_ms", "mean ms"),
    ("received", "jobs received"),
    ("push_rate", "achieved push rate/s"),
    ("server_cpu_us_per_job", "server CPU µs/job"),
]

PUSH_TMPL = b'PUSH {"jid":"%s%08x","jobtype":"LatencyJob","args":[%d],"queue":"latency"}\r\n'


def add_args(p: argparse.ArgumentParser) -> None:
    """Options of the latency scenario."""
    p.add_argument("-n", "--jobs", type=int, default=2000, help="jobs to push (default 2000)")
    p.add_argument("-w", "--workers", type=int, default=10, help="fetchers waiting in FETCH (default 10)")
    p.add_argument("--rate", type=float, default=500.0, help="pushes per second (default 500)")
    p.add_argument("--procs", type=int, default=1, help="fetcher processes (default 1; the pusher has its own)")


def params(args: argparse.Namespace) -> dict[str, Any]:
    """Parameters recorded in the result JSON."""
    return {"jobs": args.jobs, "workers": args.workers, "rate": args.rate,
            "procs": max(1, min(args.procs, args.workers))}


@dataclass
class _Arg:
    ep: Endpoint
    role: str  # "push" or "fetch"
    count: int  # jobs to push, or fetch connections
    jobs: int
    rate: float
    received: Any  # RawArray of per-fetch-process counts
    deadline_s: float


def _pusher(ctx: WorkerCtx, a: _Arg) -> dict:
    conn = Conn(a.ep)
    prefix = b"lat%02x%s" % (ctx.index, str(int(time.time())).encode())
    ctx.ready()
    start = time.monotonic()
    interval = 1.0 / a.rate
    for i in range(a.count):
        delay = start + i * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # pacing the steady push rate, not synchronisation
        check_ok(conn.call_raw(PUSH_TMPL % (prefix, i, now_us())), "PUSH")
    elapsed = time.monotonic() - start
    conn.close()
    return {"pushed": a.count, "push_elapsed": elapsed, "latencies_us": []}


def _fetchers(ctx: WorkerCtx, a: _Arg) -> dict:
    socks = [Conn(a.ep).detach() for _ in range(a.count)]
    lat: list[int] = []
    received, jobs, idx = a.received, a.jobs, ctx.index

    def fetcher() -> Script:
        while sum(received) < jobs:
            job = yield b"FETCH latency\r\n"
            if job is None:
                continue
            t = now_us()
            if type(job) is ErrorReply:
                raise BenchError(f"FETCH: -{job}")
            obj = orjson.loads(job)
            lat.append(t - int(obj["args"][0]))
            check_ok((yield b'ACK {"jid":"%s"}\r\n' % obj["jid"].encode()), "ACK")
            received[idx] = len(lat)

    reactor = Reactor()
    for s in socks:  # already waiting in FETCH before the pusher starts
        reactor.add(s, fetcher())
    ctx.ready()
    deadline = time.monotonic() + a.deadline_s
    reactor.run_to_end(lambda: sum(received) >= jobs or time.monotonic() > deadline)
    return {"latencies_us": lat}


def _worker(ctx: WorkerCtx, a: _Arg) -> dict:
    return _pusher(ctx, a) if a.role == "push" else _fetchers(ctx, a)


def percentile(sorted_vals: list[int], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_vals:
        return float("nan")
    k = max(0, min(len(sorted_vals) - 1, int(round(q / 100 * len(sorted_vals) + 0.5)) - 1))
    return float(sorted_vals[k])


def run_once(args: argparse.Namespace, target: Target) -> dict[str, Any]:
    """One latency run against ``target``."""
    flush(target.endpoint)
    nproc = max(1, min(args.procs, args.workers))
    received = MP.RawArray("q", nproc + 1)
    # Fetch processes first (indexes 0..nproc-1), the pusher last; all wait on the same start barrier.
    deadline = args.jobs / args.rate + 30.0  # stop waiting for lost jobs eventually
    wargs = [_Arg(target.endpoint, "fetch", n, args.jobs, args.rate, received, deadline)
             for n in split_evenly(args.workers, nproc)]
    wargs.append(_Arg(target.endpoint, "push", args.jobs, args.jobs, args.rate, received, deadline))
    meter = ServerMeter(target.pids)
    stall = StallGuard(max(args.stall, 5 / args.rate), "latency received")

    def progress(elapsed: float) -> str | None:
        stall.check(sum(received), args.jobs)
        return f"  latency {elapsed:5.1f}s received {sum(received):,}/{args.jobs:,}" if elapsed >= 2 else None

    _, results = run_workers(_worker, wargs, on_go=meter.start, progress=progress, timeout=args.timeout,
                             done=lambda: sum(received) >= args.jobs, on_done=meter.stop)
    lat = sorted(v for r in results for v in r["latencies_us"])
    push = next(r for r in results if "pushed" in r)
    cpu = meter.cpu_s()
    return {
        "p50_ms": percentile(lat, 50) / 1000,
        "p90_ms": percentile(lat, 90) / 1000,
        "p99_ms": percentile(lat, 99) / 1000,
        "max_ms": lat[-1] / 1000 if lat else None,
        "mean_ms": sum(lat) / len(lat) / 1000 if lat else None,
        "received": len(lat),
        "lost": args.jobs - len(lat),
        "push_rate": push["pushed"] / push["push_elapsed"] if push["push_elapsed"] > 0 else None,
        "server_cpu_us_per_job": None if cpu is None else cpu / args.jobs * 1e6,
    }
