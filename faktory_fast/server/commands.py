"""The protocol's commands: the handshake (``+HI``, HELLO) and the command table.

``COMMANDS`` maps each verb to its handler, called with the connection and the command's
payload. A handler returns its reply (bytes; None closes the connection), or ``LATER`` and
has the connection answered when its Redis reply is in: the hot ones (PUSH, FETCH, ACK) from
their Redis reply callback, the others, written as coroutines, when the task running them ends
(``_awaiting``). What a command does is the lifecycle's; here it is read and answered. A new
command is a handler and its line in ``COMMANDS``.

The connection (``connection.Connection``) imports this module, not the other way round: what
a command may use of its connection is ``Client``.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import orjson

from faktory_fast.codec import wire
from faktory_fast.jobs import JobError
from faktory_fast.server.lifecycle import Lifecycle
from faktory_fast.storage.redis_client import Then

log = logging.getLogger("faktory_fast")

# A command's answer will come later, through Client.answer.
LATER = object()
_STATE_REPLY = {"quiet": wire.bulk(b'{"state":"quiet"}'),
                "terminate": wire.bulk(b'{"state":"terminate"}')}


class Shared(Protocol):
    """What a command reads of the server process's shared state (``ServerState``)."""

    @property
    def password(self) -> str: ...
    @property
    def max_connections(self) -> int: ...
    @property
    def environment(self) -> str: ...
    @property
    def commands(self) -> int: ...


class Client(Protocol):
    """What a command uses of its connection (``Connection``)."""

    @property
    def state(self) -> Shared: ...
    @property
    def lc(self) -> Lifecycle: ...
    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...
    @property
    def wid(self) -> str: ...
    @property
    def salt(self) -> str: ...
    @property
    def iterations(self) -> int: ...

    def answer(self, reply: Any) -> None:
        """Finish the command in flight: its reply, None to close, or an exception."""

    def answer_ok(self, reply: Any) -> None:
        """Answer ``+OK``, or the exception."""

    def answer_job(self, job: Any) -> None:
        """Answer FETCH's job (or nil, or the exception)."""

    def close(self) -> None:
        """Close the connection without a word."""

    def write_and_close(self, data: bytes) -> None:
        """Write ``data``, then close."""

    def address(self) -> str:
        """The client's address."""

    def identify(self, wid: str) -> bool:
        """The handshake is done: the connection serves worker ``wid`` from now on; False if
        the client left meanwhile."""


Handler = Callable[[Client, bytes], Any]


def password_hash(password: str, salt: str, iterations: int) -> str:
    """Faktory's HELLO pwdhash: SHA-256 of password+salt, then iterations-1 more rounds."""
    digest = hashlib.sha256(password.encode() + salt.encode()).digest()
    for _ in range(iterations - 1):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()


def greeting(password: str) -> tuple[bytes, str, int]:
    """The ``+HI`` line a new connection gets, with the salt and the iterations its HELLO's
    pwdhash must use when the server has a password (else "" and 0)."""
    hi: dict = {"v": 2}
    salt, iterations = "", 0
    if password:
        iterations = secrets.randbelow(4096) + 4000
        salt = format(secrets.randbits(63), "x")
        hi.update(i=iterations, s=salt)
    return b"+HI " + orjson.dumps(hi) + b"\r\n", salt, iterations


async def _hello(conn: Client, payload: bytes) -> bytes:
    if not payload.startswith(b"{"):
        conn.close()
        return b""
    try:
        hello = orjson.loads(payload)
        if not isinstance(hello, dict):
            raise ValueError
        v = hello.get("v") or 0
        wid = hello.get("wid") or ""
        hostname = hello.get("hostname") or ""
        pid = hello.get("pid") or 0
        labels = hello.get("labels") or []
        pwdhash = hello.get("pwdhash") or ""
        if (type(v) is not int or type(wid) is not str or type(hostname) is not str
                or type(pid) is not int or type(pwdhash) is not str
                or not isinstance(labels, list) or any(type(x) is not str for x in labels)):
            raise ValueError
    except ValueError:
        conn.close()
        return b""
    state = conn.state
    if state.password:
        # Clients that speak v1 (the Python `faktory` package) hash once.
        rounds = conn.iterations if v >= 2 else 1
        expected = password_hash(state.password, conn.salt, rounds)
        if not hmac.compare_digest(expected.encode(), pwdhash.encode()):
            conn.write_and_close(wire.error("Invalid password"))
            return b""
    addr = conn.address()
    over = await conn.lc.hello(state.max_connections, wid, hostname, pid, labels, v, addr)
    if over:
        log.warning("Too many connections: %d (refused %s)", over, addr or "a client")
        conn.write_and_close(wire.error(f"too many connections: {over}"))
        return b""
    return wire.OK if conn.identify(wid) else b""


def cmd_end(conn: Client, payload: bytes) -> None:
    return None


def cmd_push(conn: Client, payload: bytes) -> object:
    conn.lc.push(payload, conn.answer_ok)
    return LATER


def cmd_fetch(conn: Client, payload: bytes) -> object:
    queues = [q for q in payload.decode(errors="replace").split(" ") if q]
    if not queues:
        raise JobError("must call fetch with at least one queue")
    conn.lc.fetch(queues, conn.wid, conn.answer_job)
    return LATER


def cmd_ack(conn: Client, payload: bytes) -> object:
    conn.lc.ack(payload, conn.answer_ok)
    return LATER


async def cmd_pushb(conn: Client, payload: bytes) -> bytes:
    return wire.bulk(await conn.lc.push_bulk(payload))


async def cmd_fail(conn: Client, payload: bytes) -> bytes:
    await conn.lc.fail(payload)
    return wire.OK


async def cmd_beat(conn: Client, payload: bytes) -> bytes:
    state = await conn.lc.beat(payload)
    return _STATE_REPLY.get(state, wire.OK)


async def cmd_info(conn: Client, payload: bytes) -> bytes:
    return wire.bulk(await conn.lc.info(conn.state.commands))


async def cmd_flush(conn: Client, payload: bytes) -> bytes:
    await conn.lc.flush()
    # As Faktory: routine in development, worth a warning anywhere else.
    level = logging.INFO if conn.state.environment == "development" else logging.WARNING
    log.log(level, "FLUSH by %s", conn.wid or "a client")
    return wire.OK


async def cmd_queue(conn: Client, payload: bytes) -> bytes:
    doc = await conn.lc.queue(payload)
    return wire.OK if doc is None else wire.bulk(doc)


async def cmd_mutate(conn: Client, payload: bytes) -> bytes:
    await conn.lc.mutate(payload)
    return wire.OK


async def cmd_batch(conn: Client, payload: bytes) -> bytes:
    reply = await conn.lc.batches.batch(payload)
    if reply is None:
        return wire.OK
    if isinstance(reply, str):  # a bid, as a simple string (Go reads it with readString)
        return b"+%b\r\n" % reply.encode()
    return wire.bulk(reply)


async def cmd_track(conn: Client, payload: bytes) -> bytes:
    doc = await conn.lc.batches.track(payload)
    return wire.OK if doc is None else wire.bulk(doc)


def _awaiting(command: Callable[[Client, bytes], Coroutine[Any, Any, bytes | None]]) -> Handler:
    """A command written as a coroutine: run it as a task and answer with its result."""
    def handler(conn: Client, payload: bytes) -> object:
        run_then(conn.loop, command(conn, payload), conn.answer)
        return LATER
    return handler


def run_then(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], then: Then) -> None:
    """Run ``coro`` as a task; ``then`` gets its result, or the exception it raised."""
    loop.create_task(_then(coro, then))


async def _then(coro: Coroutine[Any, Any, Any], then: Then) -> None:
    # Calls `then` inside the task's last step: a done-callback would wait a loop iteration.
    try:
        result = await coro
    except Exception as exc:
        then(exc)
    else:
        then(result)


#: The handshake's one command, the only one before it is done.
HELLO: Handler = _awaiting(_hello)

COMMANDS: dict[bytes, Handler] = {
    b"END": cmd_end,
    b"PUSH": cmd_push,
    b"PUSHB": _awaiting(cmd_pushb),
    b"FETCH": cmd_fetch,
    b"ACK": cmd_ack,
    b"FAIL": _awaiting(cmd_fail),
    b"BEAT": _awaiting(cmd_beat),
    b"INFO": _awaiting(cmd_info),
    b"FLUSH": _awaiting(cmd_flush),
    b"QUEUE": _awaiting(cmd_queue),
    b"MUTATE": _awaiting(cmd_mutate),
    b"BATCH": _awaiting(cmd_batch),
    b"TRACK": _awaiting(cmd_track),
}

__all__ = ["COMMANDS", "HELLO", "LATER", "Client", "Handler", "greeting", "password_hash",
           "run_then"]
