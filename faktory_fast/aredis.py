"""A small asyncio Redis client built on the RESP codec in ``faktory_fast.resp``.

Commands issued during one event-loop iteration leave in one write (automatic pipelining):
with many client connections sharing one Redis connection per process, round trips and
syscalls are shared between them. Replies come back in order, so each caller's future is
resolved from a FIFO; per-connection reply order on the client side is kept by the server,
which handles one command of a client connection at a time.

A command's reply goes either to a future (``execute``) or straight to a callback
(``execute_cb``): the server's hot path uses callbacks, which spare it a Task, a Future and a
loop iteration per command.
"""
from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any, Awaitable, Callable, Union

from faktory_fast.config import parse_redis_url
from faktory_fast.resp import ReplyError, RespReader, pack_command

__all__ = ["RedisConnection", "connect", "ReplyError", "RedisClosed", "Then"]

log = logging.getLogger("faktory_fast")

# A reply callback: called with the reply, or with the ReplyError / RedisClosed instead.
Then = Callable[[Any], None]
# Write buffer limits of a Redis connection. Redis is near and drains its socket fast, so only a
# congested Redis fills this much, not a burst of big payloads (which would stop every client).
HIGH_WATER = 4 << 20
LOW_WATER = 1 << 20


class RedisClosed(ConnectionError):
    """The connection to Redis is gone."""


class RedisConnection:
    """One Redis connection; ``execute`` may be called from any number of tasks at once.

    An asyncio protocol by its methods: built, this is an extension type (``aredis.pxd``),
    which cannot subclass ``asyncio.Protocol``.
    """

    def __init__(self, on_push: Callable[[list], None] | None = None) -> None:
        self._reader = RespReader()
        self._pending: collections.deque[Union[asyncio.Future, Then]] = collections.deque()
        self._out: list[bytes] = []
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._flush_handle: asyncio.Handle | None = None
        # Pub/sub messages (when subscribed) go to on_push instead of a waiting future.
        self._on_push = on_push
        # Told True when the write buffer passes HIGH_WATER, False when it is back below
        # LOW_WATER (the server stops reading from its clients meanwhile).
        self.on_pressure: Callable[[bool], None] | None = None
        self.closed: asyncio.Future[None] = self._loop.create_future()

    # asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        transport.set_write_buffer_limits(HIGH_WATER, LOW_WATER)  # type: ignore[attr-defined]

    def pause_writing(self) -> None:
        if self.on_pressure is not None:
            self.on_pressure(True)

    def resume_writing(self) -> None:
        if self.on_pressure is not None:
            self.on_pressure(False)

    def data_received(self, data: bytes) -> None:
        pending = self._pending
        for reply in self._reader.feed(data):
            if self._on_push is not None and type(reply) is list and reply and reply[0] in (
                b"message", b"pmessage"
            ):
                self._on_push(reply)
                continue
            _deliver(pending.popleft(), reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        err = RedisClosed(f"Redis connection lost: {exc}" if exc else "Redis connection closed")
        while self._pending:
            _deliver(self._pending.popleft(), err)
        if not self.closed.done():
            self.closed.set_result(None)

    # API ----------------------------------------------------------------------------------
    def execute(self, *args: Any) -> Awaitable[Any]:
        """Send one command; the future resolves to its reply (errors raise ReplyError)."""
        fut = self._loop.create_future()
        self._send(fut, args)
        return fut

    def execute_cb(self, then: Then, *args: Any) -> None:
        """Send one command; ``then`` gets its reply (or the error) from ``data_received``."""
        self._send(then, args)

    def _send(self, waiter: Union[asyncio.Future, Then], args: tuple) -> None:
        if self._transport is None:
            raise RedisClosed("Redis connection closed")
        self._pending.append(waiter)
        self._out.append(pack_command(*args))
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)

    def fcall(self, function: str, *args: Any) -> Awaitable[Any]:
        """Call a function of our library (no KEYS: keys are named inside the function)."""
        return self.execute("FCALL", function, 0, *args)

    def _flush(self) -> None:
        self._flush_handle = None
        if self._transport is not None and self._out:
            out = self._out
            self._out = []
            self._transport.write(b"".join(out) if len(out) > 1 else out[0])

    def close(self) -> None:
        """Close the connection; pending commands fail with RedisClosed."""
        if self._transport is not None:
            self._flush()
            self._transport.close()


def _deliver(waiter: Union[asyncio.Future, Then], reply: Any) -> None:
    """Hand a reply (or ReplyError / RedisClosed) to whoever sent the command."""
    if not isinstance(waiter, asyncio.Future):
        try:
            waiter(reply)
        except Exception:  # one callback's failure must not strand the replies behind it
            log.exception("Error in a Redis reply callback")
    elif waiter.done():
        pass  # cancelled
    elif isinstance(reply, Exception):
        waiter.set_exception(reply)
    else:
        waiter.set_result(reply)


async def connect(url: str, on_push: Callable[[list], None] | None = None) -> RedisConnection:
    """Open a connection to the Redis at ``url`` and select its database."""
    loop = asyncio.get_running_loop()
    target = parse_redis_url(url)
    if "path" in target:
        _, conn = await loop.create_unix_connection(lambda: RedisConnection(on_push), target["path"])
    else:
        _, conn = await loop.create_connection(
            lambda: RedisConnection(on_push), target["host"], target["port"],
            ssl=True if target.get("ssl") else None,
        )
    if target["password"]:
        await conn.execute("AUTH", target["password"])
    if target["db"]:
        await conn.execute("SELECT", target["db"])
    return conn
