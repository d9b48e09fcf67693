"""Data directories and Redis databases that Faktory wrote are served, and never lost.

Faktory runs its child Redis without AOF and saves ``faktory.rdb``; Faktory <= 1.9 keeps queues
under their bare names, 1.10 under ``q:<name>``. Two sources of such data here: a Redis started
with Faktory's own settings and filled by the test in both layouts, and ``fixtures/faktory-1.9.4``
(written by the real Faktory 1.9.4; its make_fixture.py says how).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from faktory_fast.master.redis_child import RedisChild, find_binary
from tests.support import FaktoryServer, wait_for

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "faktory-1.9.4")

# Faktory 1.9.4's redis.conf (storage/redis.go), less what it sets on the command line.
FAKTORY_REDIS_CONF = """bind 127.0.0.1 ::1
port 0
unixsocketperm 700
timeout 0
daemonize no
maxmemory-policy noeviction
save 120 1
save 30 5
stop-writes-on-bgsave-error yes
rdbcompression yes
rdbchecksum yes
dbfilename faktory.rdb
slowlog-log-slower-than 10000
slowlog-max-len 128
"""


def faktory_job(jid: str, queue: str, **extra: Any) -> str:
    """A job as Faktory stores it (its field order)."""
    return json.dumps({"retry": 25, "jid": jid, "queue": queue, "jobtype": "Old",
                       "created_at": "2025-01-02T03:04:05.1Z",
                       "enqueued_at": "2025-01-02T03:04:05.2Z", "args": [jid], **extra},
                      separators=(",", ":"))


class FaktoryRedis:
    """A redis-server run as Faktory runs its child: Faktory's settings, no AOF."""

    def __init__(self, data_dir: str) -> None:
        os.makedirs(data_dir, exist_ok=True)
        self.data_dir = data_dir
        self.sock = os.path.join(data_dir, "redis.sock")
        conf = os.path.join(data_dir, "faktory-redis.conf")
        with open(conf, "w") as fh:
            fh.write(FAKTORY_REDIS_CONF)
        self.proc = subprocess.Popen(
            [find_binary(), conf, "--unixsocket", self.sock, "--dir", data_dir,
             "--logfile", os.path.join(data_dir, "faktory-redis.log")], stdin=subprocess.DEVNULL)
        self.r = redis.Redis(unix_socket_path=self.sock, decode_responses=True)
        wait_for(self._up, timeout=15)

    def _up(self) -> bool:
        try:
            return bool(self.r.ping())
        except (redis.ConnectionError, redis.BusyLoadingError):
            return False

    def stop(self) -> None:
        """Stop as Faktory stops it (SIGTERM: Redis saves faktory.rdb)."""
        self.r.close()
        self.proc.terminate()
        assert self.proc.wait(20) == 0


def fill_both_layouts(r: redis.Redis) -> dict[str, Any]:
    """Every kind of Faktory data, queues in 1.9's layout (bare) and 1.10's (q:)."""
    want: dict[str, Any] = {"old": [f"old{i}" for i in range(30)],  # 1.9: list "legacy"
                            "new": [f"new{i}" for i in range(20)],  # 1.10: list "q:modern"
                            "paused": [f"pz{i}" for i in range(5)]}  # 1.9, paused queue
    for jid in want["old"]:
        r.lpush("legacy", faktory_job(jid, "legacy"))
    for jid in want["new"]:
        r.lpush("q:modern", faktory_job(jid, "modern"))
    for jid in want["paused"]:
        r.lpush("stopped", faktory_job(jid, "stopped"))
    # A 1.9 list and a 1.10 list of one queue (Faktory 1.9 run again after 1.10): both kept.
    r.lpush("both", faktory_job("both-old", "both"))
    r.lpush("q:both", faktory_job("both-new", "both"))
    r.sadd("queues", "legacy", "modern", "stopped", "both")
    r.sadd("paused", "stopped")
    far = time.time() + 30 * 86400
    for i in range(4):
        r.zadd("scheduled", {faktory_job(f"sch{i}", "legacy"): far + i})
    failure = {"retry_count": 1, "remaining": 24, "failed_at": "2025-01-02T03:04:06Z",
               "message": "boom", "errtype": "RuntimeError"}
    for i in range(3):
        r.zadd("retries", {faktory_job(f"ret{i}", "legacy", failure=failure): far + i})
    for i in range(2):
        r.zadd("dead", {faktory_job(f"dead{i}", "legacy", failure=failure): far + 180 * 86400})
    reservation = {"job": json.loads(faktory_job("busy0", "legacy")), "wid": "old-worker",
                   "reserved_at": "2025-01-02T03:04:06Z", "expires_at": "2099-01-01T00:00:00Z"}
    r.zadd("working", {json.dumps(reservation): 4070908800.0})
    r.set("processed", 41)
    r.set("failures", 7)
    r.set("processed:2025-01-02", 11)
    r.set("failures:2025-01-02", 3)
    return want


def jids(r: redis.Redis, key: str) -> list[str]:
    kind = r.type(key)
    members = r.lrange(key, 0, -1) if kind in ("list", b"list") else r.zrange(key, 0, -1)
    return [json.loads(m)["jid"] for m in members]


def assert_both_layouts_served(srv: FaktoryServer, want: dict[str, Any], acked: bool) -> None:
    r = redis.Redis(unix_socket_path=os.path.join(srv.data_dir, "redis.sock"),
                    decode_responses=True)
    try:
        c = srv.client(wid="switcher")
        info = c.info()["faktory"]
        assert info["queues"] == {"legacy": 30, "modern": 20, "stopped": 5, "both": 2}
        assert info["sets"] == {"scheduled": 4, "retries": 3, "dead": 2,
                                "working": 0 if acked else 1}
        assert info["total_processed"] == 41 + acked and info["total_failures"] == 7
        assert r.get("processed:2025-01-02") == "11" and r.get("failures:2025-01-02") == "3"
        assert r.get("v") == "1"  # Faktory 1.10's data-format version
        for bare in ("legacy", "stopped", "both"):
            assert not r.exists(bare)
        # Oldest first, as Faktory serves them.
        assert jids(r, "q:legacy") == list(reversed(want["old"]))
        assert jids(r, "q:both") == ["both-new", "both-old"]
        assert sorted(jids(r, "scheduled")) == [f"sch{i}" for i in range(4)]
        assert sorted(jids(r, "retries")) == [f"ret{i}" for i in range(3)]
        assert sorted(jids(r, "dead")) == ["dead0", "dead1"]
        assert r.sismember("paused", "stopped")
        assert c.fetch("stopped") is None  # still paused
        if not acked:
            assert c.ack("busy0") == "OK"  # the reservation Faktory made is known
    finally:
        r.close()


@pytest.fixture
def faktory_dir(tmp_path) -> Iterator[tuple[str, dict[str, Any]]]:
    data = str(tmp_path / "db")
    fk = FaktoryRedis(data)
    want = fill_both_layouts(fk.r)
    fk.stop()
    assert os.path.exists(os.path.join(data, "faktory.rdb"))
    assert not os.path.exists(os.path.join(data, "appendonly"))  # as Faktory leaves it
    yield data, want


def test_a_faktory_data_directory_is_loaded_migrated_and_kept(faktory_dir) -> None:
    data, want = faktory_dir
    with open(os.path.join(data, "faktory.rdb"), "rb") as fh:
        original = fh.read()
    srv = FaktoryServer(data, processes=2).start()
    try:
        assert any("Migrated 36 jobs in 3 queues" in line for line in srv.lines), srv.lines
        assert_both_layouts_served(srv, want, acked=False)
    finally:
        assert srv.stop() == 0
    # The original RDB is kept, byte for byte, and the log said where.
    copy = os.path.join(data, "faktory.rdb.before-faktory_fast")
    with open(copy, "rb") as fh:
        assert fh.read() == original
    assert any(copy in line for line in srv.lines)
    assert os.path.exists(os.path.join(data, "appendonly", "appendonly.aof.manifest"))
    # Second start: from our AOF now; everything still there, nothing migrated twice.
    srv.lines.clear()
    srv.start()
    try:
        assert not any("Migrated" in line for line in srv.lines)
        assert_both_layouts_served(srv, want, acked=True)
    finally:
        srv.stop()
    assert sorted(f for f in os.listdir(data) if f.startswith("faktory.rdb.")) == [
        "faktory.rdb.before-faktory_fast"]


def test_an_rdb_saved_by_faktory_after_our_stop_is_loaded(faktory_dir) -> None:
    """Back to Faktory for a while, then to us again: Faktory's newer RDB wins over our AOF."""
    data, _ = faktory_dir
    srv = FaktoryServer(data, processes=1).start()
    try:
        c = srv.client()
        assert c.push({"jid": "ours-0001", "jobtype": "X", "args": [], "queue": "legacy"}) == "OK"
    finally:
        srv.stop()
    fk = FaktoryRedis(data)  # Faktory 1.9 again: reads faktory.rdb, ignores our AOF
    assert fk.r.llen("q:legacy") == 31
    fk.r.lpush("legacy", faktory_job("while-away", "legacy"))
    fk.stop()
    srv.lines.clear()
    srv.start()
    try:
        r = srv.redis()
        # A 1.9 list merged into an existing q: list counts as the older one: served first.
        assert jids(r, "q:legacy")[-1] == "while-away" and "ours-0001" in jids(r, "q:legacy")
        r.close()
        assert len([f for f in os.listdir(data) if f.startswith("appendonly.before-")]) == 1
        assert len([f for f in os.listdir(data) if f.startswith("faktory.rdb.before-")]) == 2
    finally:
        srv.stop()


def test_redis_url_on_a_redis_faktory_19_used(tmp_path) -> None:
    fk = FaktoryRedis(str(tmp_path / "theirs"))
    want = fill_both_layouts(fk.r)
    try:
        srv = FaktoryServer(str(tmp_path / "ours"), processes=1,
                            env={"REDIS_URL": "unix://" + fk.sock})
        srv.data_dir = fk.data_dir  # assert_both_layouts_served reads this Redis
        srv.start()
        try:
            assert_both_layouts_served(srv, want, acked=False)
        finally:
            srv.stop()
    finally:
        fk.stop()


def test_the_real_faktory_194_data_directory(tmp_path) -> None:
    with open(os.path.join(FIXTURE, "manifest.json")) as fh:
        m = json.load(fh)
    data = str(tmp_path)
    shutil.copy(os.path.join(FIXTURE, "faktory.rdb"), data)
    srv = FaktoryServer(data, processes=2).start()
    try:
        r = srv.redis()
        c = srv.client(wid="switcher")
        assert int(r.get("processed")) == m["info"]["total_processed"]
        assert int(r.get("failures")) >= m["info"]["total_failures"]
        assert c.info()["faktory"]["queues"]["mig0"] == 60
        assert [j.decode() for j in r.smembers("paused")] == m["paused"]
        assert sorted(jids(r, "scheduled")) == sorted(m["scheduled"])
        assert sorted(jids(r, "dead")) == sorted(m["dead"])
        # Retries were due long ago: enqueued again, in their queue.
        wait_for(lambda: r.zcard("retries") == 0, timeout=10)
        assert sorted(jids(r, "q:failretries")) == sorted(m["retries"])
        # The reservation: ACKable while Faktory's expiry (a day after the fixture was made)
        # lies ahead; afterwards reaped as Faktory would (retry -1: straight to the dead set).
        busy = m["working"][0]
        record = json.loads(r.hget("ff:res", busy) or "null")
        if record and record["expires_at"] > time.time() + 5:
            assert c.ack(busy) == "OK"
        else:
            wait_for(lambda: busy in jids(r, "dead"), timeout=10)
        # Queued jobs: FIFO as Faktory pushed them; the paused queue stays paused until resumed.
        assert [c.fetch("mig0")["jid"] for _ in range(60)] == m["queued"]["mig0"]
        assert c.fetch("mig1") is None
        assert c.call("QUEUE RESUME mig1") == "OK"
        assert [c.fetch("mig1")["jid"] for _ in range(40)] == m["queued"]["mig1"]
        r.close()
    finally:
        srv.stop()
    with open(os.path.join(FIXTURE, "faktory.rdb"), "rb") as a, \
            open(os.path.join(data, "faktory.rdb.before-faktory_fast"), "rb") as b:
        assert a.read() == b.read()


def test_faktory_110_data_written_with_aof_is_served(tmp_path) -> None:
    """Our own child Redis (AOF) holding Faktory 1.10's layout: served as it is."""
    child = RedisChild(str(tmp_path))
    child.start()
    r = redis.Redis(unix_socket_path=child.socket_path)
    r.lpush("q:default", faktory_job("fk-queued-1", "default"))
    r.sadd("queues", "default")
    r.set("processed", 41)
    r.close()
    child.stop()
    srv = FaktoryServer(str(tmp_path), processes=1).start()
    try:
        c = srv.client()
        assert c.info()["faktory"]["queues"] == {"default": 1}
        assert c.fetch()["jid"] == "fk-queued-1"
    finally:
        srv.stop()


def test_unreadable_reservations_do_not_stop_the_boot(tmp_path) -> None:
    fk = FaktoryRedis(str(tmp_path))
    fk.r.zadd("working", {'{"job": "not an object"}': 1.0})
    fk.stop()
    srv = FaktoryServer(str(tmp_path), processes=1).start()
    try:
        assert srv.client().call("ACK " + json.dumps({"jid": "whatever1"})) == "OK"
        assert any("unreadable Faktory reservation" in line for line in srv.lines)
        r = srv.redis()
        assert r.zcard("working") == 0  # kept, not dropped: in the dead set, or as it was
        assert r.zcard("dead") + r.xlen("ff:bad") == 1
        r.close()
    finally:
        srv.stop()
