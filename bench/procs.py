"""Run load processes with a start barrier, collect their results and client CPU.

Each worker function ``fn(ctx, arg) -> dict`` connects, calls ``ctx.ready()`` (which blocks until
every process is ready and the parent says go), does its work and returns a dict. Client CPU is the
worker's own user+system CPU (getrusage) from go to return, so connection setup (including password
hashing) is not counted.
"""
from __future__ import annotations

import multiprocessing as mp
import queue
import resource
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .client import BenchError

MP = mp.get_context("fork")  # fork: cheap start, shared RawArrays are inherited


@dataclass
class WorkerCtx:
    """What a worker process gets besides its own argument."""

    index: int
    ready: Callable[[], None]
    stop: Any  # multiprocessing Event: set by the parent to end open-ended workers (idle)


def _child(fn: Callable[[WorkerCtx, Any], dict], index: int, arg: Any, q: Any, go: Any, stop: Any) -> None:
    # getrusage, not os.times(): the latter counts in clock ticks (10 ms), which a small run
    # (a smoke test's 50 jobs a process) spends less than.
    cpu0: list[resource.struct_rusage] = []

    def ready() -> None:
        q.put(("ready", index, None))
        go.wait()
        cpu0.append(resource.getrusage(resource.RUSAGE_SELF))

    try:
        data = fn(WorkerCtx(index, ready, stop), arg)
        t1 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = cpu0[0] if cpu0 else t1
        data["cpu_user_s"] = t1.ru_utime - t0.ru_utime
        data["cpu_s"] = data["cpu_user_s"] + (t1.ru_stime - t0.ru_stime)
        q.put(("result", index, data))
    except BaseException:  # report everything, including KeyboardInterrupt, to the parent
        q.put(("error", index, traceback.format_exc()))


def run_workers(fn: Callable[[WorkerCtx, Any], dict], args: list[Any], *,
                on_go: Callable[[], None] | None = None,
                during: Callable[[float, Any], None] | None = None,
                progress: Callable[[float], str | None] | None = None,
                done: Callable[[], bool] | None = None,
                on_done: Callable[[], None] | None = None,
                timeout: float = 600.0) -> tuple[float, list[dict]]:
    """Start one process per element of ``args``; return (go time, per-process results).

    ``on_go`` runs just before the start signal (take 'before' snapshots there); ``during(t0, stop)``
    runs in the parent after the start signal (e.g. a fixed measurement window that ends by setting
    ``stop``); ``progress(elapsed)`` is polled about once a second and printed to stderr (it may raise
    BenchError to abort, e.g. on a stall); ``on_done`` runs as soon as ``done()`` (polled every 20 ms)
    turns true, or when the results are in — take 'after' snapshots there, before the workers drain
    their pending FETCHes and disconnect.
    """
    q = MP.Queue()
    go = MP.Event()
    stop = MP.Event()
    procs = [MP.Process(target=_child, args=(fn, i, a, q, go, stop), daemon=True)
             for i, a in enumerate(args)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + timeout
    results: list[dict | None] = [None] * len(procs)
    try:
        _collect(q, procs, "ready", None, deadline)
        if on_go:
            on_go()
        t0 = time.monotonic()
        go.set()
        if during:
            during(t0, stop)
        _collect(q, procs, "result", results, deadline, t0, progress, done, on_done)
    except BaseException:
        for p in procs:
            if p.is_alive():
                p.terminate()
        raise
    finally:
        for p in procs:
            p.join(5)
        q.close()
        q.join_thread()
    return t0, [r for r in results if r is not None]


def _collect(q: Any, procs: list[Any], kind: str, results: list[dict | None] | None, deadline: float,
             t0: float = 0.0, progress: Callable[[float], str | None] | None = None,
             done: Callable[[], bool] | None = None, on_done: Callable[[], None] | None = None) -> None:
    """Wait for one ``kind`` message per process, relaying worker errors, progress and completion."""
    pending = len(procs)
    next_progress = time.monotonic() + 1.0
    while pending:
        try:
            msg, index, data = q.get(timeout=0.02 if done else 0.5)
        except queue.Empty:
            now = time.monotonic()
            if done is not None and done():
                progress = None  # finished; workers are only draining pending FETCHes now
                if on_done:
                    on_done()
                    on_done = None
            if progress and now >= next_progress:
                next_progress = now + 1.0
                line = progress(now - t0)
                if line:
                    print(line, file=sys.stderr, flush=True)
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead:
                raise BenchError(f"load process {dead[0].pid} died with exit code "
                                 f"{dead[0].exitcode}") from None
            if now > deadline:
                raise BenchError(f"timed out waiting for load processes ({kind})") from None
            continue
        if msg == "error":
            raise BenchError(f"load process {index} failed:\n{data}")
        if msg == kind:
            pending -= 1
            if results is not None:
                results[index] = data
    if on_done:
        on_done()
