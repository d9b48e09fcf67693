"""``faktory drain``: a faktory_worker_go worker (the ``fwgo-drain`` binary, no-op handler) drains
JOBS jobs preloaded by ``faktory-load JOBS 1`` (one connection pushing ``SomeJob`` to queue0..4).
The figure is fwgo-drain's own rate, timed from the first job to the last."""
from __future__ import annotations

import argparse
from typing import Any

from .client import BenchError
from .common import Target
from .goclient import (
    DRAIN_OK,
    DRAIN_RE,
    LOAD_OK,
    LOAD_RE,
    match_last,
    run_client,
    server_metrics,
)

NAME = "drain"
HELP = "faktory_worker_go (fwgo-drain -c C) draining JOBS preloaded jobs: jobs/s"
BINARIES = ["faktory-load", "fwgo-drain"]
METRICS = [
    ("jobs_per_s", "drain jobs/s (first→last job)"),
    ("elapsed_s", "drain s (first→last job)"),
    ("processed", "processed"),
    ("client_cpu_us_per_job", "worker CPU µs/job"),
    ("server_cpu_us_per_job", "server CPU µs/job (worker start→last job)"),
    ("preload_jobs_per_s", "preload jobs/s (Go client, 1 conn)"),
]


def add_args(p: argparse.ArgumentParser) -> None:
    """Options of the scenario."""
    p.add_argument("-j", "--jobs", type=int, default=30000, help="jobs preloaded, then drained (default 30000)")
    p.add_argument("-c", "--concurrency", type=int, default=10, help="fwgo-drain -c (default 10)")


def params(args: argparse.Namespace) -> dict[str, Any]:
    """Parameters recorded in the result JSON."""
    return {"jobs": args.jobs, "concurrency": args.concurrency, "client": "fwgo-drain",
            "preload": f"faktory-load {args.jobs} 1"}


def run_once(args: argparse.Namespace, target: Target) -> dict[str, Any]:
    """Preload (FLUSH, then push JOBS jobs on one connection), then drain them all."""
    pre = run_client([args.bins["faktory-load"], str(args.jobs), "1"], target, args.timeout, meter=False)
    m = match_last(pre, LOAD_RE, "faktory-load (preload)", LOAD_OK)
    if int(m[1]) != args.jobs:
        raise BenchError(f"preload pushed {m[1]} jobs, not {args.jobs}")
    run = run_client([args.bins["fwgo-drain"], "-c", str(args.concurrency), "-n", str(args.jobs)],
                     target, args.timeout, stop_at="Shutting down...")
    d = match_last(run, DRAIN_RE, "fwgo-drain", DRAIN_OK)
    if int(d[1]) != args.jobs:
        raise BenchError(f"fwgo-drain processed {d[1]} jobs, not {args.jobs}")
    return {
        "jobs_per_s": float(d[3]),
        "elapsed_s": float(d[2]),
        "processed": int(d[1]),
        "metered_s": run.elapsed_s,
        "client_cpu_us_per_job": run.cpu_s / args.jobs * 1e6,
        "preload_jobs_per_s": float(m[4]),
        **server_metrics(run.meter, args.jobs, run.elapsed_s),
    }
