"""The wire layer: one asyncio.Protocol per client connection.

It frames lines (``wire.CommandParser``), runs the handshake and dispatches each command through
``COMMANDS`` to ``Lifecycle``; replies are serialised with ``wire``. No job logic lives here.
Commands of one connection run strictly one after another, so replies keep their order even
when a client pipelines. A command answers at once, or returns ``LATER`` and is answered through
``Connection.answer``: the hot ones (PUSH, FETCH, ACK) straight from their Redis reply callback,
the others when the task running their coroutine ends.
"""
from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import logging
import secrets
from typing import Any, Awaitable, Callable

import orjson

from faktory_fast import wire
from faktory_fast.jobs import JobError
from faktory_fast.lifecycle import Lifecycle, now_str, run_then

log = logging.getLogger("faktory_fast")

HANDSHAKE_TIMEOUT = 2.0
SHUTDOWN = wire.error("shutdown in progress")
# Queued after the commands that preceded a line over the length limit.
_OVERFLOW: tuple = (None, None)
# A command's answer will come later, through Connection.answer.
LATER = object()
_STATE_REPLY = {"quiet": wire.bulk(b'{"state":"quiet"}'),
                "terminate": wire.bulk(b'{"state":"terminate"}')}


def password_hash(password: str, salt: str, iterations: int) -> str:
    """Faktory's HELLO pwdhash: SHA-256 of password+salt, then iterations-1 more rounds."""
    digest = hashlib.sha256(password.encode() + salt.encode()).digest()
    for _ in range(iterations - 1):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()


class ServerState:
    """What the connections of one server process share."""

    def __init__(self, lifecycle: Lifecycle, password: str = "", max_line: int = 16 << 20,
                 max_connections: int = 2000, environment: str = "development") -> None:
        self.lifecycle = lifecycle
        self.environment = environment
        self.password = password
        self.max_line = max_line
        self.max_connections = max_connections
        self.connections: set[Connection] = set()
        self.by_wid: dict[str, set[Connection]] = {}
        self.shutting_down = False
        lifecycle.on_reap = self.close_worker

    def close_worker(self, wid: str) -> None:
        """A reaped worker: close all of its connections in this process."""
        for conn in list(self.by_wid.get(wid, ())):
            log.info("Closing connection of reaped worker %s", wid)
            conn.close()

    def shutdown(self) -> None:
        """Refuse further commands; idle connections are told so and closed now."""
        self.shutting_down = True
        self.lifecycle.stop_waiting()
        for conn in list(self.connections):
            if not conn.busy:
                conn.write_and_close(SHUTDOWN)


class Connection:
    """One client connection: handshake, then commands in order.

    An asyncio protocol by its methods: built, this is an extension type (``server.pxd``),
    which cannot subclass ``asyncio.Protocol``.
    """

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.lc = state.lifecycle
        self.loop = state.lifecycle.loop  # loop.create_task: no get_running_loop() per command
        self.parser = wire.CommandParser(state.max_line)
        self.transport: asyncio.Transport | None = None
        self.pending: collections.deque[tuple[bytes, bytes]] = collections.deque()
        self.busy = False
        self.verb = b""  # of the command in flight, for the log
        self.identified = False
        self.wid = ""
        self.salt = ""
        self.iterations = 0
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.state.shutting_down:
            transport.close()
            return
        self.state.connections.add(self)
        hi: dict = {"v": 2}
        if self.state.password:
            self.iterations = secrets.randbelow(4096) + 4000
            self.salt = format(secrets.randbits(63), "x")
            hi.update(i=self.iterations, s=self.salt)
        transport.write(b"+HI " + orjson.dumps(hi) + b"\r\n")  # type: ignore[attr-defined]
        self._timer = self.loop.call_later(HANDSHAKE_TIMEOUT, self._handshake_late)

    def data_received(self, data: bytes) -> None:
        self.pending.extend(self.parser.feed(data))
        if self.parser.overflow:
            self.pending.append(_OVERFLOW)
        if not self.busy:
            self._next()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.pending.clear()
        if self._timer is not None:
            self._timer.cancel()
        st = self.state
        st.connections.discard(self)
        if self.identified:
            conns = st.by_wid.get(self.wid)
            if conns is not None:
                conns.discard(self)
                if not conns:
                    del st.by_wid[self.wid]
            self.loop.create_task(self._bye())

    async def _bye(self) -> None:
        try:
            await self.lc.store.bye(self.lc.proc, self.wid)
        except Exception as exc:  # Redis gone: the supervisor deals with that
            log.debug("bye failed: %s", exc)

    # -- helpers -------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection; nothing more is written to it."""
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    def write_and_close(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)
            self.close()

    def _handshake_late(self) -> None:
        if not self.identified:
            self.close()

    # -- command loop ------------------------------------------------------------------------
    def _next(self) -> None:
        """Run queued commands in order until one has to wait; its answer resumes the loop."""
        pending = self.pending
        state = self.state
        while pending and self.transport is not None:
            item = pending.popleft()
            if item is _OVERFLOW:
                self.write_and_close(wire.error(f"line too long: the limit is {state.max_line} bytes"))
                return
            if state.shutting_down:
                self.write_and_close(SHUTDOWN)
                return
            verb, payload = item
            if self.identified:
                self.lc.commands += 1
                handler = COMMANDS.get(verb)
            elif verb == b"HELLO":
                handler = _HELLO
            else:
                self.close()  # Faktory closes without a word
                return
            if handler is None:
                reply: Any = wire.error("unknown command " + verb.decode(errors="replace"))
            else:
                self.busy = True
                self.verb = verb
                try:
                    reply = handler(self, payload)
                except Exception as exc:
                    reply = _error_reply(verb, exc)
                if reply is LATER:  # the handler calls self.answer when it is done
                    return
                self.busy = False
            self._send(reply)

    def answer(self, reply: Any) -> None:
        """Finish the command in flight: its reply (bytes), None to close, or an exception."""
        self.busy = False
        if isinstance(reply, BaseException):
            reply = _error_reply(self.verb, reply)
        self._send(reply)
        self._next()

    def _send(self, reply: bytes | None) -> None:
        if reply is None:  # END
            self.close()
        elif self.transport is not None:
            self.transport.write(reply)
            if self.state.shutting_down and not self.pending:
                self.write_and_close(SHUTDOWN)

    def _answer_ok(self, reply: Any) -> None:
        self.answer(reply if isinstance(reply, BaseException) else wire.OK)

    def _answer_job(self, job: Any) -> None:
        if type(job) is bytes and self.transport is None:
            # The client left while it waited: nobody got the job.
            run_then(self.loop, self.lc.release(job), self.answer)
        else:
            self.answer(job if isinstance(job, BaseException) else wire.bulk(job))

    async def _hello(self, payload: bytes) -> bytes:
        if not payload.startswith(b"{"):
            self.close()
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
            self.close()
            return b""
        if self.state.password:
            # Clients that speak v1 (the Python `faktory` package) hash once.
            rounds = self.iterations if v >= 2 else 1
            expected = password_hash(self.state.password, self.salt, rounds)
            if not hmac.compare_digest(expected.encode(), pwdhash.encode()):
                self.write_and_close(wire.error("Invalid password"))
                return b""
        lc = self.lc
        over = await lc.store.hello(lc.proc, self.state.max_connections, wid, hostname, pid,
                                    orjson.dumps(labels), v, now_str())
        if over:
            log.warning("Too many connections: %d", over)
            self.write_and_close(wire.error(f"too many connections: {over}"))
            return b""
        self.identified = True
        self.wid = wid
        if self._timer is not None:
            self._timer.cancel()
        if self.transport is None:  # gone while we registered it
            self.loop.create_task(self._bye())
            return b""
        self.state.by_wid.setdefault(wid, set()).add(self)
        return wire.OK

    # -- commands (the command table below names these) ------------------------------------
    # A command returns its reply (None closes the connection), or LATER and calls
    # self.answer when its Redis reply is in; coroutine commands are run by _awaiting.
    def cmd_end(self, payload: bytes) -> None:
        return None

    def cmd_push(self, payload: bytes) -> object:
        self.lc.push(payload, self._answer_ok)
        return LATER

    def cmd_fetch(self, payload: bytes) -> object:
        queues = [q for q in payload.decode(errors="replace").split(" ") if q]
        if not queues:
            raise JobError("must call fetch with at least one queue")
        self.lc.fetch(queues, self.wid, self._answer_job)
        return LATER

    def cmd_ack(self, payload: bytes) -> object:
        self.lc.ack(payload, self._answer_ok)
        return LATER

    async def cmd_pushb(self, payload: bytes) -> bytes:
        return wire.bulk(await self.lc.push_bulk(payload))

    async def cmd_fail(self, payload: bytes) -> bytes:
        await self.lc.fail(payload)
        return wire.OK

    async def cmd_beat(self, payload: bytes) -> bytes:
        state = await self.lc.beat(payload)
        return _STATE_REPLY.get(state, wire.OK)

    async def cmd_info(self, payload: bytes) -> bytes:
        return wire.bulk(await self.lc.info())

    async def cmd_flush(self, payload: bytes) -> bytes:
        await self.lc.flush()
        # As Faktory: routine in development, worth a warning anywhere else.
        level = logging.INFO if self.state.environment == "development" else logging.WARNING
        log.log(level, "FLUSH by %s", self.wid or "a client")
        return wire.OK

    async def cmd_queue(self, payload: bytes) -> bytes:
        doc = await self.lc.queue(payload)
        return wire.OK if doc is None else wire.bulk(doc)

    async def cmd_mutate(self, payload: bytes) -> bytes:
        await self.lc.mutate(payload)
        return wire.OK

    def cmd_batch(self, payload: bytes) -> bytes:
        return wire.error("batch subsystem is only available in Faktory Enterprise")

    def cmd_track(self, payload: bytes) -> bytes:
        return wire.error("tracking subsystem is only available in Faktory Enterprise")


Handler = Callable[[Connection, bytes], Any]


def _awaiting(method: Callable[[Connection, bytes], Awaitable[bytes | None]]) -> Handler:
    """A command written as a coroutine: run it as a task and answer with its result."""
    def handler(conn: Connection, payload: bytes) -> object:
        run_then(conn.loop, method(conn, payload), conn.answer)
        return LATER
    return handler


def _error_reply(verb: bytes, exc: BaseException) -> bytes:
    if isinstance(exc, JobError):
        return wire.error(str(exc))
    log.error("Unexpected error in %s", verb.decode(errors="replace"), exc_info=exc)
    return wire.error("internal error")


_HELLO = _awaiting(Connection._hello)

COMMANDS: dict[bytes, Handler] = {
    b"END": Connection.cmd_end,
    b"PUSH": Connection.cmd_push,
    b"PUSHB": _awaiting(Connection.cmd_pushb),
    b"FETCH": Connection.cmd_fetch,
    b"ACK": Connection.cmd_ack,
    b"FAIL": _awaiting(Connection.cmd_fail),
    b"BEAT": _awaiting(Connection.cmd_beat),
    b"INFO": _awaiting(Connection.cmd_info),
    b"FLUSH": _awaiting(Connection.cmd_flush),
    b"QUEUE": _awaiting(Connection.cmd_queue),
    b"MUTATE": _awaiting(Connection.cmd_mutate),
    b"BATCH": Connection.cmd_batch,
    b"TRACK": Connection.cmd_track,
}

__all__ = ["Connection", "ServerState", "COMMANDS", "password_hash"]
