"""The unit tier's fixtures: a child Redis of each test module's own, flushed for each test,
and the web UI's store over it (the library loaded)."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis as redislib

from faktory_fast.master.redis_child import RedisChild
from faktory_fast.storage.store import SyncStore


@pytest.fixture(scope="module")
def redis_child(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisChild]:
    child = RedisChild(str(tmp_path_factory.mktemp("redis")))
    child.start()
    yield child
    child.stop()


@pytest.fixture
def r(redis_child: RedisChild) -> Iterator[redislib.Redis]:
    client = redislib.Redis(unix_socket_path=redis_child.socket_path)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def store(redis_child: RedisChild, r: redislib.Redis) -> SyncStore:
    s = SyncStore.connect(redis_child.url)
    s.load_library()
    return s
