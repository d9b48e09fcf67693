"""Shared pieces of the scenarios: targets, worker layout, process counts."""
from __future__ import annotations

import os
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from .client import BenchError, Conn, Endpoint
from .procs import MP, run_workers
from .procstat import ServerMeter
from .report import parse_labels, summarize, table, write_json

#: The server-CPU rows of the load-like scenarios' tables (ServerMeter's figures and their
#: split into the server processes' and Redis's user and system time).
SERVER_CPU_METRICS = [
    ("server_cpu_us_per_job", "server CPU µs/job"),
    ("server_cpu_pct", "server CPU % (1 core=100)"),
    ("server_procs", "server processes"),
    *((f"{part}_{mode}_us_per_job", f"  {label} {mode} µs/job")
      for part, label in (("server", "server processes"), ("redis", "its Redis"))
      for mode in ("user", "sys")),
]


@dataclass
class Target:
    """One server under test: its endpoint and the pids whose process trees we meter."""

    name: str  # "first" or "second"
    endpoint: Endpoint
    pids: list[int] = field(default_factory=list)
    #: the unix socket of the server's Redis, when bench knows it (``bench faktory``): each run
    #: then records what that Redis did per job (``redis_counts``)
    redis_socket: str | None = None


def cpu_count() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` integers differing by at most one (larger ones first)."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def layout(threads: int, procs: int) -> list[tuple[int, int]]:
    """(pushers, fetchers) per process: half the threads push, half fetch, spread evenly.

    Pushers are dealt round-robin from process 0 and fetchers continue where pushers stopped, so every
    process gets a mix (dealing alternating roles round-robin over 2 processes would not).
    """
    npush, nfetch = (threads + 1) // 2, threads // 2
    procs = max(1, min(procs, threads))
    per = [[0, 0] for _ in range(procs)]
    for i in range(npush):
        per[i % procs][0] += 1
    for j in range(nfetch):
        per[(npush + j) % procs][1] += 1
    return [(a, b) for a, b in per if a or b]


def flush(ep: Endpoint) -> None:
    """Send FLUSH on a fresh connection (every scenario starts from an empty server)."""
    c = Conn(ep)
    try:
        c.call("FLUSH")
    finally:
        c.close()


def raise_nofile() -> int:
    """Raise RLIMIT_NOFILE soft limit to the hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class StallGuard:
    """Abort a run whose progress counter has not moved for ``limit`` seconds (lost jobs never arrive)."""

    def __init__(self, limit: float, what: str) -> None:
        self.limit = limit
        self.what = what
        self.value = -1
        self.since = time.monotonic()

    def check(self, value: int, total: int) -> None:
        """Call with the current counter; raises BenchError when stalled short of ``total``."""
        now = time.monotonic()
        if value != self.value:
            self.value, self.since = value, now
        elif value < total and now - self.since > self.limit:
            raise BenchError(f"{self.what}: stuck at {value:,} of {total:,} for {self.limit:g}s "
                             f"(jobs lost or server stalled)")


def run_push_fetch(name: str, args: Any, target: Any, worker: Callable[..., dict],
                   make_arg: Callable[[list[int], int, Any, Any], Any]) -> tuple[list[dict], float, Any]:
    """Run ``worker`` processes that push ``args.jobs`` jobs and fetch them all (load, baseline).

    ``make_arg(quotas, nfetch, pushed, fetched)`` builds one process's argument; ``pushed`` and
    ``fetched`` are shared per-process counters. Returns (per-process results, elapsed seconds
    from the start signal to the last job, the server CPU meter).
    """
    plan = layout(args.threads, args.procs or min(args.threads, cpu_count()))
    quotas = split_evenly(args.jobs, sum(p for p, _ in plan))
    pushed = MP.RawArray("q", len(plan))
    fetched = MP.RawArray("q", len(plan))
    wargs, k = [], 0
    for npush, nfetch in plan:
        wargs.append(make_arg(quotas[k:k + npush], nfetch, pushed, fetched))
        k += npush
    meter = ServerMeter(target.pids)
    stall = StallGuard(args.stall, f"{name} fetched")

    def progress(elapsed: float) -> str | None:
        stall.check(sum(fetched), args.jobs)
        if elapsed < 2:
            return None
        return f"  {name} {elapsed:5.1f}s pushed {sum(pushed):,}/{args.jobs:,} fetched {sum(fetched):,}/{args.jobs:,}"

    t0, results = run_workers(worker, wargs, on_go=meter.start, progress=progress, timeout=args.timeout,
                              done=lambda: sum(fetched) >= args.jobs, on_done=meter.stop)
    return results, max(r["t_last"] for r in results) - t0, meter


#: What ``redis_per_job`` adds to a run's metrics (``bench faktory``: each server's own Redis).
REDIS_METRICS = [
    ("redis_reads_per_job", "Redis reads with input /job"),
    ("redis_commands_per_job", "Redis commands /job (in functions too)"),
]


def redis_counts(socket_path: str | None) -> dict[str, float] | None:
    """Counters of the Redis at ``socket_path`` (None: unknown): its reads with input
    (``total_reads_processed``: one per wake-up that found a client's input) and, per command,
    its calls (``INFO commandstats``: commands run inside functions and scripts counted too)."""
    if not socket_path:
        return None
    import redis  # faktory_fast's dependency; only bench faktory needs it here

    client = redis.Redis(unix_socket_path=socket_path)
    try:
        stats, commands = client.info("stats"), client.info("commandstats")
    finally:
        client.close()
    counts = {"reads": float(stats["total_reads_processed"])}
    for key, value in commands.items():
        counts[key.removeprefix("cmdstat_")] = float(value["calls"])
    return counts


def redis_per_job(before: dict[str, float] | None, after: dict[str, float] | None,
                  jobs: int | None) -> dict[str, Any]:
    """Per job, what a Redis did between two ``redis_counts``: reads, commands (bench's own INFO
    calls left out), and the commands by name."""
    if before is None or after is None or not jobs:
        return {}
    delta = {k: v - before.get(k, 0.0) for k, v in after.items()}
    delta.pop("info", None)
    delta.pop("config|resetstat", None)
    reads = delta.pop("reads")
    by_command = {k: round(v / jobs, 3) for k, v in sorted(delta.items(), key=lambda kv: -kv[1])
                  if v > 0}
    return {"redis_reads_per_job": reads / jobs,
            "redis_commands_per_job": sum(delta.values()) / jobs,
            "redis_commands_by_name_per_job": by_command}


def run_rounds(mod: ModuleType, args: Any, targets: list[Target], scenario: str | None = None,
               servers: dict[str, dict[str, Any]] | None = None, note: str = "") -> dict[str, Any]:
    """``args.rounds`` runs of ``mod.run_once`` per target, alternating (A B, B A, ...); print the
    summary table (with ``note`` under it) and write the result JSON, whose ``scenario`` is
    ``scenario`` (default ``mod.NAME``) and whose ``servers`` entries get ``servers[name]`` merged in."""
    name = scenario or mod.NAME
    runs: list[dict[str, Any]] = []
    for rnd in range(args.rounds):
        # A B, B A, ...: whichever runs first in a round has no systematic edge.
        for t in (targets if rnd % 2 == 0 else targets[::-1]):
            print(f"[{name}] round {rnd + 1}/{args.rounds} on {t.name} server {t.endpoint.redacted()}",
                  file=sys.stderr, flush=True)
            before = redis_counts(t.redis_socket)
            metrics = mod.run_once(args, t)
            metrics.update(redis_per_job(before, redis_counts(t.redis_socket),
                                         getattr(args, "jobs", None) or getattr(args, "pushes", None)))
            runs.append({"target": t.name, "round": rnd, **metrics})
    names = [t.name for t in targets]
    summary = summarize(runs, names)
    doc = {
        "scenario": name,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "label": parse_labels(args.label),
        "params": mod.params(args),
        "servers": {t.name: {"url": t.endpoint.redacted(), "pids": t.pids, **(servers or {}).get(t.name, {})}
                    for t in targets},
        "runs": runs,
        "summary": summary,
    }
    path = write_json(doc, args.out)
    print(f"{name}: {', '.join(f'{k}={v}' for k, v in doc['params'].items())}")
    redis_rows = REDIS_METRICS if any("redis_reads_per_job" in r for r in runs) else []
    print(table(summary, names, [*mod.METRICS, *redis_rows]))
    if note:
        print(note)
    print(f"results: {path}")
    return doc
