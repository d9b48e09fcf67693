"""Redis CPU per call of faktory_fast's hot Lua functions (ff_push, ff_fetch, ff_ack).

Not a server benchmark: it starts a child Redis, calls each function N times with
``Operations``' arguments and reads the time Redis spent in them from ``INFO commandstats``,
so a change to ``faktory_fast/storage/lua/jobs.lua`` can be judged on its own. Run from the
repository root: ``python -m bench.lab.lua_cost [-n 20000] [--batch 50 [--group]] [--unique]
[--floor] [--library FILE]``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable

import redis

from faktory_fast import jobs
from faktory_fast.master.redis_child import RedisChild
from faktory_fast.storage import keys
from faktory_fast.storage.store import Operations, SyncStore

from .floor import DONE_LUA, FETCH_LUA, RES, WORKING

QUEUES = [f"queue{i}" for i in range(5)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=20000, help="calls per phase")
    ap.add_argument("--unique", action="store_true",
                    help="every job unique (custom.unique_for, distinct args): the Enterprise path")
    ap.add_argument("--floor", action="store_true",
                    help="then the same jobs through the floor server's commands (bench/lab/floor.py: "
                         "LPUSH, its fetch and done scripts), for the difference the data model makes")
    ap.add_argument("--batch", type=int, default=1, metavar="B",
                    help="push, fetch and ack B jobs at a time, each step pipelined (default 1: "
                         "each step for all jobs, one call at a time)")
    ap.add_argument("--group", action="store_true",
                    help="with --batch B: push, fetch and ack the B jobs in one call each, as a "
                         "server process's group commit sends a turn's commands")
    ap.add_argument("--library", metavar="FILE",
                    help="load this library source instead of faktory_fast's (a patched copy of "
                         "store.library_source()'s text: what a change to a function would save)")
    opts = ap.parse_args()
    n, unique = opts.n, opts.unique
    data_dir = tempfile.mkdtemp(prefix="lua-cost-")
    child = RedisChild(data_dir)
    child.start()
    try:
        store = SyncStore.connect(child.url)
        store.load_library()
        if opts.library:
            with open(opts.library) as f:
                store.client.execute_command("FUNCTION", "LOAD", "REPLACE", f.read())
        r = redis.Redis(unix_socket_path=child.socket_path)

        def usec(command: str) -> int:
            return r.info("commandstats").get("cmdstat_" + command, {}).get("usec", 0)

        now = time.time_ns()
        def job(i: int) -> jobs.Prepared:
            jid = os.urandom(8).hex()
            fields = {"jid": jid, "jobtype": "SomeJob", "args": [[1, "string", 3]], "retry": 25,
                      "queue": QUEUES[i % 5]}
            if unique:
                fields.update(args=[[1, "string", 3], jid], custom={"unique_for": 600})
            return jobs.prepare(fields, now)

        prepared = [job(i) for i in range(n)]
        at = jobs.score(now)

        def queues(i: int) -> list[str]:  # job i is the oldest of the first queue (FIFO)
            return QUEUES[i % 5:] + QUEUES[:i % 5]

        # Each step: its name, the Redis command INFO counts it under, job i's call of it.
        # (--group: push and ack a chunk's jobs in one call: see _grouped below.)
        steps: list[tuple[str, str, Callable[[int], tuple]]] = [
            ("ff_push", "fcall", lambda i: Operations.push.build(store, [prepared[i]]).args),
            ("ff_fetch", "fcall",
             lambda i: Operations.fetch.build(store, "", "p", at, 1800, queues(i)).args),
            ("ff_ack", "fcall", lambda i: Operations.ack.build(
                store, prepared[i].jid, "2026-01-01", not unique).args)]
        if opts.floor:
            fetch_sha, done_sha = r.script_load(FETCH_LUA), r.script_load(DONE_LUA)
            deadline = int(now / 1e9) + 1800
            steps += [
                ("floor push", "lpush", lambda i: ("LPUSH", keys.queue(prepared[i].queue),
                                                   prepared[i].payload)),
                ("floor fetch", "evalsha", lambda i: ("EVALSHA", fetch_sha, 7, RES, WORKING,
                                                      *map(keys.queue, queues(i)), deadline)),
                ("floor ack", "evalsha", lambda i: ("EVALSHA", done_sha, 3, RES, WORKING,
                                                    "processed", prepared[i].jid))]
        spent = {name: 0 for name, _, _ in steps}
        # One step for all jobs, then the next (--batch 1: one call at a time, the reservations
        # pile up); or each step for a batch of jobs at once, pipelined, as under load.
        for first in range(0, n, opts.batch if opts.batch > 1 else n):
            chunk = range(first, min(n, first + opts.batch)) if opts.batch > 1 else range(n)
            for name, command, call in steps:
                before = usec(command)
                grouped = _grouped(store, name, [prepared[i] for i in chunk], not unique, at,
                                   [queues(i) for i in chunk])
                if opts.group and opts.batch > 1 and grouped is not None:
                    replies = [r.execute_command(*grouped)]
                    if name == "ff_fetch":
                        replies = replies[0]
                elif opts.batch > 1:
                    pipe = r.pipeline(transaction=False)
                    for i in chunk:
                        pipe.execute_command(*call(i))
                    replies = pipe.execute()
                else:
                    replies = [r.execute_command(*call(i)) for i in chunk]
                if name == "ff_fetch" and not (opts.group and opts.batch > 1):
                    replies = [reply[0] for reply in replies]  # ff_fetch answers a list of FETCHes
                if name.endswith("fetch"):  # each FETCH found its job
                    for i, reply in zip(chunk, replies):
                        got = reply[0] if type(reply) is list else reply
                        assert got == prepared[i].payload, (name, reply)
                spent[name] += usec(command) - before
        for name, total in spent.items():
            print(f"{name:<12} {total / n:6.2f} µs/call")
        before = usec("fcall")
        for _ in range(n):
            store.fetch("", "p", at, 1800, QUEUES)
        print(f"{'fetch empty':<12} {(usec('fcall') - before) / n:6.2f} µs/call")
        r.close()
    finally:
        child.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def _grouped(store: SyncStore, step: str, batch: list[jobs.Prepared], plain: bool, at: str,
             queues: list[list[str]]) -> tuple | None:
    """One call for the whole batch of a step (group commit), or None."""
    if step == "ff_push":
        return Operations.push.build(store, batch).args
    if step == "ff_fetch":
        return Operations.fetch_all.build(store, "p", at, 1800, [("", q) for q in queues]).args
    if step == "ff_ack":
        return Operations.ack_all.build(store, [(p.jid, plain) for p in batch], "2026-01-01").args
    return None


if __name__ == "__main__":
    main()
