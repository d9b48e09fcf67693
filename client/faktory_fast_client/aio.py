"""The asyncio client: :class:`AsyncClient` has :class:`~faktory_fast_client.Client`'s methods,
awaited, on asyncio streams. One command at a time per client (an internal lock makes
concurrent tasks take turns); tasks that push in parallel share an
:class:`~faktory_fast_client.AsyncPool`."""
from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from . import commands as cmds
from .batch import AsyncBatch, BatchStatus
from .client import CLOSING_ERRORS, Broken, Settings
from .errors import (
    AuthenticationError,
    FaktoryConnectionError,
    FaktoryError,
    ServerError,
    UnansweredError,
)
from .job import Job
from .protocol import Bulk, hello, parse_line
from .tracking import JobTrack

T = TypeVar("T")

STREAM_LIMIT = 1 << 24  # the longest reply line accepted (bulk replies are not lines)


class AsyncConnection:
    """One handshaken stream pair; errors leave it unusable."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    timeout: float
    # The reply timeout: one timer per connection, re-armed when it fires, instead of one per
    # command (asyncio.timeout costs about a sixth of a command's CPU). A command sets
    # ``deadline``; the timer aborts the connection once a deadline has passed.
    deadline: float | None = None
    timed_out = False
    _watchdog: asyncio.TimerHandle | None = None
    _loop: asyncio.AbstractEventLoop

    @classmethod
    async def open(cls, settings: Settings) -> AsyncConnection:
        self = cls()
        address, ssl_context = settings.address, settings.ssl_context
        self.timeout = timeout = settings.timeout
        try:
            async with asyncio.timeout(settings.connect_timeout):
                self.reader, self.writer = await asyncio.open_connection(
                    address.host, address.port, ssl=ssl_context, limit=STREAM_LIMIT,
                    server_hostname=address.host if ssl_context is not None else None)
        except (OSError, TimeoutError) as exc:
            raise FaktoryConnectionError(f"cannot connect to {address.url}: {exc}") from exc
        try:
            async with asyncio.timeout(timeout):
                greeting = await self.read_reply()
                if not isinstance(greeting, str):
                    raise FaktoryError(f"unexpected greeting {greeting!r}")
                self.writer.write(hello(greeting, password=address.password,
                                        username=address.username, **settings.hello_fields))
                try:
                    ok = await self.read_reply()
                except ServerError as exc:
                    raise AuthenticationError(str(exc)) from exc
                except ConnectionError as exc:
                    raise AuthenticationError(f"the server closed the connection at HELLO: {exc}") from exc
                if ok != "OK":
                    raise FaktoryError(f"unexpected HELLO reply {ok!r}")
            self._loop = asyncio.get_running_loop()
            self._watchdog = self._loop.call_later(timeout, self._watch)
        except BaseException as exc:
            self.writer.close()
            if isinstance(exc, OSError | asyncio.IncompleteReadError) \
                    and not isinstance(exc, FaktoryError):
                raise FaktoryConnectionError(f"handshake with {address.url} failed: {exc}") from exc
            raise
        return self

    async def read_reply(self) -> str | int | None:
        line = await self.reader.readline()
        if not line:
            raise ConnectionResetError("connection closed by the server")
        reply = parse_line(line)
        if isinstance(reply, Bulk):
            data = await self.reader.readexactly(reply + 2)
            return data[:reply].decode()
        return reply

    def _watch(self) -> None:
        now = self._loop.time()
        if self.deadline is not None and now >= self.deadline:
            self.timed_out = True
            self.writer.transport.abort()  # the pending read fails: see replies()
            return
        wait = self.timeout if self.deadline is None else self.deadline - now
        self._watchdog = self._loop.call_later(wait, self._watch)

    async def call(self, line: bytes) -> str | int | None:
        """Write one command, read its reply within the timeout (an error reply raises)."""
        [reply] = await self.replies(line, 1)
        if isinstance(reply, ServerError):
            raise reply
        return reply

    async def replies(self, lines: bytes, n: int) -> list[str | int | None | ServerError]:
        """Write ``lines`` (``n`` commands), read their ``n`` replies within the timeout; an
        error reply stands as its ServerError."""
        self.writer.write(lines)
        self.deadline = self._loop.time() + self.timeout
        out: list[str | int | None | ServerError] = []
        try:
            for _ in range(n):
                try:
                    out.append(await self.read_reply())
                except ServerError as exc:
                    out.append(exc)
        except (OSError, asyncio.IncompleteReadError) as exc:
            if self.timed_out:
                raise TimeoutError(f"no reply within {self.timeout} s") from exc
            raise
        finally:
            self.deadline = None
        return out

    def closed_by_peer(self) -> bool:
        return self.reader.at_eof() or self.writer.is_closing()

    def close(self, send_end: bool = False) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        if send_end and not self.writer.is_closing():
            self.writer.write(b"END\r\n")  # END gets no reply
        self.writer.close()


class AsyncClient:
    """An asyncio Faktory client; the arguments and the failure rules of
    :class:`~faktory_fast_client.Client`. ``async with AsyncClient() as c: await c.push(...)``."""

    def __init__(self, url: str | None = None, *, password: str | None = None,
                 ssl_context: ssl.SSLContext | None = None, timeout: float = 10.0,
                 connect_timeout: float = 5.0, wid: str | None = None,
                 labels: list[str] | None = None, hostname: str | None = None) -> None:
        self.settings = Settings.make(url, password=password, ssl_context=ssl_context,
                                      timeout=timeout, connect_timeout=connect_timeout, wid=wid,
                                      labels=labels, hostname=hostname)
        self.address = self.settings.address
        self.wid = wid
        self._conn: AsyncConnection | None = None
        self._lock = asyncio.Lock()

    async def connect(self) -> AsyncClient:
        """Open the connection now (otherwise the first command does)."""
        if self._conn is None:
            self._conn = await AsyncConnection.open(self.settings)
        return self

    async def close(self) -> None:
        """Say END and close the connection."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close(send_end=True)
            try:
                await conn.writer.wait_closed()
            except (OSError, ssl.SSLError):
                pass

    async def __aenter__(self) -> AsyncClient:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def _ready(self) -> AsyncConnection:
        if self._conn is not None and self._conn.closed_by_peer():
            self._drop()
        if self._conn is None:
            await self.connect()  # FaktoryConnectionError here: nothing was written
        assert self._conn is not None
        return self._conn

    async def _attempt(self, line: bytes) -> str | int | None:
        conn = await self._ready()
        try:
            return await conn.call(line)
        except ServerError as exc:
            if exc.message.startswith(CLOSING_ERRORS):
                self._drop()
            raise
        except (OSError, ValueError, FaktoryError, asyncio.IncompleteReadError) as exc:
            self._drop()
            raise Broken(str(exc) or type(exc).__name__) from exc
        except BaseException:  # cancelled mid-command: the reply would be read by the next one
            self._drop()
            raise

    async def run(self, command: cmds.Command[T]) -> T:
        """Send one command and decode its reply (reconnecting as Client.run does)."""
        async with self._lock:
            try:
                reply = await self._attempt(command.line)
            except Broken as exc:
                if not command.idempotent:
                    raise UnansweredError(f"no reply from {self.address.url} to "
                                          f"{command.line[:40]!r}: {exc}") from exc
                try:
                    reply = await self._attempt(command.line)
                except Broken as again:
                    raise UnansweredError(f"no reply from {self.address.url} to "
                                          f"{command.line[:40]!r}, twice: {again}") from again
        return command.decode(reply)

    async def run_pipelined(self, commands: Sequence[cmds.Command[Any]]) -> list[Any]:
        """Write ``commands`` at once and read their replies in order: one round trip for all.
        Each result is the command's, or the ServerError it was answered with (the others still
        ran). A broken connection raises UnansweredError: any of them may have been applied,
        and none is resent."""
        async with self._lock:
            conn = await self._ready()
            try:
                replies = await conn.replies(b"".join(c.line for c in commands), len(commands))
                results = [r if isinstance(r, ServerError) else c.decode(r)
                           for c, r in zip(commands, replies)]
            except (OSError, ValueError, FaktoryError, asyncio.IncompleteReadError) as exc:
                self._drop()
                raise UnansweredError(f"no reply from {self.address.url} to "
                                      f"{len(commands)} commands: {exc}") from exc
            except BaseException:
                self._drop()
                raise
        return results

    async def push(self, job: Job | dict[str, Any]) -> str:
        """PUSH (see Client.push): its jid; UnansweredError: may or may not have landed."""
        await self.run(cmds.push(job))
        return job.jid if isinstance(job, Job) else str(job["jid"])

    async def push_bulk(self, jobs: Iterable[Job | dict[str, Any]]) -> dict[str, str]:
        """PUSHB: jid -> error of the jobs refused."""
        return await self.run(cmds.push_bulk(jobs))

    async def fetch(self, *queues: str) -> Job | None:
        """FETCH from the queues in order; None after the server's 2 s wait."""
        return await self.run(cmds.fetch(queues or ("default",)))

    async def ack(self, jid: str) -> None:
        await self.run(cmds.ack(jid))

    async def fail(self, jid: str, errtype: str, message: str,
                   backtrace: list[str] | None = None) -> None:
        await self.run(cmds.fail(jid, errtype, message, backtrace))

    async def beat(self, current_state: str | None = None, rss_kb: int | None = None) -> str | None:
        """BEAT for this client's wid; ``quiet``/``terminate`` when the server asks, else None."""
        if not self.wid:
            raise FaktoryError("BEAT needs a client with a wid")
        return await self.run(cmds.beat(self.wid, current_state, rss_kb))

    async def info(self) -> dict[str, Any]:
        return await self.run(cmds.info())

    async def flush(self) -> None:
        await self.run(cmds.flush())

    async def queue_pause(self, *queues: str) -> None:
        await self.run(cmds.queue("PAUSE", queues))

    async def queue_resume(self, *queues: str) -> None:
        await self.run(cmds.queue("RESUME", queues))

    async def queue_remove(self, *queues: str) -> None:
        await self.run(cmds.queue("REMOVE", queues))

    async def queue_latency(self, *queues: str) -> dict[str, float]:
        return await self.run(cmds.queue_latency(queues))

    async def mutate(self, cmd: str, target: str, *, jobtype: str | None = None,
                     jids: list[str] | None = None, regexp: str | None = None) -> None:
        await self.run(cmds.mutate(cmd, target, jobtype=jobtype, jids=jids, regexp=regexp))

    def new_batch(self, *, success: Job | None = None, complete: Job | None = None,
                  description: str | None = None, parent_bid: str | None = None) -> AsyncBatch:
        return AsyncBatch(self, success=success, complete=complete, description=description,
                          parent_bid=parent_bid)

    async def batch_new(self, batch: AsyncBatch) -> AsyncBatch:
        if batch.bid:
            raise FaktoryError("bid must be blank when creating a new batch")
        batch.bid = await self.run(cmds.batch_new(batch.to_dict()))
        batch._state = "open"
        return batch

    async def batch_open(self, bid: str) -> AsyncBatch:
        batch = AsyncBatch(self, bid=await self.run(cmds.batch_open(bid)))
        batch._state = "open"
        return batch

    async def batch_commit(self, bid: str) -> None:
        await self.run(cmds.batch_commit(bid))

    async def batch_status(self, bid: str) -> BatchStatus:
        return BatchStatus.from_dict(await self.run(cmds.batch_status(bid)))

    async def track_get(self, jid: str) -> JobTrack:
        return JobTrack.from_dict(await self.run(cmds.track_get(jid)))

    async def track_set(self, jid: str, percent: int | None = None, desc: str | None = None,
                        reserve_until: datetime | str | None = None) -> None:
        await self.run(cmds.track_set(jid, percent, desc, reserve_until))
