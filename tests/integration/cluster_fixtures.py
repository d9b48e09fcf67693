"""The ``redis_cluster`` fixture (tests/cluster.py): import it into a conftest or test module."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster import SKIP_REASON, RedisCluster, redis_binary, running_cluster


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A started 3 + 3 node cluster shared by a module's tests (starting one takes seconds);
    every node is stopped afterwards, even when the start failed halfway."""
    if redis_binary() is None:
        pytest.skip(SKIP_REASON)
    with running_cluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster
