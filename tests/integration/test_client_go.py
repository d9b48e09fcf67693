"""Interoperation with Go (issue 26): jobs the client package pushes are worked by
faktory_worker_go 1.7.0, and jobs Faktory's Go client pushes are worked by the package's Worker.

The Go side is the "anchor" binaries that /work/shared/anchor/build.sh builds (bench/README.md):
``fwgo-drain`` (a faktory_worker_go worker whose handler does nothing) and ``faktory-load``
(Faktory 1.9.4's test/load: ``faktory-load N 1`` FLUSHes the server, then pushes N ``SomeJob``
jobs with the Go client's ``NewJob("SomeJob", []any{1, "string", 3})``, i.e. args
``[[1, "string", 3]]``, each to a random queue of queue0-queue4). Each test runs against
faktory_fast and against the real Faktory 1.9.4, so its expectations are checked against the
reference. Skipped, saying why, where a binary (or redis-server, for Faktory) is missing, as
test_client_anchor.py skips: CI has none of them."""
from __future__ import annotations

import asyncio
import itertools
import queue as queue_mod
import re
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from bench.servers import Faktory, Skip, default_anchor_bin, require, server_env
from faktory_fast_client import AsyncClient, Client, Job, Worker, current_job
from tests.integration.test_client_worker import Running
from tests.support import wait_for

LOAD_QUEUES = [f"queue{i}" for i in range(5)]


def anchor_binary(name: str, why: str) -> str:
    """The anchor binary ``name``; skips the test, naming what is missing, when it is absent."""
    try:
        return require(default_anchor_bin(), [name], why)[name]
    except Skip as missing:
        pytest.skip(str(missing))


def go_run(cmd: list[str], url: str, timeout: float = 20) -> str:
    """Run a Go binary against ``url`` (``FAKTORY_URL``, which the Go client reads); its stdout."""
    env = server_env()
    env.pop("FAKTORY_PROVIDER", None)
    env["FAKTORY_URL"] = url
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{' '.join(cmd)} did not finish within {timeout} s:\n"
                             f"{exc.stdout!r}\n{exc.stderr!r}") from None
    assert done.returncode == 0, f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def faktory() -> Iterator[Faktory]:
    """The real Faktory 1.9.4, no password, for this module."""
    try:
        binary = require(default_anchor_bin(), ["faktory"], "the Go interop tests against Faktory")
        server = Faktory(binary["faktory"], [])
    except Skip as why:
        pytest.skip(str(why))
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["faktory_fast", "faktory"])
def url(request: pytest.FixtureRequest) -> str:
    """A flushed server's URL: this checkout's faktory_fast, then Faktory 1.9.4."""
    if request.param == "faktory_fast":
        return str(request.getfixturevalue("srv").url)
    real: Faktory = request.getfixturevalue("faktory")
    with Client(real.url) as c:
        c.flush()
    return real.url


def counters(c: Client) -> tuple[int, int, int]:
    """(total_processed, total_failures, retries) from INFO; a FAIL counts as processed too."""
    info = c.info()["faktory"]
    return info["total_processed"], info["total_failures"], info["sets"]["retries"]


# ---------------------------------------------------------------------------------------------
# the package pushes, faktory_worker_go works


def test_package_push_fwgo_worker(url: str) -> None:
    drain = anchor_binary("fwgo-drain", "the faktory_worker_go interop test")
    # Pushed first: a jobtype fwgo-drain has no handler for, which faktory_worker_go FAILs.
    unknown = Job("GoUnknown", ["x"], queue="goq", retry=1)
    jobs = [
        Job("SomeJob", [1, "pk", {"nested": [True, None, 2.5]}], queue="goq", retry=3,
            reserve_for=120, backtrace=5, custom={"from": "faktory_fast_client", "n": [1]}),
        Job("SomeJob", queue="goq"),
        *[Job("SomeJob", [i, "é✓"], queue="goq") for i in range(3)],
    ]
    async_job = Job("SomeJob", [{"async": True}], queue="goq", retry=0)
    with Client(url) as c:
        c.push(unknown)
        c.push(jobs[0])
        c.push(jobs[1])
        assert c.push_bulk(jobs[2:]) == {}

        async def push_async() -> None:
            async with AsyncClient(url) as a:
                await a.push(async_job)
        asyncio.run(push_async())
        assert c.info()["faktory"]["queues"]["goq"] == 7

        n = len(jobs) + 1
        out = go_run([drain, "-c", "2", "-n", str(n), "-q", "goq", "-jobtypes", "SomeJob"], url)
        # Every job decoded into faktory_worker_go's Job and ACKed: one more would have hung it.
        assert re.search(rf"^Processed {n} jobs in ", out, re.M), out
        wait_for(lambda: counters(c) == (n + 1, 1, 1), timeout=10)
        assert c.info()["faktory"]["queues"].get("goq", 0) == 0
        # The unknown jobtype's FAIL, as faktory_worker_go reports it (Go client's Fail: errtype
        # "unknown"), brought back from the retries to read it over the wire.
        c.mutate("requeue", "retries", jids=[unknown.jid])
        failed = c.fetch("goq")
        assert failed is not None and (failed.jid, failed.args) == (unknown.jid, ["x"])
        assert failed.failure is not None
        assert failed.failure["errtype"] == "unknown"
        assert failed.failure["message"] == "No handler registered for job type GoUnknown"
        assert failed.failure["retry_count"] == 0
        c.ack(failed.jid)


# ---------------------------------------------------------------------------------------------
# Faktory's Go client pushes, the package works


def test_go_push_package_worker(url: str) -> None:
    load = anchor_binary("faktory-load", "the Go producer interop test")
    n = 20
    out = go_run([load, str(n), "1"], url)  # FLUSHes, then pushes n jobs from one goroutine
    assert f"Processed {n} pushes and 0 pops" in out, out
    with Client(url) as c:
        assert sum(c.info()["faktory"]["queues"].get(q, 0) for q in LOAD_QUEUES) == n

    w = Worker(url, queues=LOAD_QUEUES, concurrency=4, beat_interval=0.5)
    seen: queue_mod.Queue[Job] = queue_mod.Queue()
    calls = itertools.count()

    @w.register("SomeJob")
    def some_job(*args: Any) -> None:
        seen.put(current_job())
        if next(calls) == 0:
            raise RuntimeError("first Go job fails")  # once: a FAIL of a Go-pushed job

    r = Running(w)
    try:
        got = [seen.get(timeout=15) for _ in range(n)]
        with Client(url) as c:
            wait_for(lambda: counters(c) == (n, 1, 1), timeout=10)
    finally:
        r.stop()
    assert len({j.jid for j in got}) == n
    for job in got:
        assert (job.jobtype, job.args, job.retry) == ("SomeJob", [[1, "string", 3]], 25)
        assert job.queue in LOAD_QUEUES and job.custom is None
        assert re.fullmatch(r"[A-Za-z0-9_-]{16}", job.jid), job.jid  # Go's RandomJid
        assert job.created_at and job.enqueued_at
