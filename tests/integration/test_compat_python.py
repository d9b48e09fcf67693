"""Compatibility: the server driven by unmodified Python client libraries from PyPI.

* ``faktory`` 1.0.0 (cdrx/faktory_worker_python): ``faktory.connection(url)`` / ``Client.queue``
  for producing, ``faktory.Worker`` (thread executor) for consuming. It sends no protocol ``v`` in
  HELLO and hashes the password once, JSON with spaces, ``priority`` in every job.
* ``pyfaktory`` 0.2.x: ``Client`` + ``Producer`` / ``Consumer`` (pebble process pool, its own
  heartbeat thread), ``MutateOperation``, queue pause/resume.

Each library runs its own loop in a thread; tests stop it the library's way (``Worker.disconnect``,
``Client.disconnect`` / END, or a server-side quiet/terminate seen through BEAT) and join every
thread and process they start. Job functions report through a ``threading.Event`` (faktory, which
runs jobs in threads) or a ``multiprocessing`` queue (pyfaktory, which runs jobs in forked
processes).
"""
from __future__ import annotations

import contextlib
import json
import multiprocessing
import queue as queue_mod
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import faktory
import pytest
from faktory.exceptions import FaktoryAuthenticationError

# pyfaktory's Consumer installs a SIGTERM handler (pebble's @sighandler) at import time;
# keep pytest's own handler.
_sigterm = signal.getsignal(signal.SIGTERM)
import pyfaktory  # noqa: E402
from pyfaktory.util.enums import State  # noqa: E402
from pyfaktory.util.exceptions import FaktroyWorkProtocolError  # noqa: E402

signal.signal(signal.SIGTERM, _sigterm)

from faktory_fast.storage import keys  # noqa: E402
from faktory_fast.storage.store import Operations  # noqa: E402
from tests.deployments import on_each_deployment  # noqa: E402
from tests.support import FaktoryServer, wait_for  # noqa: E402

# The protocol of this module, on a single Redis and on a Redis Cluster.
server = on_each_deployment()

FORK = multiprocessing.get_context("fork")


# ---------------------------------------------------------------------------------------------
# helpers (also imported by test_compat_node.py)


def flush(server: FaktoryServer) -> None:
    c = server.client()
    try:
        assert c.call("FLUSH") == "OK"
    finally:
        c.close()


def info(server: FaktoryServer) -> dict:
    c = server.client()
    try:
        return c.info()
    finally:
        c.close()


def raw(server: FaktoryServer, line: str) -> Any:
    c = server.client()
    try:
        return c.call(line)
    finally:
        c.close()


def queue_size(server: FaktoryServer, name: str) -> int:
    return info(server)["faktory"]["queues"].get(name, 0)


def set_jobs(server: FaktoryServer, name: str) -> dict[str, tuple[dict, float]]:
    """Jobs in a sorted set (scheduled / retries / dead) as jid -> (payload, score)."""
    r = server.redis()
    try:
        return {json.loads(m)["jid"]: (json.loads(m), s)
                for m, s in r.zrange(name, 0, -1, withscores=True)}
    finally:
        r.close()


def make_due(server: FaktoryServer, name: str, jid: str) -> None:
    """Give a retry/scheduled entry a score in the past so the server's next scan enqueues it."""
    r = server.redis()
    try:
        for member in r.zrange(name, 0, -1):
            if json.loads(member)["jid"] == jid:
                r.zadd(name, {member: time.time() - 1})
                return
        raise AssertionError(f"{jid} not in {name}")
    finally:
        r.close()


def signal_worker(server: FaktoryServer, wid: str, state: str) -> None:
    """Quiet or terminate a worker from the server side (what the Web UI's Busy page does)."""
    r = server.redis()
    try:
        # One MULTI: a worker told to terminate may be gone (and its record with it) right after.
        pipe = r.pipeline(transaction=True)
        pipe.execute_command(*Operations.signal_workers.build(server.store(), "0", state,
                                                              [wid]).args)
        pipe.hget(keys.worker(wid), "state")
        assert pipe.execute() == [[b"0", 1], state.encode()]
    finally:
        r.close()


def worker_registered(server: FaktoryServer, wid: str) -> bool:
    r = server.redis()
    try:
        return bool(r.exists(f"ff:w:{wid}"))
    finally:
        r.close()


def counter(server: FaktoryServer, name: str) -> int:
    r = server.redis()
    try:
        return int(r.get(name) or 0)
    finally:
        r.close()


def iso_in(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def _swallow_exit(target: Callable[[], Any]) -> Callable[[], None]:
    """Both libraries end their run loop with sys.exit(1); in a thread that is just the end."""
    def run() -> None:
        try:
            target()
        except SystemExit:
            pass
    return run


class Recorder:
    """Job function for faktory's (thread-executed) Worker: records calls, sets an event each."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple] = []
        self.event = threading.Event()
        self.fail = fail
        self.lock = threading.Lock()

    def __call__(self, *args: Any) -> None:
        with self.lock:
            self.calls.append(args)
            self.event.set()
        if self.fail:
            raise ValueError(f"python boom {len(self.calls)}")

    def wait_calls(self, n: int, timeout: float = 15) -> list[tuple]:
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if len(self.calls) >= n:
                    return list(self.calls)
                self.event.clear()
            left = deadline - time.monotonic()
            if left <= 0 or not self.event.wait(left):
                with self.lock:
                    if len(self.calls) >= n:
                        return list(self.calls)
                raise AssertionError(f"expected {n} calls, got {self.calls}")


@contextlib.contextmanager
def faktory_worker(url: str, tasks: dict[str, Callable], queues: list[str] | None = None,
                   heartbeat: float | None = None, concurrency: int = 1,
                   wid: str | None = None) -> Iterator[faktory.Worker]:
    """faktory.Worker running in a thread (thread executor); stopped with Worker.disconnect."""
    old = signal.getsignal(signal.SIGTERM)  # Worker() takes SIGTERM for itself
    kw: dict[str, Any] = {}
    if wid:
        kw["worker_id"] = wid
    w = faktory.Worker(faktory=url, queues=queues or ["default"], concurrency=concurrency,
                       use_threads=True, disconnect_wait=5, **kw)
    signal.signal(signal.SIGTERM, old)
    if heartbeat is not None:
        w.send_heartbeat_every = heartbeat
    for name, fn in tasks.items():
        w.register(name, fn)
    t = threading.Thread(target=_swallow_exit(w.run), name="faktory-worker", daemon=True)
    w.thread = t
    t.start()
    try:
        yield w
    finally:
        if t.is_alive():
            w.disconnect(wait=5)  # graceful: the loop leaves after its current FETCH
        t.join(20)
        if w._executor is not None:
            w._executor.shutdown(wait=True)
        if w.faktory.socket is not None:
            w.faktory.socket.close()
        assert not t.is_alive(), "faktory.Worker did not stop"


# Job functions for pyfaktory's Consumer run in forked pebble processes: they report through a
# multiprocessing queue inherited from the test process.
_PF_EVENTS: Any = None


def pf_record(*args: Any) -> str:
    _PF_EVENTS.put(("ok", list(args)))
    return "done"


def pf_fail(*args: Any) -> None:
    _PF_EVENTS.put(("fail", list(args)))
    raise KeyError(f"pyfaktory boom {args[0] if args else ''}")


class PyfaktoryConsumer:
    def __init__(self, client: pyfaktory.Client, consumer: pyfaktory.Consumer,
                 events: Any, thread: threading.Thread) -> None:
        self.client, self.consumer, self.events, self.thread = client, consumer, events, thread

    def next_event(self, timeout: float = 15) -> tuple[str, list]:
        try:
            return self.events.get(timeout=timeout)
        except queue_mod.Empty:
            raise AssertionError("the pyfaktory consumer ran no job") from None

    def no_event(self, within: float) -> bool:
        try:
            got = self.events.get(timeout=within)
        except queue_mod.Empty:
            return True
        raise AssertionError(f"unexpected job run: {got}")


@contextlib.contextmanager
def pyfaktory_consumer(server: FaktoryServer, url: str | None = None,
                       queues: list[str] | None = None, beat_period: float = 0.2,
                       wid: str | None = None) -> Iterator[PyfaktoryConsumer]:
    """pyfaktory's Consumer in a thread.

    Stopped the way Faktory stops it: a server-side ``terminate`` that its heartbeat thread reads
    from a BEAT reply; both loops then end by themselves, and only then is the client
    disconnected (END). Calling ``Client.disconnect()`` while the heartbeat thread runs is racy in
    pyfaktory 0.2: a heartbeat waiting for the socket lock then raises "Client state is
    State.DISCONNECTED while `_beat` is only valid ..." in its thread.
    """
    global _PF_EVENTS
    events = FORK.Queue()
    _PF_EVENTS = events
    wid = wid or uuid.uuid4().hex
    client = pyfaktory.Client(faktory_url=url or server.url, role="consumer", worker_id=wid,
                              beat_period=beat_period, timeout=10)
    client.connect()
    consumer = pyfaktory.Consumer(client=client, queues=queues or ["default"], priority="strict",
                                  concurrency=2, grace_period=5, context=FORK)
    consumer.register("PyOk", pf_record)
    consumer.register("PyFail", pf_fail)
    t = threading.Thread(target=_swallow_exit(consumer.run), name="pyfaktory-consumer", daemon=True)
    t.start()
    try:
        yield PyfaktoryConsumer(client, consumer, events, t)
    finally:
        if client.state in (State.IDENTIFIED, State.QUIET):
            r = server.redis()
            try:
                r.execute_command(*Operations.signal_workers.build(server.store(), "0",
                                                                   "terminate", [wid]).args)
            finally:
                r.close()
        client.heartbeat_thread.join(20)
        t.join(20)
        if client.state != State.DISCONNECTED:
            client.disconnect()
        events.close()
        events.join_thread()
        _PF_EVENTS = None
        assert not t.is_alive() and not client.heartbeat_thread.is_alive()


@contextlib.contextmanager
def pyfaktory_producer(url: str) -> Iterator[pyfaktory.Producer]:
    client = pyfaktory.Client(faktory_url=url, role="producer", timeout=10)
    client.connect()
    try:
        yield pyfaktory.Producer(client=client)
    finally:
        client.disconnect()


# ---------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def password_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaktoryServer]:
    s = FaktoryServer(str(tmp_path_factory.mktemp("faktory-pw")), processes=2,
                      password="s3cret-pw").start()
    yield s
    s.stop()


# ---------------------------------------------------------------------------------------------
# cross-library flow


def test_faktory_client_to_pyfaktory_consumer(srv: FaktoryServer) -> None:
    jid = uuid.uuid4().hex
    with faktory.connection(srv.url) as client:
        assert client.queue("PyOk", args=(7, "seven", {"k": [1, 2]}), queue="compat", jid=jid,
                            custom={"trace": "abc"})
    # faktory sends priority 5, retry 5 and backtrace 0; the stored job keeps what Faktory keeps
    with pyfaktory_consumer(srv, queues=["compat"]) as pc:
        kind, args = pc.next_event()
        assert (kind, args) == ("ok", [7, "seven", {"k": [1, 2]}])
        wait_for(lambda: counter(srv, "processed") == 1)  # the consumer's ACK
        assert pc.client.info()["faktory"]["sets"]["working"] == 0
    assert counter(srv, "failures") == 0


def test_pyfaktory_producer_to_faktory_worker(srv: FaktoryServer) -> None:
    ok = Recorder()
    with pyfaktory_producer(srv.url) as producer:
        job = pyfaktory.Job(jobtype="FkOk", args=["a", 2, None], queue="critical")
        assert producer.push(job)
        failed = producer.push_bulk([pyfaktory.Job(jobtype="FkOk", args=[i], queue="critical")
                                     for i in range(3)])
        assert failed == {}
    assert queue_size(srv, "critical") == 4
    with faktory_worker(srv.url, {"FkOk": ok}, queues=["critical"]):
        calls = ok.wait_calls(4)
        wait_for(lambda: counter(srv, "processed") == 4)
    assert calls[0] == ("a", 2, None)
    assert sorted(calls[1:]) == [(0,), (1,), (2,)]
    assert queue_size(srv, "critical") == 0


def test_pyfaktory_push_bulk_reports_rejected_jobs(srv: FaktoryServer) -> None:
    with pyfaktory_producer(srv.url) as producer:
        good = pyfaktory.Job(jobtype="PyOk", args=[1])
        bad = pyfaktory.Job(jobtype="PyOk", args=[2], queue="bad queue!")
        failed = producer.push_bulk([good, bad])
    assert set(failed) == {bad.jid}
    assert "queue names must match" in failed[bad.jid]
    assert queue_size(srv, "default") == 1


# ---------------------------------------------------------------------------------------------
# failures: retry and dead


def test_faktory_worker_failure_goes_to_retry_then_dead(srv: FaktoryServer) -> None:
    jid = uuid.uuid4().hex
    with faktory.connection(srv.url) as client:
        assert client.queue("FkFail", args=["x"], jid=jid, retry=1)
    boom = Recorder(fail=True)
    with faktory_worker(srv.url, {"FkFail": boom}):
        boom.wait_calls(1)
        retries = wait_for(lambda: set_jobs(srv, "retries"))
        job, score = retries[jid]
        failure = job["failure"]
        assert failure["errtype"] == "ValueError"
        assert failure["message"] == "python boom 1"
        assert failure["retry_count"] == 0 and failure["remaining"] == 1
        assert score > time.time() + 5  # backoff >= 15 s
        assert counter(srv, "failures") == 1

        make_due(srv, "retries", jid)  # the server's retry scan re-enqueues it
        boom.wait_calls(2)
        dead = wait_for(lambda: set_jobs(srv, "dead"))
    job, _ = dead[jid]
    assert job["failure"]["retry_count"] == 1
    assert job["failure"]["message"] == "python boom 2"
    assert set_jobs(srv, "retries") == {}
    assert counter(srv, "failures") == 2


def test_faktory_worker_unregistered_jobtype_is_failed(srv: FaktoryServer) -> None:
    jid = uuid.uuid4().hex
    with faktory.connection(srv.url) as client:
        assert client.queue("NobodyKnowsMe", args=[], jid=jid, retry=3)
    with faktory_worker(srv.url, {"Other": Recorder()}):
        retries = wait_for(lambda: set_jobs(srv, "retries"))
    failure = retries[jid][0]["failure"]
    assert failure["errtype"] == "ValueError"
    assert "'NobodyKnowsMe' is not a registered task" in failure["message"]


def test_pyfaktory_failure_records_backtrace_retry_0_discards_minus_1_kills(
        srv: FaktoryServer) -> None:
    with pyfaktory_producer(srv.url) as producer:
        j_retry = pyfaktory.Job(jobtype="PyFail", args=["r"], retry=2, backtrace=5)
        j_zero = pyfaktory.Job(jobtype="PyFail", args=["z"], retry=0)
        j_dead = pyfaktory.Job(jobtype="PyFail", args=["d"], retry=-1)
        for j in (j_retry, j_zero, j_dead):
            assert producer.push(j)
    with pyfaktory_consumer(srv) as pc:
        seen = sorted(pc.next_event()[1][0] for _ in range(3))
        assert seen == ["d", "r", "z"]
        wait_for(lambda: counter(srv, "failures") == 3)
    retries = set_jobs(srv, "retries")
    dead = set_jobs(srv, "dead")
    assert set(retries) == {j_retry.jid}
    failure = retries[j_retry.jid][0]["failure"]
    assert failure["errtype"] == "KeyError"
    assert "pyfaktory boom r" in failure["message"]
    # pyfaktory sends the parent-side traceback (formatted frames, as a list) as the backtrace
    assert failure["backtrace"] and any("task_done" in line for line in failure["backtrace"])
    assert failure["retry_count"] == 0 and failure["remaining"] == 2
    # retry -1: dead on the first failure; retry 0: gone (counted as a failure only)
    assert set(dead) == {j_dead.jid}
    assert dead[j_dead.jid][0]["failure"]["remaining"] == -1
    assert j_zero.jid not in retries and j_zero.jid not in dead
    assert counter(srv, "processed") == 3


# ---------------------------------------------------------------------------------------------
# scheduled jobs


def test_scheduled_job_from_faktory_client_runs_when_due(srv: FaktoryServer) -> None:
    jid = uuid.uuid4().hex
    at = iso_in(1.2)
    due = time.time() + 1.2
    with faktory.connection(srv.url) as client:
        assert client.queue("FkOk", args=["later"], jid=jid, at=at)
    scheduled = set_jobs(srv, "scheduled")
    assert abs(scheduled[jid][1] - due) < 0.5
    ok = Recorder()
    with faktory_worker(srv.url, {"FkOk": ok}):
        ok.wait_calls(1, timeout=15)
        ran_at = time.time()
    assert ran_at >= due - 0.05
    assert ok.calls == [("later",)]
    assert set_jobs(srv, "scheduled") == {}


def test_scheduled_job_from_pyfaktory_runs_when_due(srv: FaktoryServer) -> None:
    with pyfaktory_producer(srv.url) as producer:
        job = pyfaktory.Job(jobtype="PyOk", args=["sched"], at=iso_in(1.0))
        due = time.time() + 1.0
        assert producer.push(job)
    assert job.jid in set_jobs(srv, "scheduled")
    with pyfaktory_consumer(srv) as pc:
        assert pc.next_event() == ("ok", ["sched"])
        assert time.time() >= due - 0.05


# ---------------------------------------------------------------------------------------------
# quiet / terminate


def test_faktory_worker_quiet_then_terminate(srv: FaktoryServer) -> None:
    wid = uuid.uuid4().hex
    ok = Recorder()
    with faktory_worker(srv.url, {"FkOk": ok}, heartbeat=0.2, wid=wid) as w:
        wait_for(lambda: worker_registered(srv, wid))
        # another connection BEATs for this wid with current_state quiet (wids are global)
        beat = "BEAT " + json.dumps({"wid": wid, "current_state": "quiet"})
        assert raw(srv, beat) == '{"state":"quiet"}'
        wait_for(lambda: w.is_quiet)  # the worker's own BEAT got {"state":"quiet"}
        with faktory.connection(srv.url) as client:
            assert client.queue("FkOk", args=[1])
        assert not ok.event.wait(2.0), "a quiet worker must not fetch"
        assert queue_size(srv, "default") == 1
        assert w.thread.is_alive()  # quiet is not stop

        signal_worker(srv, wid, "terminate")
        w.thread.join(15)  # terminate: the worker disconnects and run() returns
        assert not w.thread.is_alive()
    assert ok.calls == []
    wait_for(lambda: not worker_registered(srv, wid))  # its connection closed


def test_pyfaktory_consumer_quiet_then_terminate(srv: FaktoryServer) -> None:
    wid = uuid.uuid4().hex
    with pyfaktory_consumer(srv, wid=wid, beat_period=0.2) as pc:
        wait_for(lambda: worker_registered(srv, wid))
        signal_worker(srv, wid, "quiet")
        wait_for(lambda: pc.client.state == State.QUIET)
        with pyfaktory_producer(srv.url) as producer:
            assert producer.push(pyfaktory.Job(jobtype="PyOk", args=[1]))
        assert pc.no_event(within=2.0)
        assert queue_size(srv, "default") == 1

        signal_worker(srv, wid, "terminate")
        pc.thread.join(15)
        assert not pc.thread.is_alive()
        assert pc.client.state == State.TERMINATING


# ---------------------------------------------------------------------------------------------
# queue pause / resume


def test_paused_queue_starves_faktory_worker_until_resumed(srv: FaktoryServer) -> None:
    with faktory.connection(srv.url) as client:
        assert client.queue("FkOk", args=["p"], queue="pausable")
    assert raw(srv, "QUEUE PAUSE pausable") == "OK"
    ok = Recorder()
    with faktory_worker(srv.url, {"FkOk": ok}, queues=["pausable"]):
        assert not ok.event.wait(2.0), "a paused queue must hand out nothing"
        assert queue_size(srv, "pausable") == 1
        assert raw(srv, "QUEUE RESUME pausable") == "OK"
        assert ok.wait_calls(1) == [("p",)]


def test_pyfaktory_pause_resume_api(srv: FaktoryServer) -> None:
    with pyfaktory_producer(srv.url) as producer:
        assert producer.push(pyfaktory.Job(jobtype="PyOk", args=["pp"], queue="pq"))
        assert producer.client.queue_pause(["pq"])
        with pyfaktory_consumer(srv, queues=["pq"]) as pc:
            assert pc.no_event(within=2.0)
            assert producer.client.queue_unpause(all_queues=True)
            assert pc.next_event() == ("ok", ["pp"])


# ---------------------------------------------------------------------------------------------
# MUTATE (pyfaktory's MutateOperation)


def _fail_jobs(server: FaktoryServer, jobs: list[dict]) -> None:
    """Push, fetch and FAIL raw jobs so they land in retries (or dead)."""
    c = server.client()
    try:
        for j in jobs:
            assert c.push(j) == "OK"
        for _ in jobs:
            got = c.fetch(jobs[0].get("queue", "default"))
            assert c.fail(got["jid"], "Oops", "seeded") == "OK"
    finally:
        c.close()


def test_pyfaktory_mutate(srv: FaktoryServer) -> None:
    from tests.support import job
    a, b, c = job("MutA", retry=5), job("MutB", retry=5), job("MutB", retry=5, args=["uid:42"])
    _fail_jobs(srv, [a, b, c])
    assert set(set_jobs(srv, "retries")) == {a["jid"], b["jid"], c["jid"]}
    with pyfaktory_producer(srv.url) as producer:
        cl = producer.client
        # kill retries of jobtype MutA
        assert cl.mutate(pyfaktory.MutateOperation(
            cmd="kill", target="retries",
            filter=pyfaktory.JobFilter(jobtype="MutA", jids=None, regexp=None)))
        assert set(set_jobs(srv, "dead")) == {a["jid"]}
        # requeue by glob pattern
        assert cl.mutate(pyfaktory.MutateOperation(
            cmd="requeue", target="retries",
            filter=pyfaktory.JobFilter(regexp="*uid:42*", jids=None, jobtype=None)))
        assert set(set_jobs(srv, "retries")) == {b["jid"]}
        assert queue_size(srv, "default") == 1
        # discard by jid
        assert cl.mutate(pyfaktory.MutateOperation(
            cmd="discard", target="retries",
            filter=pyfaktory.JobFilter(jids=[b["jid"]], regexp=None, jobtype=None)))
        assert set_jobs(srv, "retries") == {}
        # clear the dead set
        assert cl.mutate(pyfaktory.MutateOperation(cmd="clear", target="dead"))
        assert set_jobs(srv, "dead") == {}


# ---------------------------------------------------------------------------------------------
# password


def test_password_faktory_lib_single_hash(password_server: FaktoryServer) -> None:
    flush(password_server)
    url = password_server.url
    assert url.startswith("tcp://:s3cret-pw@")
    jid = uuid.uuid4().hex
    with faktory.connection(url) as client:  # HELLO without "v": one SHA-256 round
        assert client.queue("FkOk", args=["pw"], jid=jid)
    ok = Recorder()
    with faktory_worker(url, {"FkOk": ok}):
        assert ok.wait_calls(1) == [("pw",)]
    bad = faktory.get_client(f"tcp://:wrong@127.0.0.1:{password_server.port}")
    with pytest.raises(FaktoryAuthenticationError):
        bad.connect()
    bad.faktory.socket.close()


def test_password_pyfaktory_iterated_hash(password_server: FaktoryServer) -> None:
    flush(password_server)
    url = password_server.url
    with pyfaktory_producer(url) as producer:  # HELLO v 2: i SHA-256 rounds
        assert producer.push(pyfaktory.Job(jobtype="PyOk", args=["pw2"]))
    with pyfaktory_consumer(password_server) as pc:
        assert pc.next_event() == ("ok", ["pw2"])
    bad = pyfaktory.Client(faktory_url=f"tcp://:wrong@127.0.0.1:{password_server.port}",
                           role="producer", timeout=10)
    with pytest.raises(FaktroyWorkProtocolError, match="Invalid password"):
        bad.connect()
    bad.sock.close()
