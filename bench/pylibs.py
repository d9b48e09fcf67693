"""``bench pylibs``: Python client libraries against each other on one server: PyPI ``faktory``
1.0, ``pyfaktory`` 0.2 and this repository's ``faktory_fast_client`` (sync and asyncio).

For each library, alternating the libraries' order every round:

* **push 1**: one connection pushing ``--jobs`` jobs, one PUSH at a time (jobs/s);
* **push 10**: ten producers at once, each its own connection: threads for the blocking
  libraries, asyncio tasks (an ``AsyncPool`` of 10) for ``faktory_fast_client``'s asyncio client;
* **work C** for each ``--concurrency`` C: ``--jobs`` no-op jobs preloaded (PUSHB), then the
  library's worker at concurrency C; jobs/s from the first ACK to the last, read from the
  server's ``processed`` counter.

Each measurement runs in a child process of its own (``python -m bench.pylibs _child ...``),
killed with its process group once done, so a library's worker threads and processes cannot
outlive it. The server is FLUSHed before each. By default bench starts this checkout's
faktory_fast (``-w :0``, default options) and stops it at the end; ``--url`` uses a running
one. Libraries that are not installed are skipped, saying so. Ratios: each library's figure
over the better of the two PyPI libraries'.
"""
from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from .client import Conn, parse_faktory_url
from .procstat import ServerMeter, parse_pids
from .report import write_json
from .servers import FaktoryFast, default_fast_python

NAME = "pylibs"
HELP = "PyPI faktory, pyfaktory and faktory_fast_client pushing and working on one server"
LIBS = ("faktory", "pyfaktory", "ffc", "ffc-async")
PYPI = ("faktory", "pyfaktory")
MODULES = {"faktory": "faktory", "pyfaktory": "pyfaktory", "ffc": "faktory_fast_client",
           "ffc-async": "faktory_fast_client"}
QUEUE = "pylibs"
JOBTYPE = "Noop"
POLL = 0.01  # seconds between reads of the processed counter while a worker drains


@dataclass
class Figures:
    """One measurement: jobs/s, and CPU µs per job of the library's process (tree) and of the
    server's (None when bench does not know the server's pids)."""

    rate: float
    client_us: float
    server_us: float | None


# -- the child: one measurement of one library --------------------------------------------------

def _job_dict() -> dict[str, Any]:
    return {"jid": uuid.uuid4().hex, "jobtype": JOBTYPE, "args": [1, "x"], "queue": QUEUE}


def _push_faktory(url: str, n: int) -> None:
    import faktory
    with faktory.connection(url) as client:
        for _ in range(n):
            client.queue(JOBTYPE, args=(1, "x"), queue=QUEUE)


def _push_pyfaktory(url: str, n: int) -> None:
    import pyfaktory
    client = pyfaktory.Client(faktory_url=url, role="producer", timeout=10)
    client.connect()
    try:
        producer = pyfaktory.Producer(client=client)
        for _ in range(n):
            producer.push(pyfaktory.Job(jobtype=JOBTYPE, args=[1, "x"], queue=QUEUE))
    finally:
        client.disconnect()


def _push_ffc(url: str, n: int) -> None:
    from faktory_fast_client import Client, Job
    with Client(url) as client:
        for _ in range(n):
            client.push(Job(JOBTYPE, [1, "x"], queue=QUEUE))


async def _push_ffc_async(url: str, n: int, tasks: int) -> None:
    from faktory_fast_client import AsyncClient, AsyncPool, Job
    if tasks == 1:
        async with AsyncClient(url) as client:
            for _ in range(n):
                await client.push(Job(JOBTYPE, [1, "x"], queue=QUEUE))
        return
    pool = AsyncPool(url, size=tasks)

    async def producer(count: int) -> None:
        async with pool.connection() as client:
            for _ in range(count):
                await client.push(Job(JOBTYPE, [1, "x"], queue=QUEUE))
    try:
        await asyncio.gather(*(producer(n // tasks) for _ in range(tasks)))
    finally:
        await pool.close()


SYNC_PUSH = {"faktory": _push_faktory, "pyfaktory": _push_pyfaktory, "ffc": _push_ffc}


def child_push(lib: str, url: str, n: int, producers: int) -> float:
    """Seconds to push ``n`` jobs with ``producers`` at once."""
    errors: list[BaseException] = []

    def producer() -> None:
        try:
            SYNC_PUSH[lib](url, n // producers)
        except BaseException as e:  # a failed producer must fail the measurement
            errors.append(e)
    started = time.perf_counter()
    if lib == "ffc-async":
        asyncio.run(_push_ffc_async(url, n, producers))
    else:
        threads = [threading.Thread(target=producer) for _ in range(producers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - started


def _noop(*args: Any) -> None:
    return None


async def _anoop(*args: Any) -> None:
    return None


def child_work(lib: str, url: str, concurrency: int) -> None:
    """Run ``lib``'s worker on QUEUE at ``concurrency`` until killed."""
    if lib == "faktory":
        import faktory
        w = faktory.Worker(faktory=url, queues=[QUEUE], concurrency=concurrency, use_threads=True)
        w.register(JOBTYPE, _noop)
        w.run()
    elif lib == "pyfaktory":
        import multiprocessing

        import pyfaktory
        client = pyfaktory.Client(faktory_url=url, role="consumer", timeout=10)
        client.connect()
        consumer = pyfaktory.Consumer(client=client, queues=[QUEUE], concurrency=concurrency,
                                      context=multiprocessing.get_context("fork"))
        consumer.register(JOBTYPE, _noop)
        consumer.run()
    else:
        from faktory_fast_client import Worker
        worker = Worker(url, queues=[QUEUE], concurrency=concurrency)
        worker.register(JOBTYPE, _anoop if lib == "ffc-async" else _noop)
        worker.run()


def child_main(argv: list[str]) -> None:
    kind, lib, url, n, c = argv[0], argv[1], argv[2], int(argv[3]), int(argv[4])
    if kind == "push":
        # Imported first, in the main thread (pyfaktory's import sets signal handlers), and
        # outside the CPU measured.
        importlib.import_module(MODULES[lib])
        cpu = time.process_time()
        seconds = child_push(lib, url, n, c)
        print(json.dumps({"seconds": seconds, "cpu": time.process_time() - cpu}), flush=True)
    else:
        child_work(lib, url, c)


# -- the parent --------------------------------------------------------------------------------

def _spawn(kind: str, lib: str, url: str, n: int, c: int) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "bench.pylibs", "_child", kind, lib, url,
                             str(n), str(c)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, cwd=_root())


def _root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _kill(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.communicate(timeout=30)


def _processed(admin: Conn) -> int:
    return int(json.loads(admin.call("INFO"))["faktory"]["total_processed"])


def measure_push(lib: str, url: str, admin: Conn, server: list[int], n: int, producers: int,
                 timeout: float) -> Figures:
    """``lib`` pushing ``n`` jobs with ``producers`` at once."""
    proc = _spawn("push", lib, url, n, producers)
    meter = ServerMeter(server)
    meter.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        raise RuntimeError(f"{lib}: push did not finish within {timeout} s") from None
    meter.stop()
    if proc.returncode:
        raise RuntimeError(f"{lib}: push failed:\n{err[-2000:]}")
    pushed = (n // producers) * producers
    queued = json.loads(admin.call("INFO"))["faktory"]["queues"].get(QUEUE, 0)
    if queued != pushed:
        raise RuntimeError(f"{lib}: {queued} jobs in the queue after pushing {pushed}")
    child = json.loads(out.splitlines()[-1])
    # the server's CPU over the child's whole life (its start-up is idle time for the server)
    return Figures(pushed / child["seconds"], child["cpu"] / pushed * 1e6,
                   _per_job(meter, pushed))


def _per_job(meter: ServerMeter, jobs: int) -> float | None:
    cpu = meter.cpu_s()
    return None if cpu is None else cpu / jobs * 1e6


def measure_work(lib: str, url: str, admin: Conn, server: list[int], n: int, concurrency: int,
                 timeout: float) -> Figures:
    """``lib``'s worker at ``concurrency`` over ``n`` preloaded jobs, from the first ACK to the
    last (its CPU: the worker's whole process tree over the same window); from the worker's
    start when the first look already finds every job done."""
    for start in range(0, n, 1000):
        admin.call("PUSHB", json.dumps([_job_dict() for _ in range(min(1000, n - start))]))
    base = _processed(admin)
    proc = _spawn("work", lib, url, n, concurrency)
    spawned = time.perf_counter()
    client, meter = ServerMeter([proc.pid]), ServerMeter(server)
    # from the start, for a run too short to see its first ACK apart from its last
    whole_client, whole_meter = ServerMeter([proc.pid]), ServerMeter(server)
    whole_client.start()
    whole_meter.start()
    deadline = time.monotonic() + timeout
    first = last = None
    try:
        while True:
            done = _processed(admin) - base
            now = time.perf_counter()
            if done and first is None:
                first = (now, done)
                client.start()
                meter.start()
            if done >= n:
                last = now
                for m in (client, meter, whole_client, whole_meter):
                    m.stop()
                break
            if proc.poll() is not None:
                _, err = proc.communicate()
                raise RuntimeError(f"{lib}: worker exited:\n{err[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{lib}: {done} of {n} jobs within {timeout} s")
            time.sleep(POLL)
    finally:
        _kill(proc)
    assert first is not None and last is not None
    jobs = n - first[1]
    if jobs == 0:  # all done at the first look: timed from the worker's start (its start-up in)
        return Figures(n / max(last - spawned, 1e-9), _per_job(whole_client, n) or 0.0,
                       _per_job(whole_meter, n))
    return Figures(jobs / max(last - first[0], 1e-9), _per_job(client, jobs) or 0.0,
                   _per_job(meter, jobs))


def available(libs: list[str]) -> list[str]:
    """The libraries importable here; prints why the others are skipped."""
    found = []
    for lib in libs:
        res = subprocess.run([sys.executable, "-c", f"import {MODULES[lib]}"], cwd=_root(),
                             capture_output=True, text=True)
        if res.returncode:
            print(f"skipped {lib}: {MODULES[lib]} is not installed here", file=sys.stderr)
        else:
            found.append(lib)
    return found


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", help="a running server (default: start this checkout's faktory_fast)")
    p.add_argument("--server-pid", action="append", metavar="PID[,PID...]",
                   help="with --url: the server's pids, to meter its CPU with their descendants")
    p.add_argument("--fast-python", default=default_fast_python(), metavar="PYTHON",
                   help="python that runs the started faktory_fast (default .venv/bin/python)")
    p.add_argument("-j", "--jobs", type=int, default=5000,
                   help="jobs per worker measurement (default 5000)")
    p.add_argument("--push-jobs", type=int, default=20000,
                   help="jobs per push measurement (default 20000)")
    p.add_argument("-c", "--concurrency", type=int, action="append",
                   help="worker concurrency (repeatable; default 10 and 100)")
    p.add_argument("--libs", nargs="+", choices=LIBS, default=list(LIBS),
                   help="libraries to measure (default all)")
    p.add_argument("--rounds", type=int, default=1, help="rounds, the libraries' order swapped each")
    p.add_argument("--timeout", type=float, default=300.0, help="abort a measurement after this")
    p.add_argument("--out", help="result JSON (default bench/results/pylibs-<timestamp>.json)")


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _print_table(title: str, rows: list[list[str]]) -> None:
    print(f"\n{title}")
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.rjust(w) for cell, w in zip(r, widths)))


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run every measurement for every library; print the tables and write the JSON."""
    libs = available(args.libs)
    concurrencies = args.concurrency or [10, 100]
    started = None
    url, pids = args.url, parse_pids(args.server_pid)
    if not url:
        started = FaktoryFast(args.fast_python, []).start()
        url, pids = started.url, started.pids()
    metrics = [("push 1", 1), ("push 10", 10)] + [(f"work {c}", c) for c in concurrencies]
    runs: dict[str, dict[str, list[Figures]]] = {lib: {m: [] for m, _ in metrics} for lib in libs}
    try:
        admin = Conn(parse_faktory_url(url))
        for rnd in range(args.rounds):
            order = libs if rnd % 2 == 0 else libs[::-1]
            for metric, c in metrics:
                for lib in order:
                    admin.call("FLUSH")
                    if metric.startswith("push"):
                        got = measure_push(lib, url, admin, pids, args.push_jobs, c, args.timeout)
                    else:
                        got = measure_work(lib, url, admin, pids, args.jobs, c, args.timeout)
                    runs[lib][metric].append(got)
                    print(f"round {rnd + 1}, {metric}, {lib}: {got.rate:,.0f} jobs/s, "
                          f"{got.client_us:,.1f} µs of its CPU a job", flush=True)
        admin.close()
    finally:
        if started is not None:
            started.stop()
    summary = {lib: {m: {"jobs_per_s": _median([f.rate for f in v]),
                         "client_cpu_us": _median([f.client_us for f in v]),
                         "server_cpu_us": _median([f.server_us for f in v])}
                     for m, v in per.items()} for lib, per in runs.items()}
    pypi = [lib for lib in PYPI if lib in summary]
    ours = [lib for lib in libs if lib not in PYPI]
    ratios: dict[str, dict[str, dict[str, float]]] = {}
    for key, title, better in (("jobs_per_s", "jobs/s", max), ("client_cpu_us",
                               "the library's CPU µs per job (its process tree)", min),
                               ("server_cpu_us", "the server's CPU µs per job (its tree, "
                               "Redis included)", min)):
        rows = [["metric", *libs] + ([f"{lib} ratio" for lib in ours] if pypi else [])]
        for metric, _ in metrics:
            values = {lib: summary[lib][metric][key] for lib in libs}
            row = [metric] + [f"{v:,.{0 if key == 'jobs_per_s' else 1}f}" if v is not None
                              else "-" for v in values.values()]
            known = [v for v in (values[lib] for lib in pypi) if v is not None]
            if known and pypi:
                best = better(known)
                for lib in ours:
                    v = values[lib]
                    if v is not None and best:
                        ratios.setdefault(lib, {}).setdefault(key, {})[metric] = v / best
                    row.append(f"{v / best:.2f}×" if v is not None and best else "-")
            rows.append(row)
        _print_table(f"{title}, median of {args.rounds} round(s)"
                     + ("; ratio: over the better PyPI library" if pypi else ""), rows)
    doc = {"scenario": NAME, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
           "params": {"jobs": args.jobs, "push_jobs": args.push_jobs,
                      "concurrency": concurrencies, "rounds": args.rounds,
                      "server": "started" if started else "given"},
           "runs": {lib: {m: [asdict(f) for f in v] for m, v in per.items()}
                    for lib, per in runs.items()},
           "summary": summary, "ratio": ratios}
    print(f"\nresults: {write_json(doc, args.out)}")
    return doc


if __name__ == "__main__":
    if sys.argv[1:2] == ["_child"]:
        child_main(sys.argv[2:])
    else:
        parser = argparse.ArgumentParser(prog="bench pylibs", description=__doc__)
        add_args(parser)
        run(parser.parse_args())
