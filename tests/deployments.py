"""The deployments the protocol, Enterprise and client-library tests run against, side by side:
one server on its child Redis (``single``), and two faktory_fast nodes sharing a real Redis
Cluster (``cluster``: tests/cluster.py's 3 primaries + 3 replicas, ``REDIS_URL=redis+cluster://``);
black-box modules also on two nodes with the queues over three partitions of another cluster
(``partitions``: ``?partitions=3``, docs/deploy.md section 6).

A test module runs on each by declaring ``server = on_each_deployment()`` (with
``partitions=True``: on the third too). The cluster's
``ClusterNodes`` stands in for ``FaktoryServer``: its clients alternate between the two nodes (a
job pushed through one is fetched and acknowledged through the other), and its ``redis()`` names
keys as the single Redis does (the cluster's ``{ff}`` tag added), so white-box assertions hold.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from faktory_fast.storage import keys
from faktory_fast.storage.store import SyncStore
from tests.cluster import RedisCluster, slot_of
from tests.support import Client, FaktoryServer

DEPLOYMENTS = ("single", "cluster")
FIXTURES = {"single": "single_server", "cluster": "cluster_nodes",
            "partitions": "partitioned_nodes"}

# Commands whose every argument after the name is a key; those that name no key; the rest name
# one key, first (all the white-box tests use).
_ALL_KEYS = {"DEL", "UNLINK", "EXISTS", "MGET", "TOUCH", "WATCH"}
_NO_KEY = {"PING", "INFO", "FUNCTION", "CONFIG", "CLIENT", "DBSIZE", "SLOWLOG", "PUBLISH",
           "COMMAND", "MEMORY", "TIME", "ROLE", "WAIT", "SCRIPT", "FLUSHDB", "FLUSHALL"}


def _tagged(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """A command's arguments with the cluster's tag on each key it names."""
    name = _text(args[0]).split()[0].upper()
    tag = keys.CLUSTER_TAG
    if name in _ALL_KEYS:
        return (args[0], *(tag + _text(k) for k in args[1:]))
    if name in ("FCALL", "FCALL_RO"):
        n = int(args[2])
        return (*args[:3], *(tag + _text(k) for k in args[3:3 + n]), *args[3 + n:])
    if name in ("SCAN", "KEYS"):
        return tuple(tag + _text(a) if i and (_text(args[i - 1]).upper() == "MATCH"
                                              or (name == "KEYS" and i == 1)) else a
                     for i, a in enumerate(args))
    if name not in _NO_KEY and len(args) > 1:
        return (args[0], tag + _text(args[1]), *args[2:])
    return args


class TaggedRedis(redis.Redis):
    """redis-py on the primary that holds the cluster's ``{ff}`` slot, naming keys untagged:
    ``r.llen("q:default")`` reads ``{ff}q:default`` (in pipelines too)."""

    def execute_command(self, *args: Any, **options: Any) -> Any:
        return super().execute_command(*_tagged(args), **options)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        return _TaggedPipeline(self.connection_pool, self.response_callbacks, transaction,
                               shard_hint)


class _TaggedPipeline(redis.client.Pipeline):
    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        return super().execute_command(*_tagged(args), **kwargs)


class PartitionedRedis:
    """The reads white-box tests make, over every partition of a cluster (each on its tag's
    primary): ``get`` sums a counter, ``zrange`` and ``lrange`` join the partitions' parts;
    other commands go to the home partition."""

    def __init__(self, cluster: RedisCluster, tags: list[str]) -> None:
        self.parts = [(tag, redis.Redis(port=cluster.primary_for_slot(slot_of(tag)).port,
                                        socket_timeout=5)) for tag in tags]

    def get(self, name: str) -> bytes | None:
        values = [r.get(tag + name) for tag, r in self.parts]
        known = [int(v) for v in values if v is not None]
        return str(sum(known)).encode() if known else None

    def zrange(self, name: str, start: int, end: int) -> list[bytes]:
        return [m for tag, r in self.parts for m in r.zrange(tag + name, start, end)]

    def lrange(self, name: str, start: int, end: int) -> list[bytes]:
        return [m for tag, r in self.parts for m in r.lrange(tag + name, start, end)]

    def execute_command(self, *args: Any) -> Any:
        """A command on the home partition (``{ff}``), its keys tagged (a FCALL of the
        workers' functions, say)."""
        return self.parts[0][1].execute_command(*_tagged(args))

    def close(self) -> None:
        for _, r in self.parts:
            r.close()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class ClusterNodes:
    """Two faktory_fast nodes (one server process each) on one Redis Cluster, in the place of
    a ``FaktoryServer``: ``client()`` alternates between them."""

    def __init__(self, base: str, cluster: RedisCluster, query: str = "") -> None:
        self.cluster = cluster
        self.partitions = int(query.partition("partitions=")[2] or 1)
        env = {"REDIS_URL": cluster.url + query}
        self.nodes = [FaktoryServer(os.path.join(base, name), processes=1, env=env)
                      for name in ("a", "b")]
        self._next = 0

    def start(self) -> ClusterNodes:
        for node in self.nodes:
            node.start()
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    # What tests use of a FaktoryServer -------------------------------------------------------
    @property
    def port(self) -> int:
        return self.nodes[0].port

    @property
    def url(self) -> str:
        return self.nodes[0].url

    @property
    def password(self) -> str | None:
        return None

    @property
    def data_dir(self) -> str:
        return self.nodes[0].data_dir

    @property
    def lines(self) -> list[str]:
        return self.nodes[0].lines + self.nodes[1].lines

    def client(self, **kw: Any) -> Client:
        node = self.nodes[self._next]
        self._next = 1 - self._next
        return node.client(**kw)

    def close_clients(self) -> None:
        for node in self.nodes:
            node.close_clients()

    def redis(self) -> Any:
        if self.partitions > 1:
            return PartitionedRedis(self.cluster, keys.partition_tags(self.partitions))
        primary = self.cluster.primary_for_slot(slot_of(keys.CLUSTER_TAG))
        return TaggedRedis(port=primary.port, socket_timeout=5)

    def store(self) -> SyncStore:
        return SyncStore.connect(self.cluster.url)

    def server_process_pids(self) -> list[int]:
        return [pid for node in self.nodes for pid in node.server_process_pids()]


def on_each_deployment(partitions: bool = False) -> Callable[..., Iterator[Any]]:
    """A module's ``server`` fixture: the session's single server, then the cluster's nodes
    (``cluster_nodes``), and with ``partitions`` the nodes of a cluster of three partitions
    (``partitioned_nodes``: for modules that read nothing of Redis's keys themselves), each
    for all of the module's tests."""
    @pytest.fixture(scope="module", params=(*DEPLOYMENTS, "partitions")[:3 if partitions else 2])
    def server(request: pytest.FixtureRequest) -> Iterator[Any]:
        yield request.getfixturevalue(FIXTURES[request.param])
    return server
