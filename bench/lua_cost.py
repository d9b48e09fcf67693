"""Redis CPU per call of faktory_fast's hot Lua functions (ff_push, ff_fetch, ff_ack).

Not a server benchmark: it starts a child Redis, calls each function N times through
``SyncStore`` and reads ``usec_per_call`` from ``INFO commandstats`` (reset between the
phases), so a change to ``faktory_fast/lua/faktory.lua`` can be judged on its own. Run from the
repository root: ``python -m bench.lua_cost [-n 20000] [--unique] [--floor]``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Iterable

import redis

from faktory_fast import jobs, keys
from faktory_fast.redis_child import RedisChild
from faktory_fast.store import Fetched, Reserved, SyncStore

from .floor import DONE_LUA, FETCH_LUA

QUEUES = [f"queue{i}" for i in range(5)]


def reserved_jid(res: Reserved | Fetched) -> str:
    assert isinstance(res, Reserved), res
    return res.jid.decode()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=20000, help="calls per phase")
    ap.add_argument("--unique", action="store_true",
                    help="every job unique (custom.unique_for, distinct args): the Enterprise path")
    ap.add_argument("--floor", action="store_true",
                    help="then the same jobs through the floor server's commands (bench/floor.py: "
                         "LPUSH, its fetch and done scripts), for the difference the data model makes")
    opts = ap.parse_args()
    n, unique = opts.n, opts.unique
    data_dir = tempfile.mkdtemp(prefix="lua-cost-")
    child = RedisChild(data_dir)
    child.start()
    try:
        store = SyncStore.connect(child.url)
        store.load_library()
        r = redis.Redis(unix_socket_path=child.socket_path)

        def phase(name: str, calls: Iterable[object], command: str = "fcall") -> None:
            r.config_resetstat()
            for _ in calls:
                pass
            usec = r.info("commandstats")["cmdstat_" + command]["usec_per_call"]
            print(f"{name:<12} {usec:6.2f} µs/call")

        now = time.time_ns()
        def job(i: int) -> jobs.Prepared:
            jid = os.urandom(8).hex()
            fields = {"jid": jid, "jobtype": "SomeJob", "args": [[1, "string", 3]], "retry": 25,
                      "queue": QUEUES[i % 5]}
            if unique:
                fields.update(args=[[1, "string", 3], jid], custom={"unique_for": 600})
            return jobs.prepare(fields, now)

        prepared = [job(i) for i in range(n)]
        phase("ff_push", (store.push([p]) for p in prepared))
        jids: list[str] = []

        def fetch(i: int) -> str:
            jid = reserved_jid(store.fetch("", "p", jobs.score(now), 1800,
                                           QUEUES[i % 5:] + QUEUES[:i % 5]))
            jids.append(jid)
            return jid

        phase("ff_fetch", (fetch(i) for i in range(n)))
        phase("ff_ack", (store.ack(j, "2026-01-01", plain=not unique) for j in jids))
        phase("fetch empty", (store.fetch("", "p", jobs.score(now), 1800, QUEUES) for _ in range(n)))
        if opts.floor:
            fetch_sha, done_sha = r.script_load(FETCH_LUA), r.script_load(DONE_LUA)
            deadline = int(now / 1e9) + 1800
            phase("floor push", (r.lpush(keys.queue(p.queue), p.payload) for p in prepared), "lpush")
            phase("floor fetch", (r.evalsha(fetch_sha, 7, "res", "working",
                                            *[keys.queue(q) for q in QUEUES[i % 5:] + QUEUES[:i % 5]],
                                            deadline) for i in range(n)), "evalsha")
            phase("floor ack", (r.evalsha(done_sha, 3, "res", "working", "processed", jid)
                                for jid in jids), "evalsha")
        r.close()
    finally:
        child.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
