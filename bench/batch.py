"""``batch``: the cost of Enterprise batches. The same jobs twice in one run: pushed in PUSHBs
of ``--batch-size`` without batches, then each PUSHB inside its own batch (``BATCH NEW`` with a
complete and a success callback, ``PUSHB`` with ``custom.bid``, ``BATCH COMMIT``), fetched and
ACKed by the same workers (the callbacks too: a batched run ends when every batch's success
callback is ACKed). Reports both throughputs and their ratio (the order of the two phases
alternates from one run to the next)."""
from __future__ import annotations

import argparse
import itertools
import os
import time
from dataclasses import dataclass
from typing import Any

import orjson

from .client import BenchError, Conn, Endpoint, Reactor, Script, check_ok
from .common import StallGuard, Target, cpu_count, flush, split_evenly
from .procs import MP, WorkerCtx, run_workers
from .procstat import ServerMeter
from .resp import ErrorReply

NAME = "batch"
HELP = "jobs in batches (NEW, PUSHB with custom.bid, COMMIT, callbacks) vs the same jobs without"
METRICS = [
    ("plain_jobs_per_s", "without batches jobs/s"),
    ("batch_jobs_per_s", "in batches jobs/s"),
    ("ratio", "in batches / without"),
    ("batches", "batches"),
    ("callbacks", "callbacks run"),
    ("plain_server_cpu_us_per_job", "without: server CPU µs/job"),
    ("batch_server_cpu_us_per_job", "in batches: server CPU µs/job"),
    ("client_cpu_us_per_job", "client CPU µs/job (both)"),
]

WORK_QUEUE = b"bwork"
CALLBACK_QUEUE = "bcallback"
JOB_TMPL = b'{"jid":"%s%08x","jobtype":"BatchJob","args":[[1,"string",3]],"queue":"bwork"%s}'
BID = b"@BID@"  # replaced in each batched PUSHB line by its batch's bid
_order = itertools.count()  # alternates which phase runs first


def add_args(p: argparse.ArgumentParser) -> None:
    """Options of the batch scenario."""
    p.add_argument("-j", "--jobs", type=int, default=100_000, help="jobs per phase (default 100000)")
    p.add_argument("-b", "--batch-size", type=int, default=1000,
                   help="jobs per batch and per PUSHB (default 1000)")
    p.add_argument("--pushers", type=int, default=2, help="pushing connections (default 2)")
    p.add_argument("--fetchers", type=int, default=8, help="FETCH+ACK connections (default 8)")
    p.add_argument("--procs", type=int, default=0, help="load processes (default min(cpus, 2))")


def params(args: argparse.Namespace) -> dict[str, Any]:
    """Parameters recorded in the result JSON."""
    return {"jobs": args.jobs, "batch_size": args.batch_size, "pushers": args.pushers,
            "fetchers": args.fetchers, "procs": _procs(args)}


def _procs(args: argparse.Namespace) -> int:
    return max(1, min(args.procs or min(cpu_count(), 2), args.pushers, args.fetchers))


@dataclass
class _Arg:
    ep: Endpoint
    batched: bool
    lines: list[list[bytes]]  # per pushing connection: its PUSHB lines
    fetchers: int
    jobs: int  # jobs of the whole phase
    callbacks: int  # callbacks of the whole phase
    acked: Any  # RawArray: jobs ACKed per process
    cbs: Any  # RawArray: callbacks ACKed per process
    new_line: bytes  # BATCH NEW line


def _lines(prefix: bytes, total: int, size: int, batched: bool) -> list[bytes]:
    extra = b',"custom":{"bid":"' + BID + b'"}' if batched else b""
    out, n = [], 0
    while n < total:
        k = min(size, total - n)
        body = b",".join([JOB_TMPL % (prefix, i, extra) for i in range(n, n + k)])
        out.append(b"PUSHB [" + body + b"]\r\n")
        n += k
    return out


def _worker(ctx: WorkerCtx, a: _Arg) -> dict:
    push_socks = [Conn(a.ep).detach() for _ in a.lines]
    fetch_socks = [Conn(a.ep).detach() for _ in range(a.fetchers)]
    st = {"acked": 0, "cbs": 0, "t_last": 0.0}
    acked, cbs, idx, loads = a.acked, a.cbs, ctx.index, orjson.loads

    def pusher(lines: list[bytes]) -> Script:
        for line in lines:
            if a.batched:
                bid = yield a.new_line
                if type(bid) is ErrorReply or not bid:
                    raise BenchError(f"BATCH NEW: {bid!r}")
                line = line.replace(BID, bid)
            reply = yield line
            if type(reply) is ErrorReply or reply != b"{}":
                raise BenchError(f"PUSHB: {reply!r}")
            if a.batched:
                check_ok((yield b"BATCH COMMIT " + bid + b"\r\n"), "BATCH COMMIT")

    def finished() -> bool:
        return sum(acked) >= a.jobs and sum(cbs) >= a.callbacks

    def fetcher() -> Script:
        while not finished():
            job = yield b"FETCH bwork " + CALLBACK_QUEUE.encode() + b"\r\n"
            if job is None:
                continue
            if type(job) is ErrorReply:
                raise BenchError(f"FETCH: -{job}")
            check_ok((yield b'ACK {"jid":"%s"}\r\n' % loads(job)["jid"].encode()), "ACK")
            if b'"_bid":' in job:
                st["cbs"] += 1
                cbs[idx] = st["cbs"]
            else:
                st["acked"] += 1
                acked[idx] = st["acked"]
            st["t_last"] = time.monotonic()

    reactor = Reactor()
    ctx.ready()
    for s, lines in zip(push_socks, a.lines):
        reactor.add(s, pusher(lines))
    for s in fetch_socks:
        reactor.add(s, fetcher())
    reactor.run_to_end(finished)
    return st


def _phase(args: argparse.Namespace, target: Target, batched: bool) -> tuple[float, int, float | None,
                                                                            float]:
    """One phase: (jobs/s, callbacks run, server CPU s, client CPU s)."""
    flush(target.endpoint)
    nproc = _procs(args)
    nbatches = -(-args.jobs // args.batch_size)
    callbacks = 2 * nbatches if batched else 0
    new_line = b"BATCH NEW " + orjson.dumps({
        "bid": "", "description": "bench",
        "complete": {"jobtype": "BatchComplete", "args": [], "queue": CALLBACK_QUEUE},
        "success": {"jobtype": "BatchSuccess", "args": [], "queue": CALLBACK_QUEUE}}) + b"\r\n"
    acked, cbs = MP.RawArray("q", nproc), MP.RawArray("q", nproc)
    # Payloads are built before the start signal: the server is timed, not bytes formatting.
    lines = _lines(os.urandom(4).hex().encode(), args.jobs, args.batch_size, batched)
    pushers = split_evenly(args.pushers, nproc)
    per_conn = [lines[i::args.pushers] for i in range(args.pushers)]
    wargs, k = [], 0
    for n, fetchers in zip(pushers, split_evenly(args.fetchers, nproc)):
        wargs.append(_Arg(target.endpoint, batched, per_conn[k:k + n], fetchers, args.jobs,
                          callbacks, acked, cbs, new_line))
        k += n
    meter = ServerMeter(target.pids)
    what = "in batches" if batched else "without batches"
    stall = StallGuard(args.stall, what)

    def progress(elapsed: float) -> str | None:
        stall.check(sum(acked) + sum(cbs), args.jobs + callbacks)
        if elapsed < 2:
            return None
        return f"  {what} {elapsed:5.1f}s acked {sum(acked):,}/{args.jobs:,} callbacks {sum(cbs):,}"

    t0, results = run_workers(_worker, wargs, on_go=meter.start, progress=progress,
                              timeout=args.timeout,
                              done=lambda: sum(acked) >= args.jobs and sum(cbs) >= callbacks,
                              on_done=meter.stop)
    elapsed = max(r["t_last"] for r in results) - t0
    return args.jobs / elapsed, sum(cbs), meter.cpu_s(), sum(r["cpu_s"] for r in results)


def run_once(args: argparse.Namespace, target: Target) -> dict[str, Any]:
    """Both phases against ``target`` (in alternating order from one call to the next)."""
    order = (False, True) if next(_order) % 2 == 0 else (True, False)
    got = {batched: _phase(args, target, batched) for batched in order}
    flush(target.endpoint)
    (plain, _, plain_cpu, c1), (batch, callbacks, batch_cpu, c2) = got[False], got[True]
    return {
        "plain_jobs_per_s": plain,
        "batch_jobs_per_s": batch,
        "ratio": batch / plain,
        "batches": -(-args.jobs // args.batch_size),
        "callbacks": callbacks,
        "plain_server_cpu_us_per_job": None if plain_cpu is None else plain_cpu / args.jobs * 1e6,
        "batch_server_cpu_us_per_job": None if batch_cpu is None else batch_cpu / args.jobs * 1e6,
        "client_cpu_us_per_job": (c1 + c2) / (2 * args.jobs) * 1e6,
    }
