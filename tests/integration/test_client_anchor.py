"""The client package against the real Faktory 1.9.4 (the "anchor" binary that
/work/shared/anchor/build.sh builds; bench/README.md): producer, worker, password, the
Enterprise commands refused as OSS refuses them. Skipped, saying why, where the binary or
redis-server is missing, as bench skips."""
from __future__ import annotations

import asyncio
import os
import queue as queue_mod
from collections.abc import Iterator
from typing import Any

import pytest

from bench.servers import Faktory, Skip, default_anchor_bin, require
from faktory_fast_client import AsyncClient, Client, Job, ServerError, Worker, current_job
from tests.integration.test_client_worker import Running
from tests.support import wait_for

PASSWORD = "anch0r-pw"


class PasswordFaktory(Faktory):
    """Faktory with a password in its conf.d; the URL (bench's start-up probe) carries it."""

    @property
    def url(self) -> str:
        return f"tcp://:{PASSWORD}@127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def faktory() -> Iterator[Faktory]:
    try:
        binary = require(default_anchor_bin(), ["faktory"], "the client's tests against Faktory")
        server = PasswordFaktory(binary["faktory"], [])
    except Skip as why:
        pytest.skip(str(why))
    conf_d = os.path.join(server.dir, "conf", "conf.d")
    os.makedirs(conf_d)
    with open(os.path.join(conf_d, "password.toml"), "w") as fh:
        fh.write(f'[faktory]\npassword = "{PASSWORD}"\n')
    server.start()
    yield server
    server.stop()


@pytest.fixture
def url(faktory: Faktory) -> Iterator[str]:
    with Client(faktory.url) as c:
        c.flush()
    yield faktory.url


def test_producer_sync_and_async(url: str) -> None:
    with Client(url) as c:
        job = Job("Anchor", [1, {"x": "y"}], queue="aq", retry=2, custom={"k": 1})
        c.push(job)
        assert c.push_bulk([Job("Anchor", [2], queue="aq"), Job("", queue="aq")]) != {}
        assert c.info()["faktory"]["queues"]["aq"] == 2
        got = c.fetch("aq")
        assert got is not None and (got.jid, got.args, got.retry, got.custom) == \
            (job.jid, [1, {"x": "y"}], 2, {"k": 1})
        c.ack(got.jid)
        c.queue_pause("aq")
        assert c.fetch("aq") is None
        c.queue_resume("aq")
        assert set(c.queue_latency("aq")) == {"aq"}
        with pytest.raises(ServerError, match="only available in Faktory Enterprise"):
            c.new_batch(success=Job("S")).create()
        with pytest.raises(ServerError, match="only available in Faktory Enterprise"):
            c.track_get(job.jid)

    async def main() -> dict[str, Any]:
        async with AsyncClient(url) as a:
            await a.push(Job("Anchor", [3], queue="aq2"))
            return await a.info()
    assert asyncio.run(main())["faktory"]["queues"]["aq2"] == 1


def test_worker_ack_fail_and_quiet(url: str) -> None:
    w = Worker(url, queues=["wq"], concurrency=2, beat_interval=0.5)
    seen: queue_mod.Queue[str] = queue_mod.Queue()

    @w.register("Ok")
    def ok() -> None:
        seen.put(current_job().jid)

    @w.register("Fail")
    async def fail() -> None:
        raise ValueError("anchor boom")

    r = Running(w)
    try:
        with Client(url) as c:
            good, bad = Job("Ok", queue="wq"), Job("Fail", queue="wq")
            c.push(good)
            c.push(bad)
            assert seen.get(timeout=15) == good.jid
            wait_for(lambda: c.info()["faktory"]["sets"]["retries"] == 1, timeout=15)
            assert c.info()["faktory"]["total_failures"] == 1
            # Another connection BEATs for the worker's wid with quiet (wids are global).
            with Client(url, wid=w.wid) as other:
                assert other.beat("quiet") == "quiet"
            wait_for(lambda: w.state == "quiet", timeout=5)
    finally:
        r.stop()
