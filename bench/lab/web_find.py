"""The web UI on a queue of a million jobs: finding a job by jid, the queue page's job-type
counts and filter, and the longest single Redis call they make.

Starts a child Redis of its own, loads the library, pushes ``--jobs`` small jobs straight into
one queue (pipelined LPUSHes: jids big00000000, the next to be fetched, on), then times requests
through the web app (Falcon's test client, as the unit tests): ``/find`` of the job at the far
end (the search goes newest first: the next to be fetched is the last it meets) and of a jid
that is nowhere (every place searched), the queue page (its job types, sampled) and the queue
page filtered by a text no job has (FILTER_SCAN_CAP jobs scanned). Every FCALL is logged
(SLOWLOG at 0 µs) to give the longest one. Run from the repository root:
``python -m bench.lab.web_find [--jobs N]``.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import orjson
import redis
from falcon import testing

from faktory_fast.master.redis_child import RedisChild
from faktory_fast.storage import keys
from faktory_fast.storage.store import SyncStore

from .lua_worst import _web

REPEATS = 3


def fill(r: redis.Redis, n: int) -> None:
    """``n`` small jobs (~120 bytes) in queue ``big``, pushed 10,000 a command."""
    pipe = r.pipeline(transaction=False)
    for start in range(0, n, 10_000):
        pipe.lpush(keys.queue("big"), *(orjson.dumps({
            "jid": f"big{i:08d}", "retry": 25, "queue": "big",
            "jobtype": ("Mail", "Sync", "Report")[i % 3],
            "enqueued_at": "2026-01-01T00:00:00Z", "args": [i, "some text"]})
            for i in range(start, min(n, start + 10_000))))
    pipe.sadd(keys.QUEUES, "big")
    pipe.execute()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    n = parser.parse_args().jobs
    with tempfile.TemporaryDirectory() as data:
        child = RedisChild(data)
        child.start()
        try:
            SyncStore.connect(child.url).load_library()
            r = redis.Redis(unix_socket_path=child.url[len("unix://"):])
            fill(r, n)
            resources = _web("resources")
            settings = _web("settings").Settings(redis_url=child.url)
            client = testing.TestClient(_web("app").create_app(settings))
            r.config_set("slowlog-max-len", 1_000_000)
            r.config_set("slowlog-log-slower-than", 0)
            cases: tuple[tuple[str, str, dict[str, str], int], ...] = (
                ("find the job at the far end", "/find", {"jid": "big00000000"}, 200),
                ("find a jid that is nowhere", "/find", {"jid": "nowhere"}, 404),
                ("queue page with job types", "/queues/big", {}, 200),
                ("queue page filtered, no match", "/queues/big", {"q": "no-such-text"}, 200))
            for label, path, params, status in cases:
                times = []
                r.slowlog_reset()
                for _ in range(REPEATS):
                    started = time.perf_counter()
                    got = client.simulate_get(path, params=params)
                    times.append(time.perf_counter() - started)
                    assert got.status_code == status, (path, got.status_code)
                calls = [e for e in r.slowlog_get(1_000_000)
                         if e["command"].startswith(b"FCALL")]
                worst = max(calls, key=lambda e: e["duration"])
                typical = statistics.median(e["duration"] for e in calls)
                print(f"{label}: median {statistics.median(times) * 1000:,.0f} ms a request "
                      f"({len(calls) // REPEATS} FCALLs, median {typical / 1000:.1f} ms); "
                      f"longest FCALL {worst['duration'] / 1000:.1f} ms "
                      f"({worst['command'][:60]!r})")
            print(f"({n:,} jobs; filter scan cap {resources.FILTER_SCAN_CAP:,}; "
                  f"find budget {resources.FIND_SECONDS:g} s a request)")
        finally:
            child.stop()


if __name__ == "__main__":
    main()
