"""Redis memory that the job metrics take when full: ``--types`` job types (in one queue) busy
every minute for the whole of what Redis keeps (job_metrics.MINUTES_KEPT minute buckets,
HOURS_KEPT hour buckets and the lifetime totals), each with ``--buckets`` histogram buckets in
use. Writes them with ``ff_metrics``, as the server processes do, on a child Redis of its own,
and prints ``INFO memory``'s used_memory before and after. Run from the repository root:
``python -m bench.lab.metrics_memory [--types 200] [--buckets 3]``.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile

import redis

from faktory_fast import job_metrics
from faktory_fast.master.redis_child import RedisChild
from faktory_fast.storage.store import SyncStore


def fill(store: SyncStore, types: int, buckets: int, now_minute: int) -> None:
    """Everything Redis keeps of ``types`` job types (queue default) busy every minute up to
    ``now_minute``, each with ``buckets`` histogram buckets in use."""
    # The hours: HOURS_KEPT of them; the minutes: the last MINUTES_KEPT (each also adds to its
    # hour, as the server's calls do).
    first = now_minute - job_metrics.HOURS_KEPT * 60
    counts = job_metrics.Counts()
    counts.executions, counts.failures, counts.us = 30, 1, 1_234_567
    counts.buckets = {b: 10 for b in range(buckets)}
    fields = {f"default|App::Jobs::Type{t:04d}": job_metrics.pack(counts) for t in range(types)}
    for minute in range(first, now_minute - job_metrics.MINUTES_KEPT, 60):  # one call an hour
        store.add_job_metrics({minute: fields}, 10**6, 10**6, job_metrics.MAX_PAIRS)
    for minute in range(now_minute - job_metrics.MINUTES_KEPT, now_minute + 1):
        store.add_job_metrics({minute: fields}, 10**6, 10**6, job_metrics.MAX_PAIRS)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--types", type=int, default=200, help="job types (default 200)")
    ap.add_argument("--buckets", type=int, default=3,
                    help="histogram buckets in use per job type and minute (default 3)")
    opts = ap.parse_args()
    data_dir = tempfile.mkdtemp(prefix="metrics-memory-")
    child = RedisChild(data_dir)
    child.start()
    try:
        store = SyncStore.connect(child.url)
        store.load_library()
        r = redis.Redis(unix_socket_path=child.socket_path)
        before = r.info("memory")["used_memory"]
        fill(store, opts.types, opts.buckets, 29_000_000)
        after = r.info("memory")["used_memory"]
        keys_count = r.dbsize()
        print(f"{opts.types} job types, {opts.buckets} histogram buckets each: {keys_count} keys, "
              f"{(after - before) / 2**20:.1f} MiB of Redis memory "
              f"({job_metrics.MINUTES_KEPT} minute buckets, {job_metrics.HOURS_KEPT} hour "
              f"buckets, the totals)")
    finally:
        child.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
