"""The client package's Worker against a real server: handlers (sync on threads, async as
tasks), ACK and FAIL with the error's fields, middleware, concurrency, queue order, quiet and
terminate from the server (as the web UI's Busy page sets them) and from signals, the shutdown
timeout, and a worker killed mid-job whose job comes back when its reservation expires."""
from __future__ import annotations

import asyncio
import json
import queue as queue_mod
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from faktory_fast.storage import keys
from faktory_fast_client import Client, Job, Worker, current_job
from faktory_fast_client.cli import parse_queues
from tests.integration.test_client import queue_size, zset_jobs
from tests.integration.test_compat_python import make_due, signal_worker, worker_registered
from tests.integration.test_deploy import WebSession, start_server
from tests.support import ROOT, FaktoryServer, wait_for


class Running:
    """A Worker run in a thread (``Worker.run``: its own event loop), terminated at the end."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert worker.ready.wait(10), "the worker did not start"

    def _run(self) -> None:
        try:
            self.worker.run()
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def stop(self, timeout: float = 30) -> None:
        self.worker.terminate()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the worker did not stop"
        assert self.error is None, self.error


@pytest.fixture
def running(srv: FaktoryServer) -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for r in started:
        if r.thread.is_alive():
            r.stop()


def start(running: list[Running], worker: Worker) -> Running:
    r = Running(worker)
    running.append(r)
    return r


def test_ack_fail_middleware_and_current_job(srv: FaktoryServer, fc: Client,
                                             running: list[Running]) -> None:
    w = Worker(srv.url, queues=["wq"], concurrency=3, beat_interval=0.5)
    done: queue_mod.Queue[tuple[Any, ...]] = queue_mod.Queue()
    order: list[str] = []

    async def outer(job: Job, call_next: Any) -> None:
        order.append(f"outer>{job.jobtype}")
        await call_next()
        order.append(f"outer<{job.jobtype}")

    async def inner(job: Job, call_next: Any) -> None:
        assert current_job() is job
        order.append("inner")
        await call_next()

    w.use(outer, inner)

    @w.register("SyncOk")
    def sync_ok(a: int, b: str) -> None:
        done.put(("SyncOk", a, b, current_job().jid, threading.current_thread().name))

    @w.register("AsyncOk")
    async def async_ok(a: int) -> None:
        done.put(("AsyncOk", a, current_job().jid, threading.current_thread().name))

    def boom(n: int) -> None:
        raise KeyError(f"missing {n}")

    w.register("Boom", boom)
    start(running, w)
    ok, aok = Job("SyncOk", [1, "x"], queue="wq"), Job("AsyncOk", [2], queue="wq")
    bad = Job("Boom", [7], queue="wq", retry=5)
    unknown = Job("NoSuchType", [], queue="wq")
    for j in (ok, aok, bad, unknown):
        fc.push(j)
    got = {done.get(timeout=10)[0]: None for _ in range(2)}
    assert set(got) == {"SyncOk", "AsyncOk"}
    retries = wait_for(lambda: len(zset_jobs(srv, "retries")) == 2 and zset_jobs(srv, "retries"))
    failure = retries[bad.jid]["failure"]
    assert failure["errtype"] == "KeyError" and failure["message"] == "'missing 7'"
    assert any("in `boom'" in line for line in failure["backtrace"])
    assert retries[unknown.jid]["failure"]["errtype"] == "NoHandlerError"
    info = wait_for(lambda: (i := fc.info()["faktory"])["total_processed"] == 4 and i)
    assert info["total_failures"] == 2 and info["sets"]["working"] == 0
    assert order.count("inner") == 3 and "outer>SyncOk" in order and "outer<SyncOk" in order


def test_sync_handlers_on_threads_async_handlers_as_tasks(srv: FaktoryServer, fc: Client,
                                                          running: list[Running]) -> None:
    """With concurrency 4, four blocking functions and then four coroutines are all in
    hand at once (each waits for the other three)."""
    w = Worker(srv.url, queues=["cq"], concurrency=4, beat_interval=0.5)
    barrier = threading.Barrier(4, timeout=10)
    threads: set[str] = set()
    arrived = 0
    all_in: asyncio.Event | None = None

    @w.register("Blocking")
    def blocking() -> None:
        threads.add(threading.current_thread().name)
        barrier.wait()

    @w.register("Coro")
    async def coro() -> None:
        nonlocal arrived, all_in
        all_in = all_in or asyncio.Event()
        arrived += 1
        if arrived == 4:
            all_in.set()
        await asyncio.wait_for(all_in.wait(), 10)

    start(running, w)
    fc.push_bulk([Job("Blocking", queue="cq") for _ in range(4)])
    wait_for(lambda: fc.info()["faktory"]["total_processed"] == 4, timeout=15)
    assert len(threads) == 4 and all(t.startswith("faktory-job") for t in threads)
    fc.push_bulk([Job("Coro", queue="cq") for _ in range(4)])
    wait_for(lambda: fc.info()["faktory"]["total_processed"] == 8, timeout=15)
    assert fc.info()["faktory"]["total_failures"] == 0


def test_strict_queue_order_and_weighted_lists(srv: FaktoryServer, fc: Client,
                                               running: list[Running]) -> None:
    seen: list[str] = []
    w = Worker(srv.url, queues=["high", "low"], concurrency=1, beat_interval=0.5)
    w.register("Q", lambda name: seen.append(name))
    fc.push_bulk([Job("Q", ["low"], queue="low") for _ in range(3)]
                 + [Job("Q", ["high"], queue="high") for _ in range(3)])
    start(running, w)
    wait_for(lambda: len(seen) == 6)
    assert seen == ["high"] * 3 + ["low"] * 3
    weighted = Worker(srv.url, queues={"a": 8, "b": 1, "c": 1})
    firsts = [weighted._queue_list() for _ in range(300)]
    assert all(sorted(q) == ["a", "b", "c"] for q in firsts)
    share = sum(q[0] == "a" for q in firsts) / len(firsts)
    assert 0.6 < share < 0.95  # 0.8 expected
    assert parse_queues(["a,3", "b"]) == {"a": 3, "b": 1}
    assert parse_queues(["x", "y z"]) == ["x", "y", "z"]


def test_quiet_then_terminate_from_the_server(srv: FaktoryServer, fc: Client,
                                              running: list[Running]) -> None:
    ran: list[int] = []
    w = Worker(srv.url, queues=["sq"], concurrency=2, beat_interval=0.2)
    w.register("S", ran.append)
    r = start(running, w)
    assert worker_registered(srv, w.wid)
    signal_worker(srv, w.wid, "quiet")  # what the web UI's Busy page "quiet" does
    wait_for(lambda: w.state == "quiet")
    # A FETCH under way when quiet arrived may still bring a job (it is run): wait for the
    # slots to stop fetching, then nothing more is taken.
    wait_for(lambda: w.fetching == 0)
    fc.push(Job("S", [1], queue="sq"))
    fc.fetch("nothing-here")  # the server's 2 s wait: time for a slot to take the job
    assert ran == [] and queue_size(fc, "sq") == 1  # quiet: nothing fetched
    assert r.thread.is_alive()  # quiet is not stop
    signal_worker(srv, w.wid, "terminate")
    r.thread.join(10)
    assert not r.thread.is_alive() and w.state == "terminate"
    wait_for(lambda: not worker_registered(srv, w.wid))


def test_local_quiet_and_terminate_reach_the_server_at_once(srv: FaktoryServer,
                                                            running: list[Running]) -> None:
    w = Worker(srv.url, queues=["lq"], beat_interval=60)  # no heartbeat due in this test
    r = start(running, w)

    def server_state() -> str | None:
        red = srv.redis()
        try:
            state = red.hget(keys.worker(w.wid), "state")
        finally:
            red.close()
        return state.decode() if state else None

    w.quiet()
    wait_for(lambda: server_state() == "quiet", timeout=5)
    w.terminate()
    r.thread.join(10)
    assert not r.thread.is_alive()
    wait_for(lambda: not worker_registered(srv, w.wid))


def test_terminate_fails_jobs_past_the_shutdown_timeout(srv: FaktoryServer, fc: Client,
                                                        running: list[Running]) -> None:
    started = threading.Event()
    release = threading.Event()
    w = Worker(srv.url, queues=["tq"], concurrency=2, beat_interval=0.5, shutdown_timeout=0.5)

    @w.register("Stuck")
    def stuck() -> None:
        started.set()
        release.wait(20)

    @w.register("Quick")
    async def quick() -> None:
        await asyncio.sleep(0.1)

    r = start(running, w)
    slow, fast = Job("Stuck", queue="tq"), Job("Quick", queue="tq")
    fc.push(slow)
    assert started.wait(10)
    fc.push(fast)
    wait_for(lambda: fc.info()["faktory"]["total_processed"] == 1)  # Quick ACKed
    r.stop()
    release.set()
    failure = zset_jobs(srv, "retries")[slow.jid]["failure"]
    assert failure["errtype"] == "Shutdown"
    assert fc.info()["faktory"]["sets"]["working"] == 0


# ---------------------------------------------------------------------------------------------
# the CLI, signals, a worker killed mid-job


class CliWorker:
    """``python -m faktory_fast_client worker tests.integration.client_jobs:worker``."""

    def __init__(self, srv: FaktoryServer, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "faktory_fast_client", "worker",
             "tests.integration.client_jobs:worker", *args],
            cwd=ROOT, env={"FAKTORY_URL": srv.url, "PATH": "/usr/bin:/bin"},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: queue_mod.Queue[str | None] = queue_mod.Queue()
        self.output: list[str] = []
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def expect(self, text: str, timeout: float = 15) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue_mod.Empty:
                raise AssertionError(f"no {text!r} in:\n{''.join(self.output)}") from None
            if line is None:
                raise AssertionError(f"exited before {text!r}:\n{''.join(self.output)}")
            if text in line:
                return line

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._pump_thread.join(10)  # EOF once the process is gone
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture
def cli_workers() -> Iterator[list[CliWorker]]:
    started: list[CliWorker] = []
    yield started
    for w in started:
        w.stop()


def test_cli_worker_signals(srv: FaktoryServer, fc: Client, cli_workers: list[CliWorker]) -> None:
    w = CliWorker(srv, "-q", "cli", "-c", "3", "-t", "10")
    cli_workers.append(w)
    w.expect("ready: 3 slots")
    job = Job("CliOk", [1, "a"], queue="cli")
    fc.push(job)
    line = json.loads(w.expect('"CliOk"'))
    assert line == {"event": "job", "jobtype": "CliOk", "jid": job.jid, "args": [1, "a"]}
    slow = Job("CliSlowAsync", [3.5], queue="cli")  # outlasts the quiet slots' last FETCH
    fc.push(slow)
    w.expect('"CliSlowAsync"')
    w.proc.send_signal(signal.SIGTTIN)
    w.expect("faktory-slot-")  # a task dump names the slots
    w.proc.send_signal(signal.SIGTSTP)
    w.expect("quiet: no more fetching")
    w.expect("no FETCH under way")
    fc.push(Job("CliAsync", [2], queue="cli"))
    assert w.proc.poll() is None  # quiet is not stop
    w.proc.send_signal(signal.SIGTERM)
    w.expect("terminating")
    assert json.loads(w.expect('"done"'))["jid"] == slow.jid  # finished within the timeout
    assert w.proc.wait(15) == 0
    w.expect("stopped")
    assert not any('"CliAsync"' in line for line in w.output)  # quiet: never fetched
    assert queue_size(fc, "cli") == 1
    info = fc.info()["faktory"]
    assert info["total_processed"] == 2 and info["sets"]["working"] == 0


def test_cli_terminate_fails_a_stuck_thread_job_and_exits(srv: FaktoryServer, fc: Client,
                                                          cli_workers: list[CliWorker]) -> None:
    w = CliWorker(srv, "-q", "cli", "-t", "0.5")
    cli_workers.append(w)
    w.expect("ready")
    job = Job("CliHang", queue="cli")  # a plain function sleeping an hour
    fc.push(job)
    w.expect('"CliHang"')
    w.proc.send_signal(signal.SIGINT)
    assert w.proc.wait(15) == 0  # the thread still sleeps: the CLI exits anyway
    failure = zset_jobs(srv, "retries")[job.jid]["failure"]
    assert (failure["errtype"], failure["message"]) == \
        ("Shutdown", "worker terminated before the job finished")


def test_killed_worker_job_returns_after_its_reservation(srv: FaktoryServer, fc: Client,
                                                          cli_workers: list[CliWorker]) -> None:
    w = CliWorker(srv, "-q", "cli")
    cli_workers.append(w)
    w.expect("ready")
    job = Job("CliHang", queue="cli", reserve_for=60)
    fc.push(job)
    w.expect('"CliHang"')
    w.proc.kill()
    w.proc.wait(10)
    r = srv.redis()
    try:
        score = r.zscore("working", job.jid)
        assert score is not None and score == pytest.approx(time.time() + 60, abs=10)
        r.zadd("working", {job.jid: time.time() - 1})  # as if its 60 s had passed
    finally:
        r.close()
    retried = wait_for(lambda: zset_jobs(srv, "retries").get(job.jid), timeout=30)
    assert retried["failure"]["errtype"] == "ReservationExpired"
    # It runs again on the next worker.
    make_due(srv, "retries", job.jid)
    again = CliWorker(srv, "-q", "cli")
    cli_workers.append(again)
    assert json.loads(again.expect('"CliHang"', timeout=20))["jid"] == job.jid


def test_worker_and_client_carry_on_across_a_server_restart(tmp_path: Any) -> None:
    """The server stops and starts again on its port: the producer's idle connection is
    replaced before its next push (nothing raised), and the worker's slots and heartbeat
    reconnect (HELLO registers the wid again) and go on working."""
    server = FaktoryServer(str(tmp_path), processes=1).start()
    w = Worker(server.url, queues=["rq"], concurrency=2, beat_interval=0.2)
    ran: queue_mod.Queue[int] = queue_mod.Queue()
    w.register("R", ran.put)
    producer = Client(server.url)
    r = Running(w)
    try:
        producer.push(Job("R", [1], queue="rq"))
        assert ran.get(timeout=10) == 1
        assert server.stop() == 0
        server.start()
        producer.push(Job("R", [2], queue="rq"))  # the closed connection was replaced
        assert ran.get(timeout=20) == 2
        wait_for(lambda: worker_registered(server, w.wid), timeout=10)
        assert w.state == "running"
    finally:
        producer.close()
        r.stop()
        server.stop()


def test_quiet_and_terminate_from_the_web_ui(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The Busy page's Quiet and Terminate buttons (an HTTP POST to the real web UI) reach the
    worker through its BEAT."""
    server = start_server(tmp_path_factory, "client-web")  # password, web UI on
    try:
        w = Worker(server.url, queues=["webq"], concurrency=1, beat_interval=0.2)
        r = Running(w)
        web = WebSession(server)
        web.signal(w.wid, "quiet")
        wait_for(lambda: w.state == "quiet", timeout=5)
        assert r.thread.is_alive()
        web.signal(w.wid, "terminate")
        r.thread.join(10)
        assert not r.thread.is_alive() and w.state == "terminate" and r.error is None
    finally:
        server.stop()
