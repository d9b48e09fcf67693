"""``faktory load``: Faktory's own load test, the ``faktory-load`` binary (contribsys/faktory
test/load), against a server: T goroutines, even ones PUSH to queue0..4, odd ones FETCH + ACK
(about 1 % FAIL). Its ``rate`` (JOBS / its elapsed time) is the figure."""
from __future__ import annotations

import argparse
from typing import Any

from .common import SERVER_CPU_METRICS, Target
from .goclient import LOAD_OK, LOAD_RE, match_last, run_client, server_metrics

NAME = "load"
HELP = "Faktory's own load test (faktory-load JOBS THREADS): jobs/s and server CPU µs/job"
#: Anchor binaries the client side needs (besides the faktory server).
BINARIES = ["faktory-load"]
METRICS = [
    ("jobs_per_s", "jobs/s (faktory-load's rate)"),
    ("elapsed_s", "elapsed s (its own)"),
    ("pushes", "pushes"),
    ("pops", "pops (FETCH calls)"),
    ("client_cpu_us_per_job", "client CPU µs/job"),
    *SERVER_CPU_METRICS,
]


def add_args(p: argparse.ArgumentParser) -> None:
    """Options of the scenario."""
    p.add_argument("-j", "--jobs", type=int, default=30000, help="jobs (default 30000)")
    p.add_argument("-t", "--threads", type=int, default=10,
                   help="goroutines, half push half fetch (default 10)")


def params(args: argparse.Namespace) -> dict[str, Any]:
    """Parameters recorded in the result JSON."""
    return {"jobs": args.jobs, "threads": args.threads, "client": "faktory-load"}


def run_once(args: argparse.Namespace, target: Target) -> dict[str, Any]:
    """One ``faktory-load JOBS THREADS`` run against ``target`` (it FLUSHes the server first)."""
    if args.threads < 2:
        raise SystemExit("load needs at least 2 threads (one pusher, one fetcher)")
    run = run_client([args.bins["faktory-load"], str(args.jobs), str(args.threads)], target, args.timeout)
    m = match_last(run, LOAD_RE, "faktory-load", LOAD_OK)
    return {
        "jobs_per_s": float(m[4]),
        "elapsed_s": float(m[3]),
        "pushes": int(m[1]),
        "pops": int(m[2]),
        "metered_s": run.elapsed_s,
        "client_cpu_us_per_job": run.cpu_s / args.jobs * 1e6,
        "client_cpu_user_share": run.cpu_user_s / max(1e-9, run.cpu_s),
        **server_metrics(run.meter, args.jobs, run.elapsed_s),
    }
