"""The wire layer: one asyncio.Protocol per client connection.

It frames lines (``wire.CommandFramer``), sends each command in order to its handler in
``commands`` (the handshake's and the command table) and writes the replies. Commands of one
connection run strictly one after another, so replies keep their order even when a client
pipelines. A command answers at once, or returns ``LATER`` and is answered through
``Connection.answer``.

Flow control bounds what one connection holds: reading stops while its unsent replies are over
the transport's high-water mark (``pause_writing``, and no command runs then either), while
commands it pipelined wait behind the one in flight, and while the Redis connection is
congested (``ServerState.redis_pressure``). So a connection holds at most the command in
flight, one read (uvloop reads 250 kB at most) and the parsed commands of one 8 KiB slice of
it, 64 KiB of unsent replies plus one, and its unfinished line. Unfinished lines share one
budget per process (``--line-budget``) and must be finished within ``--line-timeout`` seconds.

With ``--proxy-protocol``, ``ProxyHeader`` reads a connection's PROXY header first and then hands
the transport to a ``Connection``; without it, connections go straight to ``Connection``.
"""
from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any, cast

from faktory_fast.codec import net, wire
from faktory_fast.jobs import JobError
from faktory_fast.server.commands import COMMANDS, HELLO, LATER, greeting, run_then
from faktory_fast.server.lifecycle import Lifecycle
from faktory_fast.storage.redis_client import NotReplicated, RedisClosed

log = logging.getLogger("faktory_fast")

HANDSHAKE_TIMEOUT = 2.0
LINE_TIMEOUT = 60.0  # seconds a started line may take to arrive (--line-timeout)
FEED_SLICE = 8192  # bytes of a big read parsed at once (Connection._feed_inbox)
SHUTDOWN = wire.error("shutdown in progress")
REDIS_LOST = wire.error("lost the connection to Redis")
# Queued after the commands that preceded a line over the length limit.
_OVERFLOW: tuple = (None, None)


class ServerState:
    """What the connections of one server process share."""

    def __init__(self, loop: asyncio.AbstractEventLoop, password: str = "",
                 max_line: int = 16 << 20, max_connections: int = 2000,
                 environment: str = "development", line_budget: int | None = None,
                 line_timeout: float = LINE_TIMEOUT) -> None:
        self.loop = loop
        self.environment = environment
        self.password = password
        self.max_line = max_line
        self.max_connections = max_connections
        # Bytes of unfinished lines all connections of this process may hold together.
        self.line_budget = line_budget or 16 * max_line
        self.line_timeout = line_timeout
        self.partial_bytes = 0
        self.unfinished: dict[Connection, None] = {}  # connections holding an unfinished line
        self._sweep: asyncio.TimerHandle | None = None
        self.redis_full = False
        self.connections: set[Connection] = set()
        self.by_wid: dict[str, set[Connection]] = {}
        self.shutting_down = False
        self.commands = 0  # dispatched since the last take_commands()

    def take_commands(self) -> int:
        """The commands dispatched since the last call (for the count kept in Redis)."""
        n, self.commands = self.commands, 0
        return n

    def untake_commands(self, n: int) -> None:
        """Commands taken that could not be counted in Redis: counted with the next ones."""
        self.commands += n

    def close_worker(self, wid: str) -> None:
        """A reaped worker: close all of its connections in this process."""
        for conn in list(self.by_wid.get(wid, ())):
            log.info("Closing connection of reaped worker %s", wid)
            conn.close()

    def shutdown(self) -> None:
        """Refuse further commands; idle connections are told so and closed now (a waiting
        FETCH is not idle: it is told once it answers)."""
        self.shutting_down = True
        for conn in list(self.connections):
            if not conn.busy:
                conn.write_and_close(SHUTDOWN)

    def redis_pressure(self, full: bool) -> None:
        """The Redis connection's write buffer passed its high-water mark (True) or drained.

        Reading from every client stops meanwhile. Memory would stay bounded without this (a
        connection has at most one command in flight, so Redis's buffer holds at most one per
        connection), but the clients' next lines would pile up here, against the line budget
        and clock, instead of in their sockets while Redis catches up.
        """
        self.redis_full = full
        log.debug("Redis is congested: reading from clients paused" if full
                  else "Redis caught up: reading from clients resumed")
        for conn in self.connections:
            conn.redis_held = full
            conn._flow()

    def watch_lines(self) -> None:
        """Start the clock that closes connections whose lines take too long (if not running)."""
        if self._sweep is None:
            self._sweep = self.loop.call_later(min(1.0, self.line_timeout / 4),
                                                         self._sweep_lines)

    def _sweep_lines(self) -> None:
        self._sweep = None
        now = self.loop.time()
        limit = self.line_timeout
        for conn in list(self.unfinished):
            # A connection we stopped reading from is not late: its clock restarts on resume.
            if (now - conn.line_started > limit and not conn.paused and not conn.backlogged
                    and not conn.redis_held):
                conn.drop(f"a line unfinished after {limit:g} s ({conn.partial} bytes so far; "
                          f"--line-timeout)", f"line not finished within {limit:g} s")
        if self.unfinished:
            self.watch_lines()


class Connection:
    """One client connection: handshake, then commands in order.

    An asyncio protocol by its methods: built, this is an extension type (``connection.pxd``),
    which cannot subclass ``asyncio.Protocol``.
    """

    def __init__(self, state: ServerState, lc: Lifecycle, peer: str = "") -> None:
        """``peer``: the client's address from a PROXY header (``ProxyHeader``), if any."""
        self.state = state
        self.lc = lc
        self.loop = state.loop  # loop.create_task: no get_running_loop() per command
        self.parser = wire.CommandFramer(state.max_line)
        self.transport: asyncio.Transport | None = None
        self.pending: collections.deque[tuple[bytes, bytes]] = collections.deque()
        self.busy = False
        self.verb = b""  # of the command in flight, for the log
        self.identified = False
        self.wid = ""
        self.salt = ""
        self.iterations = 0
        self._timer: asyncio.TimerHandle | None = None
        # Flow control: no command runs while paused; reading stops while any of the three holds.
        self.paused = False  # its replies are not being read (pause_writing)
        self.backlogged = False  # commands it pipelined wait behind the one in flight
        self.redis_held = False  # the Redis connection is congested
        self.partial = 0  # bytes of unfinished line, counted in state.partial_bytes
        self.inbox: bytes | None = None  # a big read, parsed a slice at a time (_feed_inbox)
        self.inbox_pos = 0
        self.line_started = 0.0  # loop time that line started, or reading last resumed
        self.peer = peer

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.state.shutting_down:
            transport.close()
            return
        self.state.connections.add(self)
        hi, self.salt, self.iterations = greeting(self.state.password)
        transport.write(hi)  # type: ignore[attr-defined]
        self._timer = self.loop.call_later(HANDSHAKE_TIMEOUT, self._handshake_late)
        if self.state.redis_full:
            self.redis_held = True
            self._flow()

    def data_received(self, data: bytes) -> None:
        if len(data) > FEED_SLICE or self.inbox is not None:
            if self.inbox is not None:  # not while reading is paused; keeps the order if it were
                data = self.inbox[self.inbox_pos:] + data
            self.inbox = data
            self.inbox_pos = 0
            if not self._feed_inbox():
                return
        elif not self._feed(data):
            return
        if not self.busy:
            self._next()
        if (self.pending or self.inbox is not None) and not self.backlogged:
            # Read no more until these have run: a client pipelining faster than its commands
            # run holds one read here, the rest waits in its socket.
            self.backlogged = True
            self._flow()

    def _feed(self, data: bytes) -> bool:
        """Parse ``data`` into pending; False if its unfinished line got the connection closed."""
        parser = self.parser
        lines = parser.feed(data)
        self.pending.extend(lines)
        if parser.overflow:
            self.pending.append(_OVERFLOW)
        n = parser.buffered()
        return not (n or self.partial) or self._count_line(n, bool(lines))

    def _feed_inbox(self) -> bool:
        """Parse the inbox a slice at a time until a command is complete or it is used up.

        A big read of tiny pipelined commands would cost some 30 times its size as parsed
        commands; this way it costs its size, and the commands of one slice.
        """
        data = self.inbox
        if data is None:
            return True
        pos = self.inbox_pos
        end = len(data)
        while pos < end:
            if not self._feed(data[pos:pos + FEED_SLICE]):
                return False
            pos += FEED_SLICE
            if self.pending:
                break
        if pos < end:
            self.inbox_pos = pos
        else:
            self.inbox = None
        return True

    def pause_writing(self) -> None:
        """The transport's buffer of unsent replies passed its high-water mark."""
        self.paused = True
        self._flow()

    def resume_writing(self) -> None:
        """The client read enough of its replies: go on."""
        self.paused = False
        self._flow()
        if not self.busy:
            self._next()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.pending.clear()
        self.inbox = None
        self._forget_line()
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
            await self.lc.bye(self.wid)
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

    def address(self) -> str:
        """The client's address: from its PROXY header, else the socket's peer."""
        if self.peer:
            return self.peer
        t = self.transport
        return net.address_text(t.get_extra_info("peername")) if t is not None else ""

    def _handshake_late(self) -> None:
        if not self.identified:
            self.close()

    # -- flow control --------------------------------------------------------------------------
    def _flow(self) -> None:
        """Read from the client only while nothing holds it back."""
        t = self.transport
        if t is None:
            return
        if self.paused or self.backlogged or self.redis_held:
            t.pause_reading()
        else:
            t.resume_reading()
            if self.partial:  # its line's clock ran while we did not read
                self.line_started = self.loop.time()

    def _count_line(self, n, new_line) -> bool:  # n: int, new_line: bool (types: connection.pxd)
        """Count the unfinished line (``n`` bytes, begun in this read if ``new_line``) against
        the process's budget; False if it does not fit and the connection was closed."""
        st = self.state
        grown = n - self.partial
        st.partial_bytes += grown
        if not n:
            del st.unfinished[self]
        elif not self.partial or new_line:
            self.line_started = self.loop.time()
            if not self.partial:
                st.unfinished[self] = None
                st.watch_lines()
        self.partial = n
        if grown > 0 and st.partial_bytes > st.line_budget:
            self.drop(f"its unfinished line of {n} bytes does not fit in the budget of "
                      f"{st.line_budget} bytes for unfinished lines (--line-budget)",
                      "server busy: too many unfinished lines, try again")
            return False
        return True

    def _forget_line(self) -> None:
        if self.partial:
            self.state.partial_bytes -= self.partial
            del self.state.unfinished[self]
            self.partial = 0

    def drop(self, reason: str, reply: str) -> None:
        """Close an offending connection, with one log line and an ``-ERR reply``."""
        log.warning("Closing the connection from %s%s: %s", self.address() or "a client",
                    f" (worker {self.wid})" if self.wid else "", reason)
        self._forget_line()
        self.parser = wire.CommandFramer(self.state.max_line)  # frees the line now
        self.pending.clear()
        self.inbox = None
        self.write_and_close(wire.error(reply))

    # -- command loop ------------------------------------------------------------------------
    def _next(self) -> None:
        """Run queued commands in order until one has to wait; its answer resumes the loop."""
        pending = self.pending
        state = self.state
        while self.transport is not None and not self.paused:
            if not pending:
                if self.inbox is not None and self._feed_inbox() and pending:
                    continue
                if self.backlogged and self.inbox is None:  # all read has run: read more
                    self.backlogged = False
                    self._flow()
                return
            item = pending.popleft()
            if self.backlogged and not pending and self.inbox is None:
                self.backlogged = False  # the last one: the client's next lines may come now
                self._flow()
            if item is _OVERFLOW:
                self.write_and_close(wire.error(f"line too long: the limit is {state.max_line} bytes"))
                return
            if state.shutting_down:
                self.write_and_close(SHUTDOWN)
                return
            verb, payload = item
            if self.identified:
                state.commands += 1
                handler = COMMANDS.get(verb)
            elif verb == b"HELLO":
                handler = HELLO
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

    def answer_ok(self, reply: Any) -> None:
        """Answer ``+OK``, or the exception."""
        self.answer(reply if isinstance(reply, BaseException) else wire.OK)

    def answer_job(self, job: Any) -> None:
        """Answer FETCH's job (or nil, or the exception)."""
        if type(job) is bytes and self.transport is None:
            # The client left while it waited: nobody got the job.
            run_then(self.loop, self.lc.release(job), self.answer)
        else:
            self.answer(job if isinstance(job, BaseException) else wire.bulk(job))

    def identify(self, wid: str) -> bool:
        """The handshake is done: the connection serves worker ``wid`` from now on; False if
        the client left meanwhile."""
        self.identified = True
        self.wid = wid
        if self._timer is not None:
            self._timer.cancel()
        if self.transport is None:  # gone while we registered it
            self.loop.create_task(self._bye())
            return False
        self.state.by_wid.setdefault(wid, set()).add(self)
        return True


class ProxyHeader(asyncio.Protocol):
    """The start of a connection when the PROXY protocol is on (``--proxy-protocol``).

    A connection from a ``--proxy-from`` address must begin with a PROXY header (v1 or v2):
    it is read here, then the transport is handed to a ``Connection`` (``set_protocol``) that
    knows the client's real address and serves the rest as any other connection. Other
    addresses are direct clients, served at once (they wait for ``+HI``); one whose first bytes
    are a PROXY header is closed. A header that is malformed, or missing after
    HANDSHAKE_TIMEOUT, closes the connection; each of these closes logs one line, while a
    connection closed before sending anything (a proxy's health check) logs nothing.
    """

    def __init__(self, state: ServerState, lc: Lifecycle, networks: net.Networks) -> None:
        self.state = state
        self.lc = lc
        self.networks = networks
        self.transport: asyncio.Transport | None = None
        self.via = ""  # the proxy's address (the socket's peer)
        self.buf = b""
        self.conn: Connection | None = None  # a direct client's, until its first bytes
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.via = net.address_text(peer) or "a client"
        if net.trusted(peer, self.networks):
            self._timer = self.state.loop.call_later(HANDSHAKE_TIMEOUT, self._late)
        else:
            self.conn = Connection(self.state, self.lc)
            self.conn.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.conn is not None:  # a direct client's first bytes
            if net.looks_like_proxy_header(data):
                self._refuse("it sent a PROXY header, but its address is not in --proxy-from")
                return
            conn, self.conn = self.conn, None
            self._handover(conn, data)
            return
        self.buf += data
        try:
            got = net.parse_proxy_header(self.buf)
        except net.ProxyHeaderError as exc:
            self._refuse(f"malformed PROXY header: {exc}")
            return
        if got is None:
            return  # incomplete (the parser bounds its length)
        end, client = got
        rest, self.buf = self.buf[end:], b""
        if self._timer is not None:
            self._timer.cancel()
        conn = Connection(self.state, self.lc, net.address_text(client))
        if client is not None:
            log.debug("Connection from %s via %s", conn.peer, self.via)
        assert self.transport is not None
        # (cast: a compiled Connection cannot subclass asyncio.Protocol, but is one)
        self.transport.set_protocol(cast(asyncio.BaseProtocol, conn))
        conn.connection_made(self.transport)
        if rest and conn.transport is not None:
            conn.data_received(rest)

    def _handover(self, conn: Connection, data: bytes) -> None:
        assert self.transport is not None
        self.transport.set_protocol(cast(asyncio.BaseProtocol, conn))
        if conn.transport is not None:
            conn.data_received(data)

    def pause_writing(self) -> None:
        if self.conn is not None:
            self.conn.pause_writing()

    def resume_writing(self) -> None:
        if self.conn is not None:
            self.conn.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.conn is not None:
            self.conn.connection_lost(exc)
        self.transport = None

    def _late(self) -> None:
        what = "an incomplete PROXY header" if self.buf else "no PROXY header"
        self._refuse(f"{what} within {HANDSHAKE_TIMEOUT:g} s (its address is in --proxy-from, "
                     "so it must start with one)")

    def _refuse(self, reason: str) -> None:
        log.warning("Closing the connection from %s: %s", self.via, reason)
        if self.conn is not None:
            conn, self.conn = self.conn, None
            conn.close()
            conn.connection_lost(None)  # it counted itself in: let it go now
        if self.transport is not None:
            self.transport.close()
            self.transport = None


def _error_reply(verb: bytes, exc: BaseException) -> bytes:
    if isinstance(exc, JobError):
        return wire.error(str(exc), exc.code)
    if isinstance(exc, NotReplicated):  # --redis-wait-replicas
        return wire.error(str(exc))
    if isinstance(exc, RedisClosed):  # one event, logged once by the process (worker.serve)
        return REDIS_LOST
    log.error("Unexpected error in %s", verb.decode(errors="replace"), exc_info=exc)
    return wire.error("internal error")


__all__ = ["Connection", "ProxyHeader", "ServerState"]
