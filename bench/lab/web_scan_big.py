"""The longest Redis call of the web UI's queue scans over big jobs: a queue of 2,000 jobs of
100 KB, then one of 300 jobs of 1 MB (the same jobs in the retry set too); for each, the job
types of its first jobs, a find of a jid that is not there, a text filter no job matches and a
page of 25 jobs, of the queue and of the set, each one call, timed by SLOWLOG on a child
Redis of its own. Run from the repository root: ``python -m bench.lab.web_scan_big``.
"""
from __future__ import annotations

import shutil
import tempfile

import orjson
import redis

from faktory_fast.master.redis_child import RedisChild
from faktory_fast.storage import keys
from faktory_fast.storage.ops.web import WEB_QUEUE_SCAN, WEB_SET_SCAN
from faktory_fast.storage.store import SyncStore

PAGE_SIZE = 25  # web.views.PAGE_SIZE: a page of a queue or a set


def main() -> None:
    data_dir = tempfile.mkdtemp(prefix="web-scan-big-")
    child = RedisChild(data_dir)
    child.start()
    try:
        store = SyncStore.connect(child.url)
        r = redis.Redis(unix_socket_path=child.socket_path)
        for size, n in ((100_000, 2_000), (1_000_000, 300)):
            r.flushdb()
            store.load_library()
            pad = "x" * size
            pipe = r.pipeline(transaction=False)
            for i in range(n):
                job = orjson.dumps({"jid": f"j{i}", "jobtype": "T", "queue": "big",
                                    "args": [pad]})
                pipe.lpush(keys.queue("big"), job)
                pipe.zadd(keys.RETRIES, {job: 1_700_000_000 + i})
            pipe.execute()
            for what, call in (
                    ("job types", lambda: store.queue_types("big", 0, WEB_QUEUE_SCAN)),
                    ("find a jid", lambda: store.queue_filter("big", "0", WEB_QUEUE_SCAN, 1,
                                                               "nosuchjid", "", "")),
                    ("text filter", lambda: store.queue_filter("big", "0", WEB_QUEUE_SCAN, 25,
                                                                "", "", "nomatch")),
                    ("queue page", lambda: store.queue_page("big", 0, PAGE_SIZE)),
                    ("retries page", lambda: store.set_page(keys.RETRIES, 0, PAGE_SIZE)),
                    ("retries text filter", lambda: store.set_filter(
                        keys.RETRIES, "0", WEB_SET_SCAN, 25, "", "", "nomatch")),
                    ("retries find a jid", lambda: store.set_filter(
                        keys.RETRIES, "0", WEB_SET_SCAN, 1, "", "", "", "nosuchjid"))):
                r.config_set("slowlog-log-slower-than", 0)
                r.slowlog_reset()
                call()
                ms = max(e["duration"] for e in r.slowlog_get(10)
                         if e["command"].startswith(b"FCALL")) / 1000
                print(f"{n:,} jobs of {size // 1000:,} KB, {what}: one call {ms:.1f} ms")
    finally:
        child.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
