"""The Redis Cluster harness (tests/cluster.py) does what later tests rely on: real shards,
the slot owners it names, ``-ASK`` then ``-MOVED`` around a slot migration, and a failover."""
# ruff: noqa: F811
from __future__ import annotations

import socket
from pathlib import Path

import pytest
from redis.cluster import ClusterNode
from redis.cluster import RedisCluster as ClusterClient
from redis.exceptions import AskError, MovedError

from tests.cluster import SKIP_REASON, Node, RedisCluster, redis_binary, running_cluster, slot_of

# The fixture, imported under its name, which the tests' parameters then shadow (F811).
from tests.integration.cluster_fixtures import redis_cluster  # noqa: F401
from tests.support import wait_for

pytestmark = pytest.mark.skipif(redis_binary() is None, reason=SKIP_REASON)


def cluster_client(cluster: RedisCluster) -> ClusterClient:
    return ClusterClient(startup_nodes=[ClusterNode(h, p) for h, p in cluster.seeds],
                         socket_timeout=5)


def key_per_primary(cluster: RedisCluster, prefix: str) -> dict[Node, str]:
    """A key served by each primary."""
    keys: dict[Node, str] = {}
    i = 0
    while len(keys) < 3:
        key = f"{prefix}{i}"
        keys.setdefault(cluster.primary_for_slot(slot_of(key)), key)
        i += 1
    return keys


def test_cluster_client_writes_to_all_three_shards(redis_cluster: RedisCluster) -> None:
    keys = key_per_primary(redis_cluster, "shard")
    assert set(keys) == set(redis_cluster.nodes[:3])
    assert redis_cluster.url == "redis+cluster://" + ",".join(
        f"127.0.0.1:{n.port}" for n in redis_cluster.nodes[:3])
    rc = cluster_client(redis_cluster)
    try:
        for node, key in keys.items():
            assert rc.set(key, f"on {node.port}")
        for node, key in keys.items():  # each landed on the node the harness names
            with node.client() as c:
                assert c.get(key) == f"on {node.port}".encode()
    finally:
        rc.close()


def test_slot_owner_is_the_primary_named(redis_cluster: RedisCluster) -> None:
    for key in ("plain", "{tag}.a", "{tag}.b", "x{}y"):
        slot = slot_of(key)
        owner = redis_cluster.primary_for_slot(slot)
        with owner.client() as c:
            assert c.execute_command("CLUSTER", "KEYSLOT", key) == slot
            assert c.set(key, "v")  # the owner takes the write itself
        for other in redis_cluster.primaries():
            if other is not owner:
                with other.client() as c, pytest.raises(MovedError) as moved:
                    c.execute_command("GET", key)
                assert (moved.value.slot_id, moved.value.port) == (slot, owner.port)
    assert slot_of("{tag}.a") == slot_of("{tag}.b") == slot_of("tag")


def test_migration_answers_ask_then_moved(redis_cluster: RedisCluster) -> None:
    moved_key, staying_key = "{mig}moved", "{mig}staying"
    slot = slot_of(moved_key)
    src = redis_cluster.primary_for_slot(slot)
    dst = next(n for n in redis_cluster.primaries() if n is not src)
    with src.client() as s, dst.client() as d:
        s.set(moved_key, "1")
        s.set(staying_key, "2")
        redis_cluster.begin_migration(slot, dst)
        assert redis_cluster.migrate_keys(slot, [moved_key]) == 1
        assert s.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 1
        assert d.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 1

        assert s.execute_command("GET", staying_key) == b"2"  # not moved yet: still served
        with pytest.raises(AskError) as ask:
            s.execute_command("GET", moved_key)
        assert type(ask.value) is AskError  # (MovedError is an AskError too)
        assert (ask.value.slot_id, ask.value.port) == (slot, dst.port)
        with pytest.raises(MovedError) as back:  # the importing node wants ASKING first
            d.execute_command("GET", moved_key)
        assert back.value.port == src.port
        pipe = d.pipeline(transaction=False)
        pipe.execute_command("ASKING")
        pipe.execute_command("GET", moved_key)
        assert pipe.execute()[1] == b"1"

        assert redis_cluster.migrate_keys(slot) == 1  # the rest of the slot
        assert s.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
        redis_cluster.finish_migration(slot)
        assert redis_cluster.primary_for_slot(slot) is dst
        with pytest.raises(MovedError) as moved:
            s.execute_command("GET", staying_key)
        assert (moved.value.slot_id, moved.value.port) == (slot, dst.port)
        assert d.mget(moved_key, staying_key) == [b"1", b"2"]


# Destructive: a cluster of its own, so the shared one stays whole whatever the order.
def test_killed_primary_is_replaced_by_its_replica_and_rejoins(tmp_path: Path) -> None:
    with running_cluster(tmp_path / "cluster") as cluster:
        key = "{failover}list"
        victim = cluster.primary_for_slot(slot_of(key))
        replica = cluster.replica_of(victim)
        with victim.client() as c:
            c.rpush(key, *range(100))
            assert c.execute_command("WAIT", 1, 1000) == 1  # the replica has it

        promoted = cluster.kill_primary_and_wait_failover(victim, timeout=15)

        assert promoted is replica
        assert cluster.primary_for_slot(slot_of(key)) is promoted
        assert promoted.info("replication")["role"] == "master"
        rc = cluster_client(cluster)  # the seeds still lead there, one of them dead
        try:
            assert rc.lrange(key, 0, -1) == [str(i).encode() for i in range(100)]
        finally:
            rc.close()

        victim.start()  # same conf and nodes.conf: it learns it was replaced
        wait_for(lambda: cluster.in_sync(victim) and cluster.replica_of(promoted) is victim,
                 timeout=15)
        assert victim.info("replication")["master_port"] == promoted.port
        cluster.wait_stable(10)


def test_a_node_whose_port_was_taken_starts_on_another(tmp_path: Path) -> None:
    """free_ports' port taken before the node binds it (by another socket meanwhile): the
    node's first start moves to new ports instead of failing the cluster."""
    binary = redis_binary()
    assert binary is not None
    node = Node(binary, tmp_path, "n0")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))  # (bound, not listening: a PING is refused)
        node.port = taken.getsockname()[1]
        try:
            node.start()
            assert node.port != taken.getsockname()[1] and node.call("PING")
        finally:
            node.stop()
