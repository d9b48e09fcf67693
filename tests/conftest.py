"""Shared fixtures: one real server (2 processes, child Redis) for the session, flushed per test;
the compiled and the pure-Python implementation of the codecs, side by side.

The tests' tiers are their folders, and each test is marked with its folder's name (``-m unit``):
unit/ (no server process: pure modules, in-process over a real Redis; seconds), integration/
(real servers, real client libraries), browser/ (the web UI in headless Chromium), slow/ (builds
and installs the package)."""
from __future__ import annotations

import functools
import importlib
import importlib.util
import os
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from tests.support import Client, FaktoryServer

TIERS = ("unit", "integration", "browser", "slow")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = item.path.parent.name
        if tier in TIERS:
            item.add_marker(tier)


@pytest.fixture(scope="session")
def single_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaktoryServer]:
    """The session's server: 2 processes on its child Redis."""
    srv = FaktoryServer(str(tmp_path_factory.mktemp("faktory")), processes=2).start()
    yield srv
    srv.close_clients()
    srv.stop()


@pytest.fixture(scope="session")
def server(single_server: FaktoryServer) -> FaktoryServer:
    """The server most tests use (a module may run on each deployment instead:
    ``tests.deployments.on_each_deployment``)."""
    return single_server


@pytest.fixture(scope="session")
def cluster_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Two faktory_fast nodes on a Redis Cluster of 3 primaries + 3 replicas (tests/cluster.py),
    started once for the session by the first test that asks."""
    from tests.cluster import SKIP_REASON, RedisCluster, redis_binary
    from tests.deployments import ClusterNodes

    if redis_binary() is None:
        pytest.skip(SKIP_REASON)
    base = tmp_path_factory.mktemp("cluster")
    cluster = RedisCluster(base / "redis")
    nodes = ClusterNodes(str(base), cluster)
    try:
        cluster.start()
        yield nodes.start()
    finally:
        nodes.close_clients()
        nodes.stop()  # those started
        cluster.stop()


@pytest.fixture(scope="session")
def partitioned_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Two faktory_fast nodes on another Redis Cluster of 3 primaries + 3 replicas, the queues
    over three partitions (``?partitions=3``), started once for the session when asked."""
    from tests.cluster import SKIP_REASON, RedisCluster, redis_binary
    from tests.deployments import ClusterNodes

    if redis_binary() is None:
        pytest.skip(SKIP_REASON)
    base = tmp_path_factory.mktemp("partitioned")
    cluster = RedisCluster(base / "redis")
    nodes = ClusterNodes(str(base), cluster, "?partitions=3")
    try:
        cluster.start()
        yield nodes.start()
    finally:
        nodes.close_clients()
        nodes.stop()
        cluster.stop()


@pytest.fixture
def srv(server: FaktoryServer) -> Iterator[FaktoryServer]:
    """The server, flushed; clients opened through it are closed afterwards."""
    c = server.client()
    assert c.call("FLUSH") == "OK"
    yield server
    server.close_clients()


@pytest.fixture
def client(srv: FaktoryServer) -> Client:
    """A connection to the flushed server (a module's own ``server`` fixture takes precedence)."""
    return srv.client()


@pytest.fixture
def node_workers() -> Iterator[list[Any]]:
    """The Node.js workers a test starts (``tests.integration.test_compat_node.start_node_worker``), stopped
    after it."""
    started: list[Any] = []
    yield started
    for w in started:
        w.stop()


@functools.cache
def _implementations(name: str) -> dict[str, ModuleType]:
    module = importlib.import_module(f"faktory_fast.{name}")
    assert module.__file__ is not None
    if module.__file__.endswith(".py"):  # not built, a stale build, or FAKTORY_FAST_PURE
        return {"python": module}
    # Its .py, loaded apart from the compiled module that faktory_fast.<name> is.
    spec = importlib.util.spec_from_file_location(
        module.__name__,
        os.path.join(os.path.dirname(module.__file__), name.rpartition(".")[2] + ".py"))
    assert spec is not None and spec.loader is not None
    source = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(source)
    return {"cython": module, "python": source}


def implementation(name: str, which: str) -> ModuleType:
    """The module ``faktory_fast.<name>`` of faktory_fast.COMPILED compiled (``"cython"``) or
    from its ``.py`` (``"python"``); skips the test when the compiled module is not what
    imports here (not built: ``make build``; built from other sources; FAKTORY_FAST_PURE)."""
    found = _implementations(name)
    if which not in found:
        pytest.skip(f"faktory_fast.{name} does not import compiled here (make build; "
                    "FAKTORY_FAST_PURE unset)")
    return found[which]


@pytest.fixture(params=["cython", "python"])
def wire_impl(request: pytest.FixtureRequest) -> ModuleType:
    """faktory_fast.codec.wire, compiled and then from its .py (the client-command codec)."""
    return implementation("codec.wire", request.param)


@pytest.fixture(params=["cython", "python"])
def resp_impl(request: pytest.FixtureRequest) -> ModuleType:
    """faktory_fast.codec.resp, compiled and then from its .py (the Redis codec)."""
    return implementation("codec.resp", request.param)
