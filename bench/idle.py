"""``idle``: N connections parked in a FETCH loop on an empty queue; server CPU % and RSS per connection.

asyncio (uvloop) here rather than the epoll Reactor: thousands of sockets per process, almost no traffic.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass
from typing import Any

import uvloop

from .client import Endpoint, hello_line
from .common import Target, cpu_count, flush, raise_nofile, split_evenly
from .procs import MP, WorkerCtx, run_workers
from .procstat import ServerMeter, rss_kb

NAME = "idle"
HELP = "N idle connections in a FETCH loop on an empty queue: server CPU %% and RSS per connection"
METRICS = [
    ("connected", "connections"),
    ("failed", "failed connections"),
    ("server_cpu_pct", "server CPU % (1 core=100)"),
    ("server_rss_kb_per_conn", "server RSS kB/conn"),
    ("server_rss_mb_before", "server RSS MB before"),
    ("server_rss_mb_connected", "server RSS MB connected"),
    ("fetch_replies_per_s", "FETCH replies/s"),
    ("connect_s", "connect time s"),
]

FETCH = b"FETCH bench-idle-empty\r\n"
HANDSHAKE_CONCURRENCY = 50  # per process; keeps every handshake inside the server's 2 s deadline


def add_args(p: argparse.ArgumentParser) -> None:
    """Options of the idle scenario."""
    p.add_argument("-n", "--conns", type=int, default=5000, help="idle connections (default 5000)")
    p.add_argument("-d", "--duration", type=float, default=20.0, help="measured seconds (default 20)")
    p.add_argument("--procs", type=int, default=0, help="client processes (default cpu count)")


def params(args: argparse.Namespace) -> dict[str, Any]:
    """Parameters recorded in the result JSON."""
    return {"conns": args.conns, "duration": args.duration,
            "procs": max(1, min(args.procs or cpu_count(), args.conns))}


@dataclass
class _Arg:
    ep: Endpoint
    conns: int
    connected: Any  # RawArray: per-process connected counts (progress)


async def _park(ctx: WorkerCtx, a: _Arg) -> dict:
    loop = asyncio.get_running_loop()
    sem = asyncio.Semaphore(HANDSHAKE_CONCURRENCY)
    writers: list[asyncio.StreamWriter] = []
    stats = {"connected": 0, "failed": 0, "replies": 0}

    async def fetch_loop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                writer.write(FETCH)
                line = await reader.readline()
                if not line:
                    return
                if line.startswith(b"$") and line != b"$-1\r\n":
                    await reader.readexactly(int(line[1:]) + 2)  # someone pushed to our queue
                stats["replies"] += 1
        except (ConnectionError, asyncio.IncompleteReadError):
            return

    async def connect() -> asyncio.Task[None] | None:
        async with sem:
            try:
                reader, writer = await asyncio.open_connection(a.ep.host, a.ep.port, limit=1 << 16)
            except OSError:
                stats["failed"] += 1
                return None
            try:
                greeting = await reader.readline()
                writer.write(hello_line(greeting[1:].rstrip(), a.ep.password))
                ok = await reader.readline()
            except (ConnectionError, asyncio.IncompleteReadError):
                ok = b""
            if ok != b"+OK\r\n":  # e.g. -ERR too many connections
                stats["failed"] += 1
                writer.close()
                return None
            writers.append(writer)
            stats["connected"] += 1
            a.connected[ctx.index] = stats["connected"]
            return loop.create_task(fetch_loop(reader, writer))

    t_conn = time.monotonic()
    tasks = [t for t in await asyncio.gather(*(connect() for _ in range(a.conns))) if t is not None]
    connect_s = time.monotonic() - t_conn
    await loop.run_in_executor(None, ctx.ready)  # the FETCH loops keep running meanwhile
    replies0 = stats["replies"]
    t0 = time.monotonic()
    await loop.run_in_executor(None, ctx.stop.wait)
    window = time.monotonic() - t0
    replies = stats["replies"] - replies0
    for t in tasks:
        t.cancel()
    for w in writers:
        w.close()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"connected": stats["connected"], "failed": stats["failed"], "connect_s": connect_s,
            "replies": replies, "window_s": window}


def _worker(ctx: WorkerCtx, a: _Arg) -> dict:
    raise_nofile()
    return uvloop.run(_park(ctx, a))


def run_once(args: argparse.Namespace, target: Target) -> dict[str, Any]:
    """One idle run against ``target``."""
    raise_nofile()
    flush(target.endpoint)
    nproc = max(1, min(args.procs or cpu_count(), args.conns))
    connected = MP.RawArray("q", nproc)
    wargs = [_Arg(target.endpoint, n, connected) for n in split_evenly(args.conns, nproc)]
    meter = ServerMeter(target.pids)
    rss: dict[str, int] = {"before": rss_kb(target.pids) if target.pids else 0}

    def on_go() -> None:
        rss["connected"] = rss_kb(target.pids) if target.pids else 0
        meter.start()

    def during(t0: float, stop: Any) -> None:
        print(f"  idle: {sum(connected):,} connected, measuring {args.duration:g}s", file=sys.stderr, flush=True)
        stop.wait(args.duration)  # nobody else sets it: this is the fixed measurement window
        meter.stop()
        rss["after"] = rss_kb(target.pids) if target.pids else 0
        stop.set()

    _, results = run_workers(_worker, wargs, on_go=on_go, during=during, timeout=args.timeout + args.duration)
    n = sum(r["connected"] for r in results)
    cpu = meter.cpu_s()
    window = max(r["window_s"] for r in results)
    have_pids = bool(target.pids)
    return {
        "connected": n,
        "failed": sum(r["failed"] for r in results),
        "server_cpu_pct": None if cpu is None else cpu / args.duration * 100,
        "server_rss_kb_per_conn": (rss["connected"] - rss["before"]) / n if have_pids and n else None,
        "server_rss_mb_before": rss["before"] / 1024 if have_pids else None,
        "server_rss_mb_connected": rss["connected"] / 1024 if have_pids else None,
        "server_rss_mb_after": rss["after"] / 1024 if have_pids else None,
        "fetch_replies_per_s": sum(r["replies"] for r in results) / window if window > 0 else None,
        "connect_s": max(r["connect_s"] for r in results),
        "client_cpu_pct": sum(r["cpu_s"] for r in results) / window * 100 if window > 0 else None,
    }
