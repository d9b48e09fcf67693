"""Queues sharded over a Redis Cluster's primaries: ``REDIS_URL=redis+cluster://...?partitions=3``.

Two faktory_fast nodes (one server process each) on one cluster (tests/cluster.py: 3 primaries +
3 replicas) with three partitions. Partition k's keys carry the tag ``keys.partition_tags(3)[k]``
(partition 0's is ``{ff}``, the home partition) and a queue lives in partition
``keys.partition_of(queue, 3)``. The tests are black-box (the wire protocol, through either node:
a job pushed through one is fetched, acknowledged or failed through the other), with white-box
reads of each tag's primary (redis-py on that node) to show that the keys really are spread over
the three primaries.
"""
# ruff: noqa: F811
from __future__ import annotations

import json
import select
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from faktory_fast.jobs import rfc3339
from faktory_fast.storage import keys
from faktory_fast.storage.keys import partition_of, partition_tags
from tests.cluster import SKIP_REASON, Node, RedisCluster, redis_binary, slot_of

# The fixture, imported under its name, which the tests' parameters then shadow (F811).
from tests.integration.cluster_fixtures import redis_cluster  # noqa: F401
from tests.support import Client, FaktoryServer, ReplyError, job, wait_for

pytestmark = pytest.mark.skipif(redis_binary() is None, reason=SKIP_REASON)

PARTS = 3
PINNED = "pinned"  # a queue the URL places in partition PINNED_TO, not where its name hashes to
PINNED_TO = (partition_of(PINNED, PARTS) + 1) % PARTS
FETCH_TIMEOUT = 2.0  # what a FETCH that finds nothing waits for, as Faktory's
# The keys of a partition's single-Redis layout: none of them is left by a FLUSH.
LAYOUT_KEYS = (keys.QUEUES, keys.PAUSED, keys.SCHEDULED, keys.RETRIES, keys.DEAD, keys.WORKING,
               keys.RESERVATIONS, keys.PROCESSED, keys.FAILURES, keys.PRIORITY_QUEUES,
               keys.UNIQUE_NAMES)


def queues_by_partition(per: int = 2) -> dict[int, list[str]]:
    """``per`` queue names on each partition (``pq<i>``, in the order of ``i``)."""
    found: dict[int, list[str]] = {k: [] for k in range(PARTS)}
    for i in range(10_000):
        name = f"pq{i}"
        k = partition_of(name, PARTS)
        assert 0 <= k < PARTS, (name, k)
        if len(found[k]) < per:
            found[k].append(name)
        if all(len(names) == per for names in found.values()):
            return found
    raise AssertionError(f"partition_of spread 10,000 names as {found}")


@dataclass
class Partitioned:
    """The cluster, its two faktory_fast nodes, the partitions' tags and queues on each."""

    cluster: RedisCluster
    nodes: list[FaktoryServer]
    tags: list[str]
    queues: dict[int, list[str]]  # partition -> queue names on it

    def client(self, node: int, **kw: Any) -> Client:
        return self.nodes[node].client(**kw)

    def q(self, k: int, i: int = 0) -> str:
        """The ``i``-th queue of partition ``k``."""
        return self.queues[k][i]

    def primary(self, k: int) -> Node:
        """The cluster node serving partition ``k``'s slot now."""
        return self.cluster.primary_for_slot(slot_of(self.tags[k]))

    def redis(self, k: int) -> redis.Redis:
        """A plain redis-py client of partition ``k``'s primary (``with p.redis(k) as r``)."""
        return self.primary(k).client()

    def key(self, k: int, name: str) -> str:
        """The key ``name`` (as on a single Redis) of partition ``k``."""
        return self.tags[k] + name

    def scan(self, k: int, pattern: str = "*") -> list[str]:
        """The keys of partition ``k``'s tag (untagged) matching ``pattern``, on its primary."""
        tag = self.tags[k]
        escaped = "".join("\\" + ch if ch in "*?[]\\" else ch for ch in tag)
        with self.redis(k) as r:
            return sorted(key.decode()[len(tag):]
                          for key in r.scan_iter(match=escaped + pattern, count=1000))


@pytest.fixture(scope="module")
def partitioned(redis_cluster: RedisCluster,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Partitioned]:
    """Two nodes on the module's cluster with ``?partitions=3`` (tests.deployments'
    ClusterNodes passes the cluster's URL as it is, so the nodes are started here)."""
    base: Path = tmp_path_factory.mktemp("partitions")
    env = {"REDIS_URL": f"{redis_cluster.url}?partitions={PARTS}&queue.{PINNED}={PINNED_TO}"}
    nodes = [FaktoryServer(str(base / name), processes=1, env=env) for name in ("a", "b")]
    try:
        for node in nodes:
            node.start()
        yield Partitioned(redis_cluster, nodes, list(partition_tags(PARTS)),
                          queues_by_partition())
    finally:
        for node in nodes:
            node.stop()


@pytest.fixture
def p(partitioned: Partitioned) -> Iterator[Partitioned]:
    """The deployment, flushed; the clients opened through it are closed afterwards."""
    assert partitioned.client(0).call("FLUSH") == "OK"
    yield partitioned
    for node in partitioned.nodes:
        node.close_clients()


def faktory_info(c: Client) -> dict[str, Any]:
    info = c.info()["faktory"]
    assert isinstance(info, dict)
    return info


def fetched(c: Client, *queues: str) -> dict[str, Any]:
    """FETCH that must return a job."""
    got = c.fetch(*queues)
    assert got is not None, f"FETCH {' '.join(queues)} returned nothing"
    return got


def mutate(c: Client, op: dict[str, Any]) -> Any:
    return c.call("MUTATE " + json.dumps(op, separators=(",", ":")))


def failed_job(p: Partitioned, k: int, **fields: Any) -> dict[str, Any]:
    """A job pushed to partition ``k``'s first queue through node A, fetched through node B and
    failed through node A: in partition ``k``'s retries."""
    j = job(queue=p.q(k), **fields)
    a, b = p.client(0), p.client(1)
    assert a.push(j) == "OK"
    assert fetched(b, p.q(k))["jid"] == j["jid"]
    assert a.fail(j["jid"]) == "OK"
    return j


# -- where the keys are ---------------------------------------------------------------------------

def test_partitions_are_on_three_primaries_and_a_queue_on_one(p: Partitioned) -> None:
    """The three tags are hash tags of slots served by three different primaries; a job pushed
    to a queue of partition k is in ``<tag k>q:<queue>`` on that primary, and nowhere else."""
    assert len(p.tags) == PARTS and p.tags[0] == keys.CLUSTER_TAG
    for tag in p.tags:  # a real hash tag: every key of the partition is in the tag's slot
        assert slot_of(tag + "q:anything") == slot_of(tag + keys.RETRIES) == slot_of(tag), tag
    primaries = [p.primary(k) for k in range(PARTS)]
    assert len({n.node_id for n in primaries}) == PARTS, primaries
    assert set(primaries) == set(p.cluster.primaries())

    a = p.client(0)
    pushed = {k: job(queue=p.q(k), args=[k]) for k in range(PARTS)}
    for j in pushed.values():
        assert a.push(j) == "OK"
    for k, j in pushed.items():
        queue = p.q(k)
        with p.redis(k) as r:
            stored = r.lrange(p.key(k, keys.queue(queue)), 0, -1)
            assert len(stored) == 1 and j["jid"].encode() in stored[0], stored
            assert r.sismember(p.key(k, keys.QUEUES), queue)
        # Nowhere else: no key naming the queue on any primary but under tag k on primary k.
        for other, node in enumerate(primaries):
            with node.client() as r:
                found = sorted(key.decode() for key in r.scan_iter(match=f"*q:{queue}"))
            want = [p.key(k, keys.queue(queue))] if other == k else []
            assert found == want, (queue, k, node, found)
    assert faktory_info(a)["queues"] == {p.q(k): 1 for k in range(PARTS)}


# -- FETCH ----------------------------------------------------------------------------------------

def test_fetch_follows_the_queue_order_across_partitions(p: Partitioned) -> None:
    """FETCH q2 q0 q1 (queues of partitions 2, 0, 1, given out of partition order) returns the
    jobs of q2 first, then q0's, then q1's, each queue FIFO, though pushed in the reverse order."""
    order = [p.q(2), p.q(0), p.q(1)]
    a, b = p.client(0), p.client(1)
    pushed: dict[str, list[str]] = {q: [] for q in order}
    for queue in reversed(order):
        for i in range(2):
            j = job(queue=queue, args=[i])
            assert a.push(j) == "OK"
            pushed[queue].append(j["jid"])
    got = []
    for i in range(6):
        j = fetched((a, b)[i % 2], *order)
        got.append((j["queue"], j["jid"]))
        assert (a, b)[(i + 1) % 2].ack(j["jid"]) == "OK"
    assert got == [(q, jid) for q in order for jid in pushed[q]]
    f = faktory_info(a)
    assert f["total_enqueued"] == 0 and f["sets"]["working"] == 0 and f["total_processed"] == 6


@pytest.mark.parametrize("k", [2, 1])
def test_a_parked_fetch_wakes_on_a_push_through_the_other_node(p: Partitioned, k: int) -> None:
    """A FETCH through node A on queues of partitions 1 and 2, finding nothing, waits; a PUSH
    through node B to the partition-k queue wakes it with that job well before its 2 s."""
    waiting = p.client(0)
    t0 = time.monotonic()
    assert waiting.sock is not None
    waiting.send(f"FETCH {p.q(1)} {p.q(2)}")
    # It is waiting: nothing comes back for a while (an answer now would be "nothing").
    readable, _, _ = select.select([waiting.sock], [], [], 0.3)
    assert not readable and not waiting.buf
    j = job(queue=p.q(k))
    pushed_at = time.monotonic()
    assert p.client(1).push(j) == "OK"
    reply = waiting.read_reply()
    took, since_push = time.monotonic() - t0, time.monotonic() - pushed_at
    assert reply is not None, f"the FETCH timed out after {took:.2f} s without the job"
    assert json.loads(reply)["jid"] == j["jid"]
    assert took < 1.5 and since_push < 1.0, (took, since_push)
    assert p.client(1).ack(j["jid"]) == "OK"


# -- ACK and FAIL ---------------------------------------------------------------------------------

def test_ack_and_fail_through_the_other_node(p: Partitioned) -> None:
    """On each partition: a job fetched through node A is acknowledged through node B; another
    one failed through node B lands in that partition's retries (white-box: ZCARD of
    ``<tag k>retries`` on its primary), which INFO counts."""
    a, b = p.client(0), p.client(1)
    failed: dict[int, str] = {}
    for k in range(PARTS):
        done, bad = job(queue=p.q(k), args=["ack"]), job(queue=p.q(k), args=["fail"])
        assert a.push(done) == "OK" and a.push(bad) == "OK"
        assert fetched(a, p.q(k))["jid"] == done["jid"]
        assert fetched(a, p.q(k))["jid"] == bad["jid"]
        assert faktory_info(b)["sets"]["working"] == 2
        assert b.ack(done["jid"]) == "OK"
        assert b.fail(bad["jid"], errtype="PartitionError", message=f"on {k}") == "OK"
        failed[k] = bad["jid"]
        with p.redis(k) as r:
            assert r.zcard(p.key(k, keys.WORKING)) == 0
            assert not r.hexists(p.key(k, keys.RESERVATIONS), bad["jid"])
    f = faktory_info(a)
    assert f["sets"]["retries"] == PARTS and f["sets"]["working"] == 0
    assert f["total_processed"] == 2 * PARTS and f["total_failures"] == PARTS
    for k, jid in failed.items():
        with p.redis(k) as r:
            entries = r.zrange(p.key(k, keys.RETRIES), 0, -1)
        assert len(entries) == 1, (k, entries)
        stored = json.loads(entries[0])
        assert stored["jid"] == jid and stored["queue"] == p.q(k)
        assert stored["failure"]["errtype"] == "PartitionError"
        assert stored["failure"]["message"] == f"on {k}"


# -- INFO -----------------------------------------------------------------------------------------

def test_info_sums_every_partition(p: Partitioned) -> None:
    """Known numbers of jobs pushed to five queues on the three partitions, some acknowledged,
    some failed: INFO's totals and queue sizes are the sums over the partitions, and so are the
    partitions' own counters (white-box)."""
    a, b = p.client(0), p.client(1)
    plan = {  # queue: (pushed, acknowledged, failed)
        p.q(0, 0): (3, 2, 0), p.q(0, 1): (1, 0, 0),
        p.q(1, 0): (4, 0, 1), p.q(1, 1): (2, 1, 0),
        p.q(2, 0): (5, 1, 2),
    }
    for queue, (n, _, _) in plan.items():
        for i in range(n):
            assert (a, b)[i % 2].push(job(queue=queue, args=[i])) == "OK"
    for queue, (_, acks, fails) in plan.items():
        for i in range(acks + fails):
            j = fetched(a, queue)
            if i < acks:
                assert b.ack(j["jid"]) == "OK"
            else:
                assert b.fail(j["jid"]) == "OK"
    f = faktory_info(b)
    left = {queue: n - acks - fails for queue, (n, acks, fails) in plan.items()}
    assert f["queues"] == left
    assert f["total_queues"] == len(plan) and f["total_enqueued"] == sum(left.values()) == 8
    assert f["total_processed"] == 7 and f["total_failures"] == 3
    assert f["sets"] == {"scheduled": 0, "retries": 3, "dead": 0, "working": 0}
    # The partitions' counters, each counting its own queues' jobs.
    counts = {k: [0, 0] for k in range(PARTS)}
    for queue, (_, acks, fails) in plan.items():
        counts[partition_of(queue, PARTS)][0] += acks + fails
        counts[partition_of(queue, PARTS)][1] += fails
    for k in range(PARTS):
        with p.redis(k) as r:
            stored = [int(r.get(p.key(k, name)) or 0) for name in (keys.PROCESSED, keys.FAILURES)]
            assert stored == counts[k], (k, stored, counts[k])
            assert r.zcard(p.key(k, keys.RETRIES)) == counts[k][1]


# -- the scheduler ----------------------------------------------------------------------------------

def test_a_scheduled_job_of_partition_1_is_enqueued_when_due(p: Partitioned) -> None:
    """A job pushed with "at" 1.5 s ahead to a partition-1 queue rests in that partition's
    scheduled set, and the master's scheduler enqueues it when due (fetched by FETCHes that
    wait for it, within a bounded time)."""
    at = time.time() + 1.5
    stamp = rfc3339(int(at * 1e6) * 1000)  # microseconds, as clients send
    j = job(queue=p.q(1), at=stamp)
    a, b = p.client(0), p.client(1)
    assert a.push(j) == "OK"
    assert faktory_info(b)["sets"]["scheduled"] == 1
    with p.redis(1) as r:
        assert r.zcard(p.key(1, keys.SCHEDULED)) == 1
    got = None
    deadline = time.monotonic() + 10
    while got is None and time.monotonic() < deadline:
        got = b.fetch(p.q(1))  # each waits up to 2 s for the job
    assert got is not None, "the scheduled job was not enqueued within 10 s"
    assert got["jid"] == j["jid"] and got["at"] == stamp and "enqueued_at" in got
    assert at - 0.1 <= time.time() < at + 3.0
    assert faktory_info(a)["sets"]["scheduled"] == 0
    assert a.ack(j["jid"]) == "OK"


# -- QUEUE ----------------------------------------------------------------------------------------

def test_queue_pause_resume_remove_per_partition(p: Partitioned) -> None:
    """QUEUE PAUSE of a partition-2 queue: FETCH skips it while a partition-0 queue still
    serves; RESUME brings it back; QUEUE REMOVE empties a partition-1 queue; QUEUE PAUSE *
    pauses every queue on every partition (a FETCH of them all waits and gets nothing)."""
    a, b = p.client(0), p.client(1)
    q0, q1, q2 = p.q(0), p.q(1), p.q(2)
    held, other = job(queue=q2), job(queue=q0)
    assert a.push(held) == "OK" and a.push(other) == "OK"
    assert a.call(f"QUEUE PAUSE {q2}") == "OK"
    with p.redis(2) as r:
        assert r.smembers(p.key(2, keys.PAUSED)) == {q2.encode()}
    assert fetched(b, q2, q0)["jid"] == other["jid"]  # q2 is first, but paused
    assert b.call(f"QUEUE RESUME {q2}") == "OK"
    assert fetched(a, q2, q0)["jid"] == held["jid"]

    for i in range(3):
        assert a.push(job(queue=q1, args=[i])) == "OK"
    assert faktory_info(a)["queues"][q1] == 3
    assert b.call(f"QUEUE REMOVE {q1}") == "OK"
    assert faktory_info(a)["queues"].get(q1, 0) == 0
    with p.redis(1) as r:
        assert r.llen(p.key(1, keys.queue(q1))) == 0

    pushed = [job(queue=q) for q in (q0, q1, q2)]
    for j in pushed:
        assert a.push(j) == "OK"
    assert b.call("QUEUE PAUSE *") == "OK"
    for k, queue in enumerate((q0, q1, q2)):
        with p.redis(k) as r:
            assert r.sismember(p.key(k, keys.PAUSED), queue), (k, queue)
    t0 = time.monotonic()
    assert a.fetch(q0, q1, q2) is None
    assert time.monotonic() - t0 > FETCH_TIMEOUT - 0.5
    assert a.call("QUEUE RESUME *") == "OK"
    assert [fetched(b, q0, q1, q2)["jid"] for _ in pushed] == [j["jid"] for j in pushed]


# -- MUTATE ---------------------------------------------------------------------------------------

def test_mutate_kills_the_retries_of_every_partition(p: Partitioned) -> None:
    """A retry on each partition; MUTATE kill of the retries moves all three to dead (each into
    its partition's dead set); a requeue by jid of the dead puts one back in its queue."""
    jobs_ = [failed_job(p, k) for k in range(PARTS)]
    a, b = p.client(0), p.client(1)
    assert faktory_info(a)["sets"]["retries"] == PARTS
    assert mutate(b, {"cmd": "kill", "target": "retries"}) == "OK"
    f = faktory_info(a)
    assert f["sets"]["retries"] == 0 and f["sets"]["dead"] == PARTS
    for k, j in enumerate(jobs_):
        with p.redis(k) as r:
            assert r.zcard(p.key(k, keys.RETRIES)) == 0
            dead = r.zrange(p.key(k, keys.DEAD), 0, -1)
        assert [json.loads(d)["jid"] for d in dead] == [j["jid"]], k
    op = {"cmd": "requeue", "target": "dead", "filter": {"jids": [jobs_[1]["jid"]]}}
    assert mutate(a, op) == "OK"
    f = faktory_info(b)
    assert f["sets"]["dead"] == PARTS - 1 and f["queues"][p.q(1)] == 1
    assert fetched(b, p.q(1))["jid"] == jobs_[1]["jid"]


# -- FLUSH ----------------------------------------------------------------------------------------

def test_flush_empties_every_partition(p: Partitioned) -> None:
    """Jobs, a paused queue, a reservation, a retry, a scheduled and a dead job, counters and a
    unique lock on every partition; FLUSH through one node: INFO is all zeros, no partition's
    primary holds a queue or any key of the partition layout, and the unique lock is gone."""
    a, b = p.client(0), p.client(1)
    def lonely() -> dict[str, Any]:
        return job("Lonely", [1], queue=p.q(1, 1), custom={"unique_for": 60})

    assert a.push(lonely()) == "OK"
    with pytest.raises(ReplyError, match="^NOTUNIQUE"):
        b.push(lonely())
    for k in range(PARTS):
        failed_job(p, k)
        assert a.push(job(queue=p.q(k, 1), at="2099-01-01T00:00:00Z")) == "OK"
        assert a.push(job(queue=p.q(k, 1))) == "OK"
        assert a.push(job(queue=p.q(k, 1))) == "OK"
        assert fetched(b, p.q(k, 1))  # reserved, never acknowledged
        assert b.call(f"QUEUE PAUSE {p.q(k, 1)}") == "OK"
    assert mutate(a, {"cmd": "kill", "target": "retries"}) == "OK"
    for k in range(PARTS):
        failed_job(p, k)
    before = faktory_info(b)
    assert before["sets"] == {"scheduled": PARTS, "retries": PARTS, "dead": PARTS,
                              "working": PARTS}
    assert before["total_processed"] == 2 * PARTS and before["total_enqueued"] == PARTS + 1
    for k in range(PARTS):  # every partition has keys of its layout to lose
        assert any(name.startswith(keys.QUEUE_PREFIX) for name in p.scan(k)), k

    assert b.call("FLUSH") == "OK"
    f = faktory_info(a)
    assert f["queues"] == {} and f["total_queues"] == 0 and f["total_enqueued"] == 0
    assert f["sets"] == {"scheduled": 0, "retries": 0, "dead": 0, "working": 0}
    assert f["total_processed"] == 0 and f["total_failures"] == 0
    for k in range(PARTS):
        left = p.scan(k)
        assert not [name for name in left if name.startswith(keys.QUEUE_PREFIX)
                    or name in LAYOUT_KEYS or name.startswith(keys.UNIQUE_PREFIX)], (k, left)
    assert b.push(lonely()) == "OK"  # its lock went with the rest


# -- reservations ---------------------------------------------------------------------------------

def test_an_expired_reservation_on_partition_1_is_retried(p: Partitioned) -> None:
    """A job of a partition-1 queue pushed with reserve_for 1 (held 60 s, Faktory's least) is
    fetched and never acknowledged; its reservation is in partition 1's working set. Once its
    time is up (the deadline moved back on that primary: as if 60 s had passed) it is failed
    with ReservationExpired into partition 1's retries."""
    a, b = p.client(0), p.client(1)
    j = job(queue=p.q(1), reserve_for=1)
    assert a.push(j) == "OK"
    assert fetched(a, p.q(1))["jid"] == j["jid"]
    working = p.key(1, keys.WORKING)
    with p.redis(1) as r:
        assert r.zscore(working, j["jid"]) == pytest.approx(time.time() + 60, abs=5)
        assert r.hexists(p.key(1, keys.RESERVATIONS), j["jid"])
        r.zadd(working, {j["jid"]: time.time() - 1})
    wait_for(lambda: faktory_info(b)["sets"]["retries"] == 1, timeout=15, interval=0.1)
    with p.redis(1) as r:
        entries = r.zrange(p.key(1, keys.RETRIES), 0, -1)
        assert r.zcard(working) == 0
    assert len(entries) == 1
    retried = json.loads(entries[0])
    assert retried["jid"] == j["jid"] and retried["queue"] == p.q(1)
    assert retried["failure"]["errtype"] == "ReservationExpired"
    assert faktory_info(b)["sets"]["working"] == 0
    assert b.ack(j["jid"]) == "OK"  # a late ACK is harmless
    assert faktory_info(a)["sets"]["retries"] == 1


# -- workers, Enterprise --------------------------------------------------------------------------

def test_a_quiet_worker_gets_nothing_from_any_partition(p: Partitioned) -> None:
    """A worker quiet by its BEAT (kept in the home partition) gets nil after FETCH's 2 s from
    queues of the other partitions too (the master copies quiet workers to them), while its
    queue's job stays there for others."""
    w = p.client(1, wid="quiet-worker")
    a = p.client(0)
    assert w.call('BEAT {"wid":"quiet-worker","current_state":"quiet"}') == '{"state":"quiet"}'
    j = job(queue=p.q(2))
    assert a.push(j) == "OK"
    with p.redis(2) as r:  # copied there within the master's round (0.5 s)
        wait_for(lambda: r.sismember(p.key(2, keys.QUIET_WORKERS), "quiet-worker"), timeout=5,
                 interval=0.05)
    t0 = time.monotonic()
    assert w.fetch(p.q(1), p.q(2)) is None
    assert time.monotonic() - t0 > 1.5
    assert fetched(a, p.q(2))["jid"] == j["jid"]
    w.close()


def test_tracking_a_job_of_another_partition(p: Partitioned) -> None:
    """TRACK SET and GET find a tracked job in whichever partition its queue is in."""
    a, b = p.client(0), p.client(1)
    for k in (1, 2):
        j = job(queue=p.q(k), custom={"track": 1})
        assert a.push(j) == "OK"
        assert json.loads(b.call(f"TRACK GET {j['jid']}"))["state"] == "enqueued"
        assert fetched(b, p.q(k))["jid"] == j["jid"]
        spec = {"jid": j["jid"], "percent": 40 + k, "desc": f"half {k}"}
        assert a.call("TRACK SET " + json.dumps(spec)) == "OK"
        got = json.loads(b.call(f"TRACK GET {j['jid']}"))
        assert (got["state"], got["percent"], got["desc"]) == ("working", 40 + k, f"half {k}")
        with p.redis(k) as r:
            assert r.hget(p.key(k, keys.tracking(j["jid"])), "percent") == str(40 + k).encode()
        assert b.ack(j["jid"]) == "OK"
        assert json.loads(a.call(f"TRACK GET {j['jid']}"))["state"] == "success"
    with pytest.raises(ReplyError, match="is not tracked"):
        a.call('TRACK SET {"jid":"nobody","percent":1}')


def test_batches_are_refused_with_partitions(p: Partitioned) -> None:
    """BATCH says clearly that it needs a deployment without partitions (for now)."""
    spec = {"description": "d", "success": job(queue=p.q(1))}
    with pytest.raises(ReplyError, match="BATCH is not available .* partitions"):
        p.client(0).call("BATCH NEW " + json.dumps(spec))


def test_a_node_with_another_partition_count_refuses_to_start(
        partitioned: Partitioned, tmp_path: Path) -> None:
    """The cluster records the count its first node used: a node configured with another
    would look for queues where they are not, so it says so and exits."""
    wrong = FaktoryServer(str(tmp_path / "c"), processes=1,
                          env={"REDIS_URL": f"{partitioned.cluster.url}?partitions=2"})
    with pytest.raises(RuntimeError, match="server did not start"):
        wrong.start(timeout=15)
    wrong.stop()
    assert any(f"as '3 {PINNED}={PINNED_TO}' (count, pinned queues), not '2'" in line
               for line in wrong.lines), wrong.lines[-5:]


def test_a_queue_pinned_by_the_url_is_in_its_partition(p: Partitioned) -> None:
    """``queue.NAME=K`` in the URL puts a queue in partition K, whatever its name hashes to."""
    a, b = p.client(0), p.client(1)
    j = job(queue=PINNED)
    assert a.push(j) == "OK"
    with p.redis(PINNED_TO) as r:
        assert r.llen(p.key(PINNED_TO, keys.queue(PINNED))) == 1
    hashed = partition_of(PINNED, PARTS)
    with p.redis(hashed) as r:
        assert r.llen(p.key(hashed, keys.queue(PINNED))) == 0
    assert fetched(b, PINNED, p.q(hashed))["jid"] == j["jid"]
    assert a.ack(j["jid"]) == "OK"
