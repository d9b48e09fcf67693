"""Interoperation: jobs pushed by the client package are worked by the npm ``faktory-worker``
and by PyPI's ``faktory`` and ``pyfaktory`` workers, and jobs they push are worked by the
package's Worker (payload fields intact, ACK and FAIL seen by the server)."""
from __future__ import annotations

import asyncio
import queue as queue_mod
import uuid
from collections.abc import Iterator
from typing import Any

import faktory
import pytest

from faktory_fast_client import AsyncClient, Client, Job, Worker, current_job
from tests.deployments import on_each_deployment
from tests.integration.test_client import zset_jobs
from tests.integration.test_client_worker import Running
from tests.integration.test_compat_node import _node_ready, node_client, start_node_worker
from tests.integration.test_compat_python import (
    Recorder,
    counter,
    faktory_worker,
    pyfaktory,
    pyfaktory_consumer,
    pyfaktory_producer,
)
from tests.support import FaktoryServer, wait_for

# The protocol of this module, on a single Redis and on a Redis Cluster.
server = on_each_deployment(partitions=True)


needs_node = pytest.mark.skipif(_node_ready() is not None, reason=str(_node_ready()))


@pytest.fixture
def our_worker(srv: FaktoryServer) -> Iterator[tuple[Worker, queue_mod.Queue[Any]]]:
    """The package's Worker on queue "interop": PkOk records the job, PkFail raises."""
    w = Worker(srv.url, queues=["interop"], concurrency=2, beat_interval=0.5)
    seen: queue_mod.Queue[Any] = queue_mod.Queue()

    @w.register("PkOk")
    def ok(*args: Any) -> None:
        seen.put(current_job())

    @w.register("PkFail")
    async def fail(*args: Any) -> None:
        seen.put(current_job())
        raise RuntimeError(f"package boom {args}")

    r = Running(w)
    yield w, seen
    r.stop()


# ---------------------------------------------------------------------------------------------
# the package pushes, others work


@needs_node
def test_package_push_node_worker(srv: FaktoryServer, fc: Client, node_workers: list) -> None:
    job = Job("NodeOk", [1, "pk", {"nested": [True, None]}], queue="nq", retry=3,
              custom={"from": "faktory_fast_client"})
    fc.push(job)
    failing = Job("NodeFail", [9], queue="nq", retry=1)

    async def push_async() -> None:
        async with AsyncClient(srv.url) as c:
            await c.push(failing)
    asyncio.run(push_async())
    w = start_node_worker(node_workers, srv.url, queues=["nq"])
    got = {w.expect("job")["jid"]: None for _ in range(2)}
    assert set(got) == {job.jid, failing.jid}
    payload = next(e for e in w.events if e.get("jid") == job.jid and e["event"] == "job")
    assert payload["args"] == [1, "pk", {"nested": [True, None]}]
    assert payload["custom"] == {"from": "faktory_fast_client"} and payload["retry"] == 3
    wait_for(lambda: counter(srv, "processed") == 2)
    assert zset_jobs(srv, "retries")[failing.jid]["failure"]["errtype"] == "NodeBoom"


def test_package_push_faktory_and_pyfaktory_workers(srv: FaktoryServer, fc: Client) -> None:
    fc.push(Job("FkOk", [1, "x"], queue="fkq"))
    ok = Recorder()
    with faktory_worker(srv.url, {"FkOk": ok}, queues=["fkq"]):
        assert ok.wait_calls(1) == [(1, "x")]
        wait_for(lambda: counter(srv, "processed") == 1)
    fc.push_bulk([Job("PyOk", [2, {"k": "v"}], queue="pfq")])
    with pyfaktory_consumer(srv, queues=["pfq"]) as pc:
        assert pc.next_event() == ("ok", [2, {"k": "v"}])
        wait_for(lambda: counter(srv, "processed") == 2)


# ---------------------------------------------------------------------------------------------
# others push, the package works


@needs_node
def test_node_push_package_worker(srv: FaktoryServer, our_worker: Any) -> None:
    _, seen = our_worker
    [res] = node_client(srv.url, {"op": "job", "jobtype": "PkOk", "args": [1, "two", {"3": 4}],
                                  "custom": {"from": "node"}, "queue": "interop"})
    job = seen.get(timeout=15)
    assert (job.jid, job.args, job.custom) == (res["result"], [1, "two", {"3": 4}], {"from": "node"})
    wait_for(lambda: counter(srv, "processed") == 1)


def test_faktory_and_pyfaktory_push_package_worker(srv: FaktoryServer, our_worker: Any) -> None:
    _, seen = our_worker
    jid = uuid.uuid4().hex
    with faktory.connection(srv.url) as client:
        assert client.queue("PkOk", args=[1, "fk"], queue="interop", jid=jid, custom={"a": 1})
    job = seen.get(timeout=15)
    assert (job.jid, job.args, job.custom) == (jid, [1, "fk"], {"a": 1})
    with pyfaktory_producer(srv.url) as producer:
        pjob = pyfaktory.Job(jobtype="PkFail", args=["pf"], queue="interop", retry=2)
        assert producer.push(pjob)
    failed = seen.get(timeout=15)
    assert failed.jid == pjob.jid and failed.args == ["pf"]
    failure = wait_for(lambda: zset_jobs(srv, "retries").get(pjob.jid))["failure"]
    assert failure["errtype"] == "RuntimeError" and "package boom" in failure["message"]
    assert counter(srv, "processed") == 2
