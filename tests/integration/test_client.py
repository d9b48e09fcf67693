"""The client package (client/, ``faktory_fast_client``) as a producer, sync and asyncio, against
a real server: push and PUSHB, job fields as the server keeps them, scheduled jobs, INFO, QUEUE,
MUTATE, password, TLS, the pools under threads and tasks, and what a broken connection does
(a cutting proxy in the test stands between client and server)."""
from __future__ import annotations

import asyncio
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from faktory_fast_client import (
    AsyncClient,
    AsyncPool,
    AuthenticationError,
    Client,
    FaktoryConnectionError,
    Job,
    NotUniqueError,
    Pool,
    ServerError,
    UnansweredError,
    Worker,
)
from faktory_fast_client import commands as cmds
from tests.support import FaktoryServer, wait_for

# ---------------------------------------------------------------------------------------------
# helpers (also imported by the other test_client*.py)


def queue_size(client: Client, queue: str) -> int:
    return client.info()["faktory"]["queues"].get(queue, 0)


def zset_jobs(server: FaktoryServer, name: str) -> dict[str, dict]:
    """The jobs of a sorted set (scheduled / retries / dead) by jid."""
    r = server.redis()
    try:
        return {json.loads(m)["jid"]: json.loads(m) for m in r.zrange(name, 0, -1)}
    finally:
        r.close()


class CuttingProxy:
    """A TCP relay to the server that a test can cut: ``cut()`` closes every relayed
    connection now; ``cut_after_request()`` relays the client's next bytes to the server and
    then closes that connection before any reply comes back."""

    def __init__(self, port: int) -> None:
        self.upstream = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.drop_next = threading.Event()
        self.accepted = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.upstream))
            self.accepted += 1
            self.pairs.append((down, up))
            threading.Thread(target=self._pump, args=(down, up, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, down, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        try:
            while data := src.recv(65536):
                if from_client and self.drop_next.is_set():
                    self.drop_next.clear()
                    # Nothing more reaches the client, the reply included (it could come back
                    # before the close below), but the request reaches the server.
                    src.shutdown(socket.SHUT_WR)
                    dst.sendall(data)
                    self._close(src, dst)
                    return
                dst.sendall(data)
        except OSError:
            pass
        self._close(src, dst)

    @staticmethod
    def _close(*socks: socket.socket) -> None:
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def cut(self) -> None:
        for pair in self.pairs:
            self._close(*pair)
        self.pairs.clear()

    def cut_after_request(self) -> None:
        self.drop_next.set()

    def close(self) -> None:
        self.listener.close()
        self.cut()


@pytest.fixture
def proxy(srv: FaktoryServer) -> Iterator[CuttingProxy]:
    p = CuttingProxy(srv.port)
    yield p
    p.close()


# ---------------------------------------------------------------------------------------------
# producing, sync


def test_push_fetch_ack_round_trip(fc: Client) -> None:
    job = Job("Resize", [1, "x", {"k": [2]}], queue="cq", retry=3, reserve_for=120,
              custom={"tenant": "acme"}, backtrace=5)
    assert fc.push(job) == job.jid and len(job.jid) == 16
    assert queue_size(fc, "cq") == 1
    got = fc.fetch("other", "cq")
    assert got is not None and got.jid == job.jid
    assert (got.jobtype, got.args, got.queue, got.retry, got.reserve_for, got.custom,
            got.backtrace) == ("Resize", [1, "x", {"k": [2]}], "cq", 3, 120, {"tenant": "acme"}, 5)
    assert got.created_at and got.enqueued_at and got.failure is None
    assert fc.info()["faktory"]["sets"]["working"] == 1
    fc.ack(got.jid)
    info = fc.info()["faktory"]
    assert info["sets"]["working"] == 0 and info["total_processed"] == 1


def test_priority_orders_a_queue_on_faktory_fast(fc: Client) -> None:
    """faktory_fast's extension: a higher priority is fetched first (Faktory 1.x ignores it)."""
    low, high = Job("Pri", [1], queue="pri", priority=2), Job("Pri", [9], queue="pri", priority=9)
    fc.push(low)
    fc.push(high)
    first = fc.fetch("pri")
    assert first is not None and (first.jid, first.priority) == (high.jid, 9)
    assert fc.fetch("pri").jid == low.jid  # type: ignore[union-attr]


def test_push_dict_default_retry_and_refusals(fc: Client) -> None:
    fc.push({"jid": "dict-job-1", "jobtype": "D", "args": []})
    got = fc.fetch("default")
    assert got is not None and (got.jid, got.retry, got.queue) == ("dict-job-1", 25, "default")
    with pytest.raises(ServerError) as err:
        fc.push(Job("Bad", queue="no spaces allowed"))
    assert err.value.code == "ERR" and "queue names must match" in err.value.message
    fc.push(Job("AfterError", queue="cq"))  # the connection is still in use after an error
    assert queue_size(fc, "cq") == 1


def test_push_bulk_reports_the_bad_job(fc: Client) -> None:
    good = [Job("Bulk", [i], queue="bq") for i in range(5)]
    bad = Job("", [0], queue="bq")  # no jobtype
    errors = fc.push_bulk([*good[:2], bad, *good[2:]])
    assert errors == {bad.jid: "jobs must have a jobtype parameter"}
    assert queue_size(fc, "bq") == 5
    assert fc.push_bulk([]) == {}


def test_scheduled_job_waits_then_runs(srv: FaktoryServer, fc: Client) -> None:
    later = Job("Later", queue="sq", at=datetime.now(UTC) + timedelta(hours=1))
    soon = Job("Soon", queue="sq", at=datetime.now(UTC) + timedelta(seconds=1))
    fc.push(later)
    fc.push(soon)
    scheduled = zset_jobs(srv, "scheduled")
    assert set(scheduled) == {later.jid, soon.jid}
    assert scheduled[later.jid]["at"].endswith("Z")
    got = wait_for(lambda: fc.fetch("sq"), timeout=15)  # the scheduler runs every few seconds
    assert got is not None and got.jid == soon.jid
    assert list(zset_jobs(srv, "scheduled")) == [later.jid]
    with pytest.raises(ValueError, match="naive"):
        Job("Naive", at=datetime.now()).to_dict()


def test_enterprise_job_options_are_custom_keys(fc: Client) -> None:
    job = Job("Opt", queue="oq").unique_for(60, until="start").expires_in(3600).track()
    fc.push(job)
    custom = fc.fetch("oq").custom  # type: ignore[union-attr]
    assert custom["unique_for"] == 60 and custom["unique_until"] == "start" and custom["track"] == 1
    expires = datetime.fromisoformat(custom["expires_at"])
    assert timedelta(minutes=59) < expires - datetime.now(UTC) <= timedelta(hours=1)
    dup = Job("Uniq", [1], queue="uq").unique_for(60)
    fc.push(dup)
    with pytest.raises(NotUniqueError) as err:
        fc.push(Job("Uniq", [1], queue="uq").unique_for(60))
    assert err.value.code == "NOTUNIQUE" and isinstance(err.value, ServerError)
    fc.push(Job("Gone", queue="eq").expires_at(datetime.now(UTC) - timedelta(seconds=1)))
    assert fc.fetch("eq") is None  # expired: discarded at FETCH


def test_info_queue_commands_and_mutate(srv: FaktoryServer, fc: Client) -> None:
    fc.push(Job("Q", queue="pq"))
    fc.queue_pause("pq")
    assert fc.fetch("pq") is None
    fc.queue_resume("pq")
    latency = fc.queue_latency("pq", "nothing")
    assert 0 <= latency["pq"] < 5 and latency["nothing"] == 0
    assert fc.fetch("pq") is not None
    fc.push(Job("Q", queue="rq"))
    fc.queue_remove("rq")
    assert "rq" not in fc.info()["faktory"]["queues"]
    # MUTATE: two failed jobs in the retry set, one killed by jid, the other requeued by type
    a, b = Job("MutA", queue="mq"), Job("MutB", queue="mq")
    for j in (a, b):
        fc.push(j)
        fc.fetch("mq")
        fc.fail(j.jid, "E", "boom")
    assert set(zset_jobs(srv, "retries")) == {a.jid, b.jid}
    fc.mutate("kill", "retries", jids=[a.jid])
    assert set(zset_jobs(srv, "dead")) == {a.jid}
    fc.mutate("requeue", "retries", jobtype="MutB")
    assert zset_jobs(srv, "retries") == {} and queue_size(fc, "mq") == 1
    fc.mutate("clear", "dead")
    assert zset_jobs(srv, "dead") == {}
    with pytest.raises(ValueError, match="space"):
        fc.mutate("discard", "dead", jobtype="has space")


# ---------------------------------------------------------------------------------------------
# asyncio


def test_async_round_trip_and_bulk(srv: FaktoryServer) -> None:
    async def main() -> None:
        async with AsyncClient(srv.url) as c:
            job = Job("Async", [1], queue="aq", custom={"a": 1})
            assert await c.push(job) == job.jid
            assert await c.push_bulk([Job("Async", [2], queue="aq"), Job("", queue="aq")]) != {}
            got = await c.fetch("aq")
            assert got is not None and got.jid == job.jid and got.custom == {"a": 1}
            await c.ack(got.jid)
            second = await c.fetch("aq")
            assert second is not None and second.args == [2]
            await c.fail(second.jid, "AsyncError", "nope", ["here"])
            info = await c.info()
            assert info["faktory"]["sets"]["retries"] == 1 and info["faktory"]["total_failures"] == 1
            await c.queue_pause("aq")
            await c.queue_resume("aq")
            assert (await c.queue_latency("aq")) == {"aq": 0}
        failure = zset_jobs(srv, "retries")[second.jid]["failure"]
        assert (failure["errtype"], failure["message"], failure["backtrace"]) == \
            ("AsyncError", "nope", ["here"])
    asyncio.run(main())


def test_async_client_shared_by_tasks_takes_turns(srv: FaktoryServer) -> None:
    """Concurrent tasks on one AsyncClient: each command gets its own reply."""
    async def main() -> None:
        async with AsyncClient(srv.url) as c:
            jids = await asyncio.gather(*(c.push(Job("Turn", [i], queue="tq")) for i in range(50)))
            assert len(set(jids)) == 50
            assert (await c.info())["faktory"]["queues"]["tq"] == 50
    asyncio.run(main())


def test_async_pipelined_commands(srv: FaktoryServer, fc: Client) -> None:
    """run_pipelined: one write, the replies in order, an error in place of its result."""
    good, bad = Job("Pipe", [1], queue="pipeq"), Job("Pipe", queue="bad queue")

    async def main() -> list[Any]:
        async with AsyncClient(srv.url) as c:
            return await c.run_pipelined([cmds.push(good), cmds.push(bad), cmds.info(),
                                          cmds.fetch(["pipeq"])])
    pushed, refused, info, fetched = asyncio.run(main())
    assert pushed is None and isinstance(refused, ServerError) and "queue names" in str(refused)
    assert info["faktory"]["queues"]["pipeq"] == 1
    assert fetched.jid == good.jid and fc.info()["faktory"]["sets"]["working"] == 1


# ---------------------------------------------------------------------------------------------
# pools


def test_pool_under_threads(srv: FaktoryServer, fc: Client) -> None:
    with Pool(srv.url, size=4) as pool:
        errors: list[BaseException] = []

        def produce(n: int) -> None:
            try:
                for i in range(25):
                    pool.push(Job("Pooled", [n, i], queue="poolq"))
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=produce, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert errors == []
        assert len(pool._idle) <= 4
    assert queue_size(fc, "poolq") == 200
    # the pool's connections were closed (the server sees the closes on its own time)
    wait_for(lambda: fc.info()["server"]["connections"] <= 2)


def test_async_pool_under_tasks(srv: FaktoryServer, fc: Client) -> None:
    async def main() -> int:
        async with AsyncPool(srv.url, size=3) as pool:
            await asyncio.gather(*(pool.push(Job("APooled", [i], queue="apq")) for i in range(120)))
            assert len(pool._idle) == 3
            return len(pool._idle)
    assert asyncio.run(main()) == 3
    assert queue_size(fc, "apq") == 120


# ---------------------------------------------------------------------------------------------
# URLs, password, TLS


@pytest.fixture(scope="module")
def password_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaktoryServer]:
    s = FaktoryServer(str(tmp_path_factory.mktemp("client-pw")), processes=1,
                      password="pa:ss/w0rd").start()
    yield s
    s.stop()


def test_password_in_url_env_and_argument(password_server: FaktoryServer,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    port = password_server.port
    with Client(f"tcp://:pa%3Ass%2Fw0rd@127.0.0.1:{port}") as c:  # URL-escaped
        c.push(Job("Pw", queue="pwq"))
    monkeypatch.setenv("FAKTORY_PASSWORD", "pa:ss/w0rd")
    monkeypatch.setenv("MY_FAKTORY", f"tcp://127.0.0.1:{port}")
    monkeypatch.setenv("FAKTORY_PROVIDER", "MY_FAKTORY")
    with Client() as c:
        assert c.info()["faktory"]["queues"]["pwq"] == 1
    monkeypatch.delenv("FAKTORY_PASSWORD")
    with pytest.raises(AuthenticationError, match="requires a password"):
        Client().connect()
    with pytest.raises(AuthenticationError, match="Invalid password"):
        Client(password="wrong").connect()

    async def main() -> int:
        async with AsyncClient(password="pa:ss/w0rd") as c:
            return (await c.info())["faktory"]["queues"]["pwq"]
        raise AssertionError("unreachable")
    assert asyncio.run(main()) == 1


def _openssl() -> str:
    found = shutil.which("openssl")
    if found is None:
        pytest.skip("openssl is not installed (make test installs Debian's openssl)")
    return found


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FaktoryServer, str]]:
    """The server's own TLS (its config directory's certificate files), self-signed."""
    d = tmp_path_factory.mktemp("client-tls")
    conf = d / "conf"
    conf.mkdir()
    cert, key = str(conf / "public.cert.pem"), str(conf / "private.key.pem")
    subprocess.run([_openssl(), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-keyout", key, "-out", cert, "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    s = FaktoryServer(str(d), processes=1, password="tls-pw").start()
    yield s, cert
    s.stop()


def test_tls_sync_and_async(tls_server: tuple[FaktoryServer, str]) -> None:
    server, cert = tls_server
    url = f"tcp+tls://:tls-pw@localhost:{server.port}"
    ctx = ssl.create_default_context(cafile=cert)
    with Client(url, ssl_context=ctx) as c:
        job = Job("Tls", ["secret"], queue="tlsq")
        c.push(job)
        got = c.fetch("tlsq")
        assert got is not None and got.args == ["secret"]
        c.ack(got.jid)
    with pytest.raises(FaktoryConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        Client(url).connect()  # the system's trust store does not know the self-signed cert
    with pytest.raises(FaktoryConnectionError):
        Client(f"tcp://:tls-pw@localhost:{server.port}", connect_timeout=2, timeout=2).info()

    async def main() -> dict[str, Any]:
        async with AsyncClient(url, ssl_context=ctx) as a:
            await a.push(Job("Tls", [2], queue="tlsq"))
            return await a.info()
    assert asyncio.run(main())["faktory"]["queues"]["tlsq"] == 1


def test_worker_over_tls_with_password(tls_server: tuple[FaktoryServer, str]) -> None:
    server, cert = tls_server
    url = f"tcp+tls://:tls-pw@localhost:{server.port}"
    ctx = ssl.create_default_context(cafile=cert)
    done = threading.Event()
    w = Worker(url, ssl_context=ctx, queues=["tlsw"], concurrency=2, beat_interval=0.2)
    w.register("TlsJob", lambda x: done.set() if x == "ok" else None)
    with Client(url, ssl_context=ctx) as c:
        c.push(Job("TlsJob", ["ok"], queue="tlsw"))
        c.push(Job("TlsJob", ["ok"], queue="tlsw"))
        t = threading.Thread(target=w.run)
        t.start()
        try:
            assert done.wait(10)
            wait_for(lambda: c.info()["faktory"]["sets"]["working"] == 0
                     and c.info()["faktory"]["queues"]["tlsw"] == 0)
            assert c.info()["faktory"]["sets"]["retries"] == 0  # ACKed, not FAILed
            assert w.state == "running"  # its BEATs over TLS were answered
        finally:
            w.terminate()
            t.join(15)
        assert not t.is_alive()


# ---------------------------------------------------------------------------------------------
# broken connections


def test_idle_connection_closed_by_the_server_is_replaced(proxy: CuttingProxy, fc: Client) -> None:
    c = Client(proxy.url)
    c.push(Job("Before", queue="xq"))
    proxy.cut()
    wait_for(lambda: c._conn is not None and c._conn.closed_by_peer(), timeout=5)
    c.push(Job("After", queue="xq"))  # on a new connection, nothing raised
    assert proxy.accepted == 2 and queue_size(fc, "xq") == 2
    c.close()


def test_unanswered_push_raises_and_reads_retry_once(proxy: CuttingProxy, fc: Client) -> None:
    c = Client(proxy.url)
    c.connect()
    proxy.cut_after_request()
    job = Job("Maybe", queue="uq")
    with pytest.raises(UnansweredError, match="no reply"):
        c.push(job)
    # It did land this time (the server runs it when it reads it, maybe after our look):
    # UnansweredError says "maybe".
    wait_for(lambda: queue_size(fc, "uq") == 1)
    c.connect()  # (the handshake is not what the proxy cuts next)
    proxy.cut_after_request()
    assert c.info()["faktory"]["queues"]["uq"] == 1  # INFO is resent on a new connection
    assert proxy.accepted == 3
    c.push(Job("Later", queue="uq"))
    assert queue_size(fc, "uq") == 2
    c.close()
    assert issubclass(UnansweredError, FaktoryConnectionError)


def test_async_unanswered_push_and_retried_read(proxy: CuttingProxy, fc: Client) -> None:
    async def main() -> None:
        c = AsyncClient(proxy.url)
        await c.connect()
        proxy.cut_after_request()
        with pytest.raises(UnansweredError):
            await c.push(Job("Maybe", queue="auq"))
        await c.connect()
        proxy.cut_after_request()
        assert (await c.info())["faktory"]["queues"]["auq"] == 1
        proxy.cut()
        await asyncio.sleep(0)  # let the loop see the EOF
        for _ in range(100):
            if c._conn is not None and c._conn.closed_by_peer():
                break
            await asyncio.sleep(0.01)
        await c.push(Job("After", queue="auq"))  # the closed idle connection was replaced
        await c.close()
    asyncio.run(main())
    assert queue_size(fc, "auq") == 2


class SilentServer:
    """Greets, accepts any HELLO, then answers nothing (a server that hangs)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"tcp://127.0.0.1:{self.listener.getsockname()[1]}"
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.conns.append(conn)
            conn.sendall(b'+HI {"v":2}\r\n')
            conn.recv(65536)  # HELLO
            conn.sendall(b"+OK\r\n")

    def close(self) -> None:
        self.listener.close()
        for c in self.conns:
            c.close()


def test_a_reply_that_never_comes_times_out() -> None:
    silent = SilentServer()
    try:
        c = Client(silent.url, timeout=0.3)
        started = time.monotonic()
        with pytest.raises(UnansweredError):
            c.push(Job("Hang"))
        with pytest.raises(UnansweredError, match="twice"):
            c.info()  # resent once on a new connection, unanswered again
        c.close()

        async def main() -> None:
            a = AsyncClient(silent.url, timeout=0.3)
            with pytest.raises(UnansweredError):
                await a.push(Job("Hang"))
            with pytest.raises(UnansweredError, match="twice"):
                await a.info()
            with pytest.raises(UnansweredError):
                await a.run_pipelined([cmds.info(), cmds.info()])
            await a.close()
        asyncio.run(main())
        assert time.monotonic() - started < 5
    finally:
        silent.close()


def test_nobody_listening_is_a_connection_error() -> None:
    s = socket.create_server(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(FaktoryConnectionError, match="cannot connect") as err:
        Client(f"tcp://127.0.0.1:{port}").push(Job("Nowhere"))
    assert not isinstance(err.value, UnansweredError)
