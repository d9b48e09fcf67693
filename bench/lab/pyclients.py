"""Python clients side by side on one faktory_fast server, in one run: this repository's
client package (``client/``, faktory_fast_client) against PyPI's ``faktory`` 1.0 and
``pyfaktory`` 0.2. Producer jobs/s from one thread (PUSH after PUSH) and from 10 asyncio tasks
(the PyPI clients have no asyncio: 10 threads, a connection each); worker jobs/s of no-op jobs
at concurrency 10 and 100 (pyfaktory's worker forks a process per slot: 10 only).

Run from the repository root after ``make build``: ``python -m bench.lab.pyclients [-n 5000]``.
It starts its own server (``bench.servers.FaktoryFast``, 2 processes) and stops it. Figures
on a shared 2-core machine vary by ±20 % from run to run: compare within one run.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import faktory  # type: ignore[import-untyped]
import pyfaktory  # type: ignore[import-untyped]

from faktory_fast_client import AsyncPool, Client, Job, Worker

from ..servers import FaktoryFast, default_fast_python


def flush(url: str) -> None:
    with Client(url) as c:
        c.flush()


def wait_processed(url: str, n: int, limit: float = 120.0) -> float:
    """Seconds until the server counts ``n`` processed jobs (polled every 20 ms)."""
    start = time.perf_counter()
    with Client(url) as c:
        while c.info()["faktory"]["total_processed"] < n:
            if time.perf_counter() - start > limit:
                raise RuntimeError(f"fewer than {n} jobs processed within {limit} s")
            time.sleep(0.02)
    return time.perf_counter() - start


def fill(url: str, n: int, jobtype: str = "Noop") -> None:
    flush(url)
    with Client(url) as c:
        for start in range(0, n, 1000):
            c.push_bulk([Job(jobtype, [i], queue="bench") for i in range(start, min(n, start + 1000))])


# -- producers --------------------------------------------------------------------------------

def push_ours(url: str, n: int) -> None:
    with Client(url) as c:
        for i in range(n):
            c.push(Job("Noop", [i], queue="bench"))


def push_faktory(url: str, n: int) -> None:
    with faktory.connection(url) as c:
        for i in range(n):
            c.queue("Noop", args=[i], queue="bench")


def push_pyfaktory(url: str, n: int) -> None:
    client = pyfaktory.Client(faktory_url=url, role="producer")
    client.connect()
    try:
        producer = pyfaktory.Producer(client=client)
        for i in range(n):
            producer.push(pyfaktory.Job(jobtype="Noop", args=[i], queue="bench"))
    finally:
        client.disconnect()


def push_ours_tasks(url: str, n: int, tasks: int = 10) -> None:
    async def main() -> None:
        async with AsyncPool(url, size=tasks) as pool:
            async def one(share: int) -> None:
                async with pool.connection() as c:
                    for i in range(share):
                        await c.push(Job("Noop", [i], queue="bench"))
            await asyncio.gather(*(one(n // tasks) for _ in range(tasks)))
    asyncio.run(main())


def in_threads(push: Callable[[str, int], None], threads: int = 10) -> Callable[[str, int], None]:
    def run(url: str, n: int) -> None:
        ts = [threading.Thread(target=push, args=(url, n // threads)) for _ in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    return run


def producer_rate(url: str, push: Callable[[str, int], None], n: int) -> float:
    flush(url)
    start = time.perf_counter()
    push(url, n)
    elapsed = time.perf_counter() - start
    with Client(url) as c:
        assert c.info()["faktory"]["queues"]["bench"] == n, "not every push landed"
    return n / elapsed


# -- workers ----------------------------------------------------------------------------------

def work_ours(url: str, n: int, concurrency: int) -> float:
    w = Worker(url, queues=["bench"], concurrency=concurrency)

    async def noop(*args: Any) -> None:
        pass

    w.register("Noop", noop)
    t = threading.Thread(target=w.run)
    t.start()
    try:
        return n / wait_processed(url, n)
    finally:
        w.terminate()
        t.join()


def work_faktory(url: str, n: int, concurrency: int) -> float:
    old = signal.getsignal(signal.SIGTERM)  # faktory.Worker() takes SIGTERM for itself
    w = faktory.Worker(faktory=url, queues=["bench"], concurrency=concurrency, use_threads=True)
    signal.signal(signal.SIGTERM, old)
    w.register("Noop", lambda *args: None)
    t = threading.Thread(target=_no_exit(w.run), daemon=True)
    t.start()
    try:
        return n / wait_processed(url, n)
    finally:
        w.disconnect(wait=5)
        t.join(20)


def work_pyfaktory(url: str, n: int, concurrency: int) -> float:
    wid = uuid.uuid4().hex
    client = pyfaktory.Client(faktory_url=url, role="consumer", worker_id=wid, beat_period=1)
    client.connect()
    consumer = pyfaktory.Consumer(client=client, queues=["bench"], priority="strict",
                                  concurrency=concurrency, grace_period=5)
    consumer.register("Noop", _pyfaktory_noop)
    t = threading.Thread(target=_no_exit(consumer.run), daemon=True)
    t.start()
    try:
        return n / wait_processed(url, n)
    finally:
        # Stopped as Faktory stops it: a terminate its heartbeat reads from a BEAT reply.
        with Client(url, wid=wid) as c:
            c.beat("terminate")
        client.heartbeat_thread.join(20)
        t.join(20)


def _pyfaktory_noop(*args: Any) -> None:
    return None


def _no_exit(target: Callable[[], Any]) -> Callable[[], None]:
    def run() -> None:
        try:
            target()
        except SystemExit:  # both PyPI workers end their loop with sys.exit
            pass
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--jobs", type=int, default=5000, help="jobs per measurement")
    args = parser.parse_args(argv)
    n = args.jobs
    # pyfaktory's Consumer installs a SIGTERM handler at import; keep the default.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    server = FaktoryFast(default_fast_python(), ["--processes", "2"])
    server.start()
    results: dict[str, float] = {}
    try:
        url = server.url
        for name, push in (("ours", push_ours), ("faktory", push_faktory),
                           ("pyfaktory", push_pyfaktory)):
            results[f"push 1 thread: {name}"] = producer_rate(url, push, n)
        results["push 10 asyncio tasks: ours"] = producer_rate(url, push_ours_tasks, n)
        results["push 10 threads: faktory"] = producer_rate(url, in_threads(push_faktory), n)
        results["push 10 threads: pyfaktory"] = producer_rate(url, in_threads(push_pyfaktory), n)
        for concurrency in (10, 100):
            for name, work in (("ours", work_ours), ("faktory", work_faktory),
                               ("pyfaktory", work_pyfaktory)):
                if name == "pyfaktory" and concurrency > 10:
                    continue
                fill(url, n)
                results[f"worker c={concurrency}: {name}"] = work(url, n, concurrency)
    finally:
        server.stop()
    width = max(map(len, results))
    for key, rate in results.items():
        print(f"{key:<{width}}  {rate:>8,.0f} jobs/s")
    json.dump({k: round(v) for k, v in results.items()}, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
