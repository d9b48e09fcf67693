"""A data directory written by Faktory 1.10 is served as it is."""
from __future__ import annotations

import json
import time

import redis

from faktory_fast.redis_child import RedisChild
from tests.support import FaktoryServer

# As Faktory 1.10 stores them: job JSON in q:<name> lists, reservations as JSON in `working`.
QUEUED = ('{"retry":25,"jid":"fk-queued-1","queue":"default","jobtype":"Old",'
          '"created_at":"2025-01-02T03:04:05.1Z","enqueued_at":"2025-01-02T03:04:05.2Z","args":[1]}')
RESERVED_JOB = {"retry": 25, "jid": "fk-reserved", "queue": "default", "jobtype": "Old",
                "created_at": "2025-01-02T03:04:05.1Z", "args": []}


def test_faktory_written_data_is_served(tmp_path) -> None:
    child = RedisChild(str(tmp_path))
    child.start()
    r = redis.Redis(unix_socket_path=child.socket_path)
    r.lpush("q:default", QUEUED)
    r.sadd("queues", "default")
    r.set("processed", 41)
    reservation = json.dumps({"job": RESERVED_JOB, "reserved_at": "2025-01-02T03:04:06Z",
                              "expires_at": "2099-01-01T00:00:00Z", "wid": "old-worker"})
    r.zadd("working", {reservation: time.time() + 3600})
    r.zadd("scheduled", {json.dumps({**RESERVED_JOB, "jid": "fk-sched"}): time.time() + 3600})
    r.close()
    child.stop()

    srv = FaktoryServer(str(tmp_path), processes=1).start()
    try:
        c = srv.client()
        info = c.info()["faktory"]
        assert info["queues"] == {"default": 1} and info["sets"]["scheduled"] == 1
        assert info["sets"]["working"] == 1 and info["total_processed"] == 41
        assert c.fetch()["jid"] == "fk-queued-1"
        assert c.ack("fk-reserved") == "OK"  # the migrated reservation is known
        assert c.info()["faktory"]["total_processed"] == 42
        c.close()
    finally:
        srv.stop()
