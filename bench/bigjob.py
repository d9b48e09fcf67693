"""``bigjob``: one big job (deeply nested args, unique by default) pushed, fetched and ACKed while
another client pushes, fetches and ACKs small jobs: the big job's round trips, the Redis time they
cost (with ``--redis``), and what the other client waited meanwhile. Redis is shared by every
client of a server: no one job may hold it for long."""
from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from typing import Any

import orjson

from .client import BenchError, Conn, parse_redis_url
from .common import Target, flush
from .latency import percentile
from .resp import encode_command

NAME = "bigjob"
HELP = ("a big nested (unique) job's PUSH/FETCH/ACK at 100 KB and 1 MB: round trips, Redis time "
        "(--redis) and another client's round trips meanwhile")
SIZES = {"100k": 100_000, "1m": 1_000_000}
METRICS = [
    *((f"{step}_ms_{size}", f"{size} {step.upper()} ms") for size in SIZES
      for step in ("push", "fetch", "ack")),
    *((f"redis_{step}_ms_{size}", f"{size} {step.upper()} Redis CPU ms") for size in SIZES
      for step in ("push", "fetch", "ack")),
    ("other_base_p99_ms", "other client p99 ms, before"),
    ("other_p99_ms", "other client p99 ms, meanwhile"),
    ("other_max_ms", "other client max ms, meanwhile"),
]
BIG_QUEUE = "bigjob"
OTHER_QUEUE = "bigjob-other"


def add_args(p: argparse.ArgumentParser) -> None:
    """Options of the scenario."""
    p.add_argument("--redis", metavar="URL",
                   help="the first server's Redis (unix:///path or redis://): measure its CPU time "
                        "per big call (INFO cpu, with the other client paused; its AOF writes "
                        "included)")
    p.add_argument("--redis2", metavar="URL", help="the same for the --compare server")
    p.add_argument("--plain", action="store_true", help="the big job is not unique")
    p.add_argument("--depth", type=int, default=250, help="levels of nesting (default 250)")


def params(args: argparse.Namespace) -> dict[str, Any]:
    """Parameters recorded in the result JSON."""
    return {"sizes": SIZES, "unique": not args.plain, "depth": args.depth,
            "shape": "args nest `depth` levels around [[i % 10], ...] and a 17-digit number"}


def big_args(size: int, depth: int) -> list[Any]:
    """Args of about ``size`` bytes of JSON: ``depth`` levels around many small items and a
    number past 64-bit doubles' precision (the shape that once held Redis for seconds)."""
    items = [[i % 10] for i in range(max(1, (size - 2 * depth) // 6))]
    inner: list[Any] = [items, 12345678901234567]
    for _ in range(depth - 2):
        inner = [inner]
    return inner


def big_job(args: list[Any], unique: bool) -> dict[str, Any]:
    """A job with these args and a new jid, unique for 10 minutes if ``unique``."""
    job: dict[str, Any] = {"jid": os.urandom(12).hex(), "jobtype": "Big", "queue": BIG_QUEUE,
                           "args": args}
    if unique:
        job["custom"] = {"unique_for": 600}
    return job


def _other(ep: Any, go: Event, paused: Event, stop: Event, out: Connection) -> None:
    """The other client: PUSH, FETCH, ACK of small jobs, one after another, each round trip
    timed (ns, with its start) until ``stop``; waits while ``paused``."""
    conn = Conn(ep)
    prefix = os.urandom(4).hex()
    samples: list[tuple[int, int]] = []
    clock = time.perf_counter_ns
    go.set()
    i = 0
    while not stop.is_set():
        if paused.is_set():
            time.sleep(0.005)
            continue
        i += 1
        jid = f"{prefix}{i:08x}"
        for line in (b'PUSH {"jid":"%s","jobtype":"Small","args":[1],"queue":"%s"}\r\n'
                     % (jid.encode(), OTHER_QUEUE.encode()),
                     b"FETCH " + OTHER_QUEUE.encode() + b"\r\n",
                     b'ACK {"jid":"%s"}\r\n' % jid.encode()):
            t0 = clock()
            conn.call_raw(line)
            samples.append((t0, clock() - t0))
    conn.close()
    out.send(samples)


def _redis_cpu(conn: Conn | None) -> float:
    """Seconds of CPU the Redis process has used (INFO cpu), or 0 without one."""
    if conn is None:
        return 0.0
    info = conn.call_raw(encode_command("INFO", "cpu")).decode()
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    return float(fields["used_cpu_user"]) + float(fields["used_cpu_sys"])


def _big_calls(conn: Conn, job: dict[str, Any], rconn: Conn | None = None
               ) -> tuple[dict[str, float], dict[str, float]]:
    """PUSH, FETCH and ACK of ``job``: each round trip in ms, and (with ``rconn``, the
    server's Redis) the Redis CPU ms each took."""
    trips, cpu = {}, {}
    got = None
    for step in ("push", "fetch", "ack"):
        cpu0 = _redis_cpu(rconn)
        t0 = time.perf_counter()
        if step == "push":
            conn.call("PUSH", orjson.dumps(job))
        elif step == "fetch":
            got = conn.call("FETCH", BIG_QUEUE)
        else:
            conn.call("ACK", orjson.dumps({"jid": job["jid"]}))
        trips[step] = (time.perf_counter() - t0) * 1000
        cpu[step] = (_redis_cpu(rconn) - cpu0) * 1000
        if step == "fetch" and (not got or orjson.loads(got)["jid"] != job["jid"]):
            raise BenchError("FETCH did not return the big job")
    return trips, cpu


def run_once(args: argparse.Namespace, target: Target) -> dict[str, Any]:
    """Big jobs of each size: first alone (their Redis time), then beside the other client."""
    flush(target.endpoint)
    redis_url = args.redis if target.name == "first" else args.redis2
    rconn = Conn(parse_redis_url(redis_url)) if redis_url else None
    conn = Conn(target.endpoint)
    ctx = multiprocessing.get_context("spawn")
    go, paused, stop = ctx.Event(), ctx.Event(), ctx.Event()
    recv, send = ctx.Pipe(duplex=False)
    other = ctx.Process(target=_other, args=(target.endpoint, go, paused, stop, send))
    other.start()
    out: dict[str, Any] = {}
    windows: list[tuple[int, int]] = []
    try:
        if not go.wait(30):
            raise BenchError("the other client did not start")
        time.sleep(1.0)  # its round trips before any big job: the baseline
        base_end = time.perf_counter_ns()
        for size, nbytes in SIZES.items():
            big = big_args(nbytes, args.depth)
            paused.set()
            time.sleep(0.05)  # its last call is answered
            _, cpu = _big_calls(conn, big_job(big, not args.plain), rconn)
            for step, ms in cpu.items():
                out[f"redis_{step}_ms_{size}"] = ms if rconn else None
            paused.clear()
            time.sleep(0.2)
            start = time.perf_counter_ns()
            trips, _ = _big_calls(conn, big_job(big, not args.plain))
            for step, ms in trips.items():
                out[f"{step}_ms_{size}"] = ms
            windows.append((start, time.perf_counter_ns()))
            time.sleep(0.2)
        stop.set()
        samples = recv.recv()
        other.join(30)
    finally:
        stop.set()
        if other.is_alive():
            other.kill()
        conn.close()
        if rconn is not None:
            rconn.sock.close()
    base = sorted(d for t, d in samples if t < base_end)
    during = sorted(d for t, d in samples if any(a <= t + d and t <= b for a, b in windows))
    out["other_base_p99_ms"] = percentile(base, 99) / 1e6 if base else None
    out["other_p99_ms"] = percentile(during, 99) / 1e6 if during else None
    out["other_max_ms"] = during[-1] / 1e6 if during else None
    flush(target.endpoint)
    return out
