"""faktory_fast on a Redis Cluster that changes under it: the primary of our keys' slot killed
under load (a replica promoted), the slot moved to another primary, the web UI across a failover.

Each test has a cluster of its own (tests/cluster.py: 3 primaries + 3 replicas on loopback),
since each breaks it. All of faktory_fast's keys carry the tag ``{ff}``: one slot, one primary.
"""
from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from faktory_fast.storage import keys
from faktory_fast.storage.keys import partition_of, partition_tags
from faktory_fast.storage.redis_url import parse_redis_url, redis_location
from tests.cluster import SKIP_REASON, Node, RedisCluster, owners, redis_binary, slot_of
from tests.integration.test_sentinel import LOST, Pusher, _no_tracebacks
from tests.support import Client, FaktoryServer, ReplyError, fetch_all, get, job, wait_for

pytestmark = pytest.mark.skipif(redis_binary() is None, reason=SKIP_REASON)

FF_SLOT = slot_of(keys.CLUSTER_TAG)
NOT_CONFIRMED = "not confirmed by 1 Redis replica"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    c = RedisCluster(tmp_path / "redis")
    try:
        yield c.start()
    finally:
        c.stop()


def start_nodes(cluster: RedisCluster, servers: list[FaktoryServer], base: Path,
                args: list[str] | None = None, web: bool = False, n: int = 2, query: str = ""
                ) -> list[FaktoryServer]:
    for i in range(n):
        servers.append(FaktoryServer(str(base / f"ff{i}"), processes=1, args=args, web=web,
                                     env={"REDIS_URL": cluster.url + query}).start())
    return servers


def wait_promoted(cluster: RedisCluster, replica: Node, slot: int, timeout: float = 20) -> None:
    """Every running node names ``replica`` the primary of ``slot``, the cluster stable
    (kill_primary_and_wait_failover's wait, for a primary killed here: that helper asks every
    node for its view before killing, which a SIGSTOPped replica would not answer)."""
    wait_for(lambda: cluster.stable() and all(
        owners(n.view())[slot] == replica.node_id for n in cluster.running()),
        timeout=timeout, interval=0.05)


class ErrorsByJid:
    """Stands in for a Pusher's client: records the jid of every push refused with -ERR."""

    def __init__(self, client: Client, errored: set[str]) -> None:
        self.client = client
        self.errored = errored

    def call(self, line: str) -> Any:
        try:
            return self.client.call(line)
        except ReplyError:
            self.errored.add(json.loads(line.split(" ", 1)[1])["jid"])
            raise


def reconnections(srv: FaktoryServer, port: int) -> int:
    return sum(f"Reconnected to Redis at 127.0.0.1:{port}" in line for line in srv.lines)


# -- failover under load -----------------------------------------------------------------------

PARTITIONED_QUEUE = next(f"failover{i}" for i in range(100) if partition_of(f"failover{i}", 3) == 2)


@pytest.mark.parametrize("wait_replicas, partitions", [(1, 1), (0, 1), (1, 3)],
                         ids=["wait-for-replica", "no-wait", "partition-2-wait-for-replica"])
def test_failover_under_load_loses_no_acknowledged_push(
        cluster: RedisCluster, servers: list[FaktoryServer], tmp_path: Path,
        wait_replicas: int, partitions: int) -> None:
    """Two nodes; 10,000 jobs pushed through both while the primary of the ``{ff}`` slot (or,
    with partitions, of partition 2's, where the queue is) is SIGKILLed. The cluster promotes
    its replica, each process asks the cluster where the slot is now, clients keep their
    connections (pushes in between get -ERR and are retried). With --redis-wait-replicas 1
    every acknowledged job can be fetched afterwards; without it, the count of acknowledged
    jobs lost is reported. A retried push may have been stored by the try that got -ERR: such
    a job is stored twice, which is counted."""
    args = ["--redis-wait-replicas", str(wait_replicas), "--redis-wait-timeout", "500"]
    query, queue, slot = "", "failover", FF_SLOT
    if partitions > 1:
        query, queue = f"?partitions={partitions}", PARTITIONED_QUEUE
        slot = slot_of(partition_tags(partitions)[2])
    start_nodes(cluster, servers, tmp_path, args, query=query)
    old = cluster.primary_for_slot(slot)
    replica = cluster.replica_of(old)
    assert replica.info("replication")["role"] == "slave"

    jobs = [job(queue=queue, args=[i]) for i in range(10_000)]
    deadline = time.monotonic() + 45
    errored: set[str] = set()
    pushers = [Pusher(servers[i % 2], jobs[i::4], deadline) for i in range(4)]
    for p in pushers:
        p.client = ErrorsByJid(p.client, errored)  # type: ignore[assignment]
        p.start()

    def acknowledged() -> int:
        return sum(len(p.acked) for p in pushers)

    wait_for(lambda: acknowledged() >= 3000, timeout=30)
    assert replica.proc is not None
    if not wait_replicas:
        # The replica falls behind (its link broken, and stopped so that it does not reconnect
        # at once), then the primary dies: what it acknowledged meanwhile is on no replica.
        replica.proc.send_signal(signal.SIGSTOP)
        with old.client() as c:
            assert c.client_kill_filter(_type="replica") == 1
        stopped, cut_at = time.monotonic(), acknowledged()
        # ~0.3 s of pushes acknowledged by the primary alone (at least some of them)
        wait_for(lambda: time.monotonic() - stopped > 0.3 and acknowledged() > cut_at + 100,
                 interval=0.01)
    killed_at = acknowledged()
    old.kill()
    replica.proc.send_signal(signal.SIGCONT)
    t0 = time.monotonic()
    wait_promoted(cluster, replica, slot)
    failover_s = time.monotonic() - t0
    # Every process finds the promoted replica (the master too: its scheduler writes).
    for srv in servers:
        wait_for(lambda srv=srv: reconnections(srv, replica.port) >= 2, timeout=15)
    if wait_replicas:
        # The new primary has no replica: pushes are stored but refused, -ERR after 500 ms.
        # (A node restarted at once would rejoin and be in sync within those 500 ms.)
        wait_for(lambda: any(NOT_CONFIRMED in t for p in pushers for t in list(p.errors)),
                 timeout=10)
    # Restarted (as systemd would), the killed node rejoins as a replica of its successor.
    old.start()
    wait_for(lambda: cluster.in_sync(old), timeout=20)
    for p in pushers:
        p.join(60)
    for p in pushers:
        assert p.failure is None, repr(p.failure)
    acked = {jid for p in pushers for jid in p.acked}
    assert len(acked) == 10_000

    fetched = fetch_all(servers, queue)
    lost = acked - set(fetched)
    duplicated = {jid for jid, n in fetched.items() if n > 1}
    errors: Counter[str] = Counter()
    for p in pushers:
        errors.update(p.errors)
    print(f"\n[cluster, {partitions} partitions, {'wait' if wait_replicas else 'no wait'}] "
          f"primary :{old.port} killed "
          f"after {killed_at} acknowledged pushes, replica :{replica.port} promoted in "
          f"{failover_s:.1f} s; acknowledged {len(acked)}, fetchable {len(fetched)} "
          f"({sum(fetched.values())} fetches), acknowledged but lost {len(lost)}, duplicated "
          f"{len(duplicated)}, jids refused at least once {len(errored)}; refused pushes: "
          f"{dict(errors)}")
    if wait_replicas:
        assert not lost
    else:  # the case the option is for does happen: pushes acknowledged, then lost
        assert lost
    assert set(fetched) <= {j["jid"] for j in jobs}
    # A job is stored twice only by a push retried after an -ERR.
    assert duplicated <= errored, sorted(duplicated - errored)[:5]
    # Commands made during the failover (about 2.5 s here) wait for the promoted replica (the
    # server's hold, 5 s): those in flight at the kill get LOST, and those a slower failover
    # keeps waiting longer than the hold; nothing else.
    assert all(t == LOST or NOT_CONFIRMED in t for t in errors), errors
    for srv in servers:
        # Each process (the master, the server process) lost Redis once and came back once,
        # to the promoted replica: the restarted node, never a primary again, was not used.
        lines = "\n".join(srv.lines)
        assert lines.count("Lost the connection to Redis") == 2, lines
        assert lines.count("Reconnected to Redis at") == reconnections(srv, replica.port) == 2
        _no_tracebacks(srv)
        assert srv.proc is not None and srv.proc.poll() is None


# -- resharding --------------------------------------------------------------------------------

def _try_push(c: Client, payload: dict) -> str:
    """OK, or the error text."""
    try:
        return str(c.push(payload))
    except ReplyError as exc:
        return str(exc)


def test_the_slot_moving_to_another_primary_is_followed(
        cluster: RedisCluster, servers: list[FaktoryServer], tmp_path: Path) -> None:
    """The ``{ff}`` slot resharded to another primary while two nodes run and clients push.
    During the migration (some keys moved, the slot still the source's) Redis answers a push's
    FCALL -TRYAGAIN or -ASK: the server sends it again until the migration is done, and then
    -MOVED: it reconnects to the destination and sends it there. No client sees an error, and
    every job pushed before, during and after is fetched exactly once."""
    start_nodes(cluster, servers, tmp_path)
    clients = [s.client() for s in servers]
    acked: list[str] = []
    for i in range(100):
        payload = job(queue="moving", args=[i])
        assert clients[i % 2].push(payload) == "OK"
        acked.append(payload["jid"])
    src = cluster.primary_for_slot(FF_SLOT)
    dst = next(n for n in cluster.primaries() if n is not src)

    cluster.begin_migration(FF_SLOT, dst)
    slot_keys = src.call("CLUSTER", "GETKEYSINSLOT", FF_SLOT, 1000)
    assert isinstance(slot_keys, list) and slot_keys
    half = sorted(slot_keys)[: len(slot_keys) // 2]
    assert cluster.migrate_keys(FF_SLOT, half) == len(half)
    during: Counter[str] = Counter()
    tried: list[str] = []

    def push_during(c: Client, n: int) -> None:
        for i in range(n):
            payload = job(queue="moving", args=["during", i])
            tried.append(payload["jid"])
            reply = _try_push(c, payload)
            during[reply] += 1
            if reply == "OK":
                acked.append(payload["jid"])
    # Two clients (one per node) push while the slot is half moved, each push waiting in the
    # server until Redis runs it; the rest of the keys move once both have one waiting.
    pushers = [threading.Thread(target=push_during, args=(c, 20)) for c in clients]
    for t in pushers:
        t.start()
    wait_for(lambda: len(tried) >= 2, timeout=5)
    moved_rest = cluster.migrate_keys(FF_SLOT)
    cluster.finish_migration(FF_SLOT)
    for t in pushers:
        t.join(30)
    assert during == {"OK": 40}, during
    print(f"\n[cluster, resharding] {len(slot_keys)} keys in the slot, {len(half)} moved first; "
          f"pushes during the migration: {dict(during)}; {moved_rest} keys moved after")
    for srv in servers:
        assert srv.proc is not None and srv.proc.poll() is None

    for i, c in enumerate(clients):
        wait_for(lambda c=c, i=i: _try_push(c, job(queue="probe", args=[i])) == "OK",
                 timeout=15, interval=0.05)
    for i in range(100):
        payload = job(queue="moving", args=["after", i])
        assert clients[i % 2].push(payload) == "OK"
        acked.append(payload["jid"])
    fetched = fetch_all(servers, "moving")
    assert not [jid for jid in acked if fetched[jid] != 1]
    assert set(fetched) <= set(acked) | set(tried)
    assert max(fetched.values()) == 1
    with dst.client() as d:
        assert d.execute_command("CLUSTER", "COUNTKEYSINSLOT", FF_SLOT) > 0
    for srv in servers:
        wait_for(lambda srv=srv: reconnections(srv, dst.port) >= 2, timeout=15)
        assert srv.proc is not None and srv.proc.poll() is None
    for srv in servers:
        _no_tracebacks(srv)


# -- the web UI ---------------------------------------------------------------------------------

def _stats(srv: FaktoryServer) -> dict:
    status, body = get(f"http://127.0.0.1:{srv.web_port}/stats")
    assert status == 200, body
    return json.loads(body)


def test_the_web_ui_and_stats_follow_a_failover(
        cluster: RedisCluster, servers: list[FaktoryServer], tmp_path: Path) -> None:
    """/stats shows the cluster's data before a failover of the ``{ff}`` primary and, once the
    replica is promoted, after it (the web UI's client finds the new primary)."""
    (srv,) = start_nodes(cluster, servers, tmp_path, web=True, n=1)
    c = srv.client()
    for i in range(5):
        assert c.push(job(queue="web", args=[i])) == "OK"
    wait_for(lambda: get(f"http://127.0.0.1:{srv.web_port}/stats")[0] == 200, timeout=20)
    assert _stats(srv)["faktory"]["queues"] == {"web": 5}
    old = cluster.primary_for_slot(FF_SLOT)
    new = cluster.kill_primary_and_wait_failover(old)
    wait_for(lambda: _push_ok(c, job(queue="web")), timeout=15, interval=0.05)

    def shows_six() -> bool:
        try:
            return _stats(srv)["faktory"]["queues"] == {"web": 6}
        except AssertionError:
            return False

    wait_for(shows_six, timeout=15, interval=0.1)
    assert reconnections(srv, new.port) >= 2
    _no_tracebacks(srv)
    assert srv.proc is not None and srv.proc.poll() is None


def _push_ok(c: Client, payload: dict) -> bool:
    reply = _try_push(c, payload)
    assert reply in ("OK", LOST), reply
    return reply == "OK"


# -- configuration ------------------------------------------------------------------------------

def test_cluster_url_forms() -> None:
    """``redis+cluster://`` and ``rediss+cluster://``: nodes (IPv6 in brackets, the port 6379 by
    default), the password, database 0 only; shown without the password."""
    t = parse_redis_url("redis+cluster://:pw%21@10.0.0.1:7000,[::1]:7001,h3")
    assert t["cluster"] == [("10.0.0.1", 7000), ("::1", 7001), ("h3", 6379)]
    assert (t["password"], t["db"], t["ssl"]) == ("pw!", 0, False)
    assert parse_redis_url("rediss+cluster://h:1/0")["ssl"] is True
    assert redis_location("rediss+cluster://:pw@h1:1,[::1]:2") == "rediss+cluster://h1:1,[::1]:2"
    assert (t["partitions"], t["pinned"]) == (1, {})
    t = parse_redis_url("redis+cluster://h:1?partitions=3&queue.critical=1&queue.a%2Eb=0")
    assert (t["partitions"], t["pinned"]) == (3, {"critical": 1, "a.b": 0})
    assert redis_location("redis+cluster://:pw@h:1?partitions=3&queue.critical=2") == \
        "redis+cluster://h:1?partitions=3&queue.critical=2"
    for bad, why in (("redis+cluster://h:1/2", "database 0 only"),
                     ("redis+cluster://h:notaport", "not a cluster node's host:port"),
                     ("redis+cluster://", "not a cluster node's host:port"),
                     ("redis+cluster://h:1?partitions=0", "at least 1"),
                     ("redis+cluster://h:1?partitions=257", "up to 256"),
                     ("redis+cluster://h:1?partitions=2&queue.x=2", "the partitions are 0 to 1"),
                     ("redis+cluster://h:1?shards=2", "unknown parameter 'shards'")):
        with pytest.raises(ValueError, match=why):
            parse_redis_url(bad)
