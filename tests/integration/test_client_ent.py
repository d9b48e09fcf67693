"""The client package's Enterprise API against a real server: batches in the Go client's
shape (create, push, commit, status, reopen, nested children, the complete and success
callbacks run by the package's own Worker) and job tracking (TRACK GET/SET, reserve_until)."""
from __future__ import annotations

import asyncio
import queue as queue_mod
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from faktory_fast_client import (
    AsyncClient,
    BatchError,
    Client,
    FaktoryError,
    Job,
    Worker,
    current_job,
)
from tests.integration.test_client_worker import Running
from tests.support import FaktoryServer, wait_for


@pytest.fixture
def worker(srv: FaktoryServer) -> Iterator[tuple[Worker, queue_mod.Queue[tuple[Any, ...]]]]:
    """A worker on queues bq (the batches' jobs) and cb (their callbacks) reporting every job
    it runs as (jobtype, args, bid, callback bid); the test starts and stops it."""
    w = Worker(srv.url, queues=["bq", "cb"], concurrency=2, beat_interval=0.5)
    ran: queue_mod.Queue[tuple[Any, ...]] = queue_mod.Queue()

    def record(*args: Any) -> None:
        job = current_job()
        ran.put((job.jobtype, list(args), job.bid, job.callback_bid))

    for jobtype in ("Member", "Complete", "Success", "ChildComplete", "ParentSuccess"):
        w.register(jobtype, record)
    yield w, ran
    if w.ready.is_set():  # a test that failed before stopping it
        w.terminate()


def drain(ran: queue_mod.Queue[tuple[Any, ...]], n: int) -> list[tuple[Any, ...]]:
    return [ran.get(timeout=20) for _ in range(n)]


def test_batch_callbacks_run_after_its_jobs(fc: Client, worker: Any) -> None:
    w, ran = worker
    batch = fc.new_batch(complete=Job("Complete", ["c"], queue="cb"),
                         success=Job("Success", ["s"], queue="cb"), description="three members")
    with pytest.raises(BatchError, match="opened"):
        batch.push(Job("Member", queue="bq"))
    with batch.jobs():
        assert batch.bid.startswith("b-")
        for i in range(2):
            batch.push(Job("Member", [i], queue="bq"))
        assert batch.push_bulk([Job("Member", [2], queue="bq")]) == {}
        status = batch.status()
        assert (status.total, status.pending, status.complete_st) == (3, 3, "")
    with pytest.raises(BatchError, match="committed"):
        batch.push(Job("Member", queue="bq"))
    status = fc.batch_status(batch.bid)
    assert status.description == "three members" and status.parent_bid is None
    r = Running(w)
    try:
        done = drain(ran, 5)
    finally:
        r.stop()
    members = [d for d in done if d[0] == "Member"]
    assert sorted(m[1][0] for m in members) == [0, 1, 2] and all(m[2] == batch.bid for m in members)
    callbacks = [d for d in done if d[0] != "Member"]
    # complete first; success only after the complete callback succeeded
    assert callbacks == [("Complete", ["c"], None, batch.bid), ("Success", ["s"], None, batch.bid)]
    assert done.index(callbacks[0]) > max(done.index(m) for m in members)
    status = fc.batch_status(batch.bid)
    assert (status.pending, status.failed, status.complete_st, status.success_st) == (0, 0, "2", "2")


def test_reopen_and_nested_children(fc: Client, worker: Any) -> None:
    w, ran = worker
    parent = fc.new_batch(success=Job("ParentSuccess", queue="cb"))
    with parent.jobs():
        parent.push(Job("Member", ["p"], queue="bq"))
        child = parent.new_child(complete=Job("ChildComplete", queue="cb"))
        with child.jobs():
            child.push(Job("Member", ["c"], queue="bq"))
    assert fc.batch_status(child.bid).parent_bid == parent.bid
    reopened = fc.batch_open(parent.bid)
    assert reopened.bid == parent.bid
    reopened.push(Job("Member", ["late"], queue="bq"))
    reopened.commit()
    with pytest.raises(BatchError):
        reopened.commit()
    assert fc.batch_status(parent.bid).total == 2  # its own jobs (the child counts its own)
    r = Running(w)
    try:
        done = drain(ran, 5)
    finally:
        r.stop()
    kinds = [d[0] for d in done]
    assert kinds.count("Member") == 3
    assert kinds.index("ChildComplete") < kinds.index("ParentSuccess")  # children first
    with pytest.raises(BatchError, match="callback"):
        fc.new_batch().create()
    with pytest.raises(FaktoryError):
        fc.batch_status("b-no-such-batch")


def test_a_job_adds_to_its_own_batch(fc: Client, worker: Any) -> None:
    """As Go's helper.Batch: a member job (async, through worker.async_pool) opens its batch
    and pushes one more member; the callback waits for that one too."""
    w, ran = worker

    @w.register("Grow")
    async def grow(n: int) -> None:
        assert w.async_pool is not None
        async with w.async_pool.connection() as c:
            batch = await c.batch_open(current_job().bid or "")
            await batch.push(Job("Member", [n + 1], queue="bq"))
            await batch.commit()

    batch = fc.new_batch(success=Job("Success", queue="cb"))
    with batch.jobs():
        batch.push(Job("Grow", [1], queue="bq"))
    r = Running(w)
    try:
        done = drain(ran, 2)
    finally:
        r.stop()
    assert [d[0] for d in done] == ["Member", "Success"] and done[0][1] == [2]
    status = fc.batch_status(batch.bid)
    assert (status.total, status.success_st) == (2, "2")


def test_async_batch(srv: FaktoryServer, fc: Client) -> None:
    async def main() -> str:
        async with AsyncClient(srv.url) as c:
            batch = c.new_batch(complete=Job("Complete", queue="cb"))
            async with batch.jobs():
                await batch.push(Job("Member", [1], queue="bq"))
                assert await batch.push_bulk([Job("Member", [2], queue="bq"),
                                              Job("", queue="bq")]) != {}
            status = await c.batch_status(batch.bid)
            assert (status.total, status.pending) == (2, 2)
            again = await c.batch_open(batch.bid)
            await again.push(Job("Member", [3], queue="bq"))
            await again.commit()
            assert (await again.status()).total == 3
            return batch.bid
    bid = asyncio.run(main())
    member = fc.fetch("bq")
    assert member is not None and member.bid == bid


def test_tracking_from_a_running_job(srv: FaktoryServer, fc: Client) -> None:
    w = Worker(srv.url, queues=["tq"], concurrency=1, beat_interval=0.5)
    progressed = threading.Event()
    release = threading.Event()
    until = datetime.now(UTC) + timedelta(hours=2)

    @w.register("Tracked")
    def tracked() -> None:
        with w.pool.connection() as c:  # the worker's pool, for handlers on threads
            c.track_set(current_job().jid, 40, "two of five", reserve_until=until)
        progressed.set()
        release.wait(10)

    job = Job("Tracked", queue="tq").track()
    fc.push(job)
    assert fc.track_get(job.jid).state == "enqueued"
    r = Running(w)
    try:
        assert progressed.wait(10)
        got = fc.track_get(job.jid)
        assert (got.state, got.percent, got.desc) == ("working", 40, "two of five")
        redis = srv.redis()
        try:  # reserve_until extended the reservation
            assert redis.zscore("working", job.jid) == pytest.approx(until.timestamp(), abs=2)
        finally:
            redis.close()
        release.set()
        wait_for(lambda: fc.track_get(job.jid).state == "success")
    finally:
        release.set()
        r.stop()
    assert fc.track_get("no-such-jid").state == "unknown"

    async def main() -> tuple[str, int | None]:
        async with AsyncClient(srv.url) as c:
            await c.push(j := Job("Tracked", queue="tq2").track())
            await c.fetch("tq2")
            await c.track_set(j.jid, percent=90)
            got = await c.track_get(j.jid)
            return got.state, got.percent
    assert asyncio.run(main()) == ("working", 90)
