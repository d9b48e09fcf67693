"""The web UI's Metrics pages when Redis holds all it keeps: how long each page takes and the
longest Redis command it sends.

Starts a child Redis of its own, fills it as ``metrics_memory`` does (``--types`` job types busy
every minute for 72 hours, up to this minute), then times the Metrics table and one job type's
page for each window through the web app (Falcon's test client, as the unit tests), logging
every command (SLOWLOG at 0 µs). Run from the repository root:
``python -m bench.lab.web_metrics [--types 200] [--buckets 3]``.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import redis
from falcon import testing

from faktory_fast.job_metrics import PERIODS
from faktory_fast.master.redis_child import RedisChild
from faktory_fast.storage.store import SyncStore

from .lua_worst import _web
from .metrics_memory import fill

REPEATS = 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--types", type=int, default=200, help="job types (default 200)")
    parser.add_argument("--buckets", type=int, default=3,
                        help="histogram buckets in use per job type and minute (default 3)")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as data:
        child = RedisChild(data)
        child.start()
        try:
            store = SyncStore.connect(child.url)
            store.load_library()
            fill(store, opts.types, opts.buckets, int(time.time() // 60))
            r = redis.Redis(unix_socket_path=child.socket_path)
            client = testing.TestClient(
                _web("app").create_app(_web("settings").Settings(redis_url=child.url)))
            r.config_set("slowlog-max-len", 1_000_000)
            r.config_set("slowlog-log-slower-than", 0)
            for period in PERIODS:
                for label, path, params in (
                        ("table", "/job-metrics", {"period": period.name}),
                        ("job type", "/job-metrics/jobtype",
                         {"period": period.name, "name": "App::Jobs::Type0000"})):
                    times = []
                    r.slowlog_reset()
                    for _ in range(REPEATS):
                        started = time.perf_counter()
                        got = client.simulate_get(path, params=params)
                        times.append(time.perf_counter() - started)
                        assert got.status_code == 200, (path, got.status_code)
                    calls = [e for e in r.slowlog_get(1_000_000)
                             if e["command"].startswith((b"HGETALL", b"HMGET"))]
                    worst = max(calls, key=lambda e: e["duration"])
                    print(f"{period.name} {label}: median {statistics.median(times) * 1000:,.0f} "
                          f"ms a request, {len(calls) // REPEATS} reads of a bucket; longest "
                          f"{worst['duration']} µs ({worst['command'][:40]!r})")
            print(f"({opts.types} job types, {opts.buckets} histogram buckets each)")
        finally:
            child.stop()


if __name__ == "__main__":
    main()
