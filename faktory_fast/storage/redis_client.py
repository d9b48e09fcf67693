"""A small asyncio Redis client built on the RESP codec in ``faktory_fast.codec.resp``.

Commands issued during one event-loop iteration leave in one write (automatic pipelining):
with many client connections sharing one Redis connection per process, round trips and
syscalls are shared between them. Replies come back in order, so each caller's future is
resolved from a FIFO; per-connection reply order on the client side is kept by the server,
which handles one command of a client connection at a time.

A command's reply goes either to a future (``execute``) or straight to a callback
(``send_cb``, given the command packed): the server's hot path uses callbacks, which spare it
a Task, a Future and a loop iteration per command.

A lost connection is re-opened in place (``reconnect``): the same object, so whoever holds it
(the Store, and through it every client connection) carries on once it is back; meanwhile every
command fails at once with RedisClosed. A primary demoted to replica (``-READONLY``) counts as
lost. With ``redis+sentinel://`` each (re)connection asks the Sentinels for the primary; with
``redis+cluster://`` it asks the cluster's nodes which primary holds the slot of our keys'
hash tag (``keys.CLUSTER_TAG``).

Commands Redis answers without running them are sent again when the connection is given a
``hold`` (the server processes' on a Redis of the user's): ``-MOVED`` and ``-READONLY`` (the slot,
or the primary, is elsewhere now: the connection is drained, closed and re-opened where it went),
``-ASK``, ``-TRYAGAIN`` and ``-CLUSTERDOWN`` (a slot migration or a failover under way: sent again
here, after a short pause). Commands made while the connection is down or drained wait for it
too. Either kind waits at most ``hold`` seconds, then fails with RedisClosed; a command in flight
when the connection breaks fails at once (it may or may not have run).
"""
from __future__ import annotations

import asyncio
import collections
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, cast

from faktory_fast.codec.resp import ReplyError, RespReader, pack_command
from faktory_fast.storage import keys
from faktory_fast.storage.redis_url import parse_redis_url, redis_location

__all__ = ["RedisConnection", "connect", "reconnect", "ReplyError", "RedisClosed",
           "NotReplicated", "Then"]

log = logging.getLogger("faktory_fast")

# A reply callback: called with the reply, or with the ReplyError / RedisClosed instead.
Then = Callable[[Any], None]
# Write buffer limits of a Redis connection. Redis is near and drains its socket fast, so only a
# congested Redis fills this much, not a burst of big payloads (which would stop every client).
HIGH_WATER = 4 << 20
LOW_WATER = 1 << 20
CONNECT_TIMEOUT = 5.0  # seconds for one attempt: TCP connect, Sentinel query, AUTH, ROLE
NODE_TIMEOUT = 1.0  # seconds for one cluster node to say where our keys are
BACKOFF = (0.1, 1.0)  # seconds between attempts to reconnect: doubles from 0.1 up to 1
# Replies that say Redis did not run the command: the primary (or slot) is elsewhere now...
NOT_HERE = ("MOVED", "READONLY")
# ...or it will be here after a migration or failover under way: try again in a moment.
NOT_YET = ("ASK", "TRYAGAIN", "CLUSTERDOWN")
RETRY_PAUSE = (0.01, 0.2)  # seconds before sending NOT_YET commands again: doubles up to 0.2
STILL_DOWN_EVERY = 30.0  # a reconnection that keeps failing says so this often
# A dead primary host sends no RST: TCP keepalive (and a limit on unacknowledged data) notices.
KEEPALIVE = {"TCP_KEEPIDLE": 10, "TCP_KEEPINTVL": 5, "TCP_KEEPCNT": 3,
             "TCP_USER_TIMEOUT": 30_000}
Ready = Callable[["RedisConnection"], Awaitable[Any]]


class RedisClosed(ConnectionError):
    """The connection to Redis is gone."""


class NotReplicated(Exception):
    """A write Redis did, but not confirmed by the replicas asked for in time (WAIT)."""


class RedisConnection:
    """One Redis connection; ``execute`` may be called from any number of tasks at once.

    An asyncio protocol by its methods: built, this is an extension type (``redis_client.pxd``),
    which cannot subclass ``asyncio.Protocol``.
    """

    def __init__(self, on_push: Callable[[list], None] | None = None,
                 on_pressure: Callable[[bool], None] | None = None, wait_replicas: int = 0,
                 wait_timeout: int = 1000, hold: float = 0.0) -> None:
        """``on_push``: gets the pub/sub messages (once subscribed); ``on_pressure``: told True
        when the write buffer passes HIGH_WATER, False when it is back below LOW_WATER (the
        server stops reading from its clients meanwhile); ``wait_replicas``: see
        ``execute_cb_replicated`` (0: writes are not held), ``wait_timeout`` in ms; ``hold``:
        seconds a command Redis did not run, or made while the connection is down, waits to be
        sent (again) once it is back (0: it fails at once)."""
        self._reader = RespReader()
        self.address = ""  # host:port or socket path, for log lines
        self.lost = ""  # why the connection closed, for the log line that reports it
        self.connected = False  # between connection_made and connection_lost
        self._pending: collections.deque[asyncio.Future | Then] = collections.deque()
        self._out: list[bytes] = []
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._flush_handle: asyncio.Handle | object | None = None  # or _GATHERING
        # Pub/sub messages (when subscribed) go to on_push instead of a waiting future.
        self._on_push = on_push
        self._on_pressure = on_pressure
        self.closed: asyncio.Future[None] = self._loop.create_future()
        # execute*_replicated: a write's reply is held until a WAIT for this many replicas,
        # sent after the writes of one loop iteration, confirms it (0: no waiting).
        self.wait_replicas = wait_replicas
        self.wait_timeout = wait_timeout  # milliseconds
        # (waiter, reply) of the writes sent since the last WAIT (None: none sent)
        self._held: list | None = None
        # Called as each iteration's writes leave, before them (``gather``).
        self._gatherers: list[Callable[[], None]] = []
        self.hold = hold
        # With a hold: what each pending command is, to send it again (in step with _pending:
        # (waiter, command, replicated, deadline), or None for our own WAIT)...
        self._sent: collections.deque[tuple[Any, bytes, bool, float] | None] = collections.deque()
        # ...the commands waiting to be sent (again), in order, each until its deadline (set
        # when it first had to wait: hold seconds on).
        self._waiting: list[tuple[Any, bytes, bool, float]] = []
        self._wait_timer: asyncio.TimerHandle | None = None
        self._hold_deadline = 0.0  # the deadline of the command send_waiting is sending
        self._draining = False  # a NOT_HERE reply came: send nothing more here
        self._lost_at = float("-inf")  # when the connection last broke
        self._pause = RETRY_PAUSE[0]

    # asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.closed.done():  # re-opened (reconnect): a fresh start
            self.closed = self._loop.create_future()
            self._reader = RespReader()
            self.lost = ""
        self._transport = transport  # type: ignore[assignment]
        self.connected = True
        transport.set_write_buffer_limits(HIGH_WATER, LOW_WATER)  # type: ignore[attr-defined]

    def pause_writing(self) -> None:
        if self._on_pressure is not None:
            self._on_pressure(True)

    def resume_writing(self) -> None:
        if self._on_pressure is not None:
            self._on_pressure(False)

    def data_received(self, data: bytes) -> None:
        pending = self._pending
        for reply in self._reader.feed(data):
            if self._on_push is not None and type(reply) is list and reply and reply[0] in (
                b"message", b"pmessage"
            ):
                self._on_push(reply)
                continue
            if self.hold:
                sent = self._sent.popleft()
                if type(reply) is ReplyError and sent is not None and self._not_run(reply, sent):
                    pending.popleft()
                    continue
                self._pause = RETRY_PAUSE[0]
            if type(reply) is ReplyError:
                reply = self._error(reply)
            _deliver(pending.popleft(), reply)
        if self._draining and not pending and self._transport is not None:
            self._transport.close()  # every reply is in: re-open where the primary is now
            self._transport = None

    def _not_run(self, err: ReplyError, sent: tuple[Any, bytes, bool, float]) -> bool:
        """A reply saying Redis did not run the command: keep it to send again (True)."""
        text = str(err)
        if text.startswith(NOT_HERE):
            if not self._draining:
                self._draining = True
                self.lost = self._gone(text)
            self._wait(sent)
            return True
        if text.startswith(NOT_YET):
            if not self._waiting and not self._draining:
                self._loop.call_later(self._pause, self.send_waiting)
                self._pause = min(self._pause * 2, RETRY_PAUSE[1])
            self._wait(sent)
            return True
        return False

    def _wait(self, entry: tuple[Any, bytes, bool, float]) -> None:
        """``entry`` (waiter, command, replicated, deadline) waits to be sent (again); its
        deadline, if it has none yet, is ``hold`` seconds from now."""
        waiter, command, replicated, deadline = entry
        if not deadline:
            deadline = self._loop.time() + self.hold
        self._waiting.append((waiter, command, replicated, deadline))
        if self._wait_timer is None:
            self._wait_timer = self._loop.call_at(deadline, self._give_up_waiting)

    def _give_up_waiting(self) -> None:
        """Fail the waiting commands whose time is up; look again at the next deadline."""
        self._wait_timer = None
        now = self._loop.time()
        err = RedisClosed(f"Redis connection lost: {self.lost or 'Redis did not run it in time'}")
        late = [e for e in self._waiting if e[3] <= now]
        self._waiting = [e for e in self._waiting if e[3] > now]
        for waiter, _, _, _ in late:
            _deliver(waiter, err)
        if self._waiting:
            self._wait_timer = self._loop.call_at(min(e[3] for e in self._waiting),
                                                  self._give_up_waiting)

    def send_waiting(self) -> None:
        """Send the waiting commands (again), in their order, if the connection is up
        (``connect`` calls it once a re-opened connection is ready)."""
        if self._transport is None or self._draining or not self._waiting:
            return
        if self._wait_timer is not None:
            self._wait_timer.cancel()
            self._wait_timer = None
        waiting, self._waiting = self._waiting, []
        for waiter, command, replicated, deadline in waiting:
            self._hold_deadline = deadline  # carried into _sent: the time does not restart
            if replicated:
                self.send_cb_replicated(waiter, command)
            else:
                self._send(waiter, command)
        self._hold_deadline = 0.0

    def _error(self, err: ReplyError) -> Exception:
        """An error reply as the caller should see it: a primary demoted to replica (or one
        refusing writes for want of replicas) is no error of the command's."""
        text = str(err)
        if text.startswith((*NOT_HERE, "ASK")):
            # A failover made this Redis a replica, or the cluster moved (or is moving) our
            # slot: drop it (each process then finds where our keys are), failing this command
            # and those after it as if the connection broke.
            if self._transport is not None:
                self.lost = self._gone(text)
                self._transport.close()
                self._transport = None  # nothing more is sent; connection_lost follows
            return RedisClosed(self.lost)
        if text.startswith("NOREPLICAS"):  # min-replicas-to-write on the primary
            return NotReplicated(f"Redis refused the write: {text}")
        return err

    def _gone(self, text: str) -> str:
        """Why this Redis no longer serves our keys, for the log line (``lost``)."""
        if text.startswith("READONLY"):
            return f"{self.address} is now a replica (READONLY)"
        return f"{self.address} no longer holds our keys ({text[:60]})"

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self.connected = False
        self._draining = False
        if not self.lost:
            self.lost = f"{exc}" if exc else "closed by Redis"
        err = RedisClosed(f"Redis connection lost: {self.lost}")
        if self.hold:
            # Written but not sent: as good as never made, so they wait for the return too.
            unsent = len(self._out)
            if unsent:
                for entry in list(self._sent)[-unsent:]:
                    if entry is not None:
                        self._wait(entry)
                for _ in range(unsent):
                    self._pending.pop()
            self._sent.clear()
            self._lost_at = self._loop.time()  # commands made from now on may wait
        self._out = []  # unsent: a re-opened connection must not send them
        held, self._held = self._held, None
        while self._pending:
            _deliver(self._pending.popleft(), err)
        for waiter, _ in held or ():
            _deliver(waiter, err)
        if not self.closed.done():
            self.closed.set_result(None)

    # API ----------------------------------------------------------------------------------
    def execute(self, *args: Any) -> Awaitable[Any]:
        """Send one command; the future resolves to its reply (errors raise ReplyError)."""
        fut = self._loop.create_future()
        self._send(fut, pack_command(*args))
        return fut

    def send_cb(self, then: Then, command: bytes) -> None:
        """Send one command, already packed (``resp.pack_command``); ``then`` gets its reply
        (or the error) from ``data_received``."""
        self._send(then, command)

    def execute_replicated(self, *args: Any) -> Awaitable[Any]:
        """``execute`` for a write that must reach ``wait_replicas`` replicas (see below)."""
        fut = self._loop.create_future()
        self.send_cb_replicated(fut, pack_command(*args))
        return fut

    def send_cb_replicated(self, then: asyncio.Future | Then, command: bytes) -> None:
        """``send_cb`` for a write: its reply is passed on once Redis confirms that
        ``wait_replicas`` replicas have it, or replaced by NotReplicated if they do not within
        ``wait_timeout`` ms. One WAIT covers the writes of a loop iteration (WAIT blocks the
        connection: one per write would allow one write per replica round trip)."""
        if not self.wait_replicas:
            self._send(then, command)
            return
        if self._transport is None or self._draining:
            self._wait_or_fail(then, command, True)
            return
        held = self._held
        if held is None:
            held = []
        self._send(lambda reply: held.append((then, reply)), command, then)
        self._held = held  # filled as the replies come, released by the WAIT _flush adds

    def gather(self, send: Callable[[], None]) -> None:
        """``send`` is called as each loop iteration's writes leave, before them: a caller that
        gathers the commands of a turn (the store's group commit) sends them from it, as one
        command, in the same write. ``wake`` says it holds something."""
        self._gatherers.append(send)

    def wake(self) -> None:
        """A gatherer holds a command: this iteration's writes are to leave (no timer: the
        iteration's other callbacks run first, then the writes). Woken while the gatherers
        send (an error answered at once may bring another command), the next flush is due."""
        if self._flush_handle is None or self._flush_handle is _GATHERING:
            self._flush_handle = self._loop.call_soon(self._flush)

    def _send(self, waiter: asyncio.Future | Then, command: bytes,
              replicated_for: Any = None) -> None:
        """``replicated_for``: the caller's waiter of a write sent by ``send_cb_replicated``
        (``waiter`` then holds its reply for the WAIT)."""
        if self._transport is None or self._draining:
            self._wait_or_fail(waiter, command, False)
            return
        self._pending.append(waiter)
        if self.hold:
            self._sent.append((waiter, command, False, self._hold_deadline)
                              if replicated_for is None
                              else (replicated_for, command, True, self._hold_deadline))
        self._out.append(command)
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)

    def _wait_or_fail(self, waiter: Any, command: bytes, replicated: bool) -> None:
        """A command made while the connection is down or drained: it waits for the
        connection's return, if it has a hold and the connection went less than ``hold``
        seconds ago."""
        if not self.hold or (not self._draining
                             and self._loop.time() >= self._lost_at + self.hold):
            raise RedisClosed("Redis connection closed")
        self._wait((waiter, command, replicated, 0.0))

    def _flush(self) -> None:
        self._flush_handle = _GATHERING  # the gatherers' commands join this write
        for send in self._gatherers:
            send()
        if self._flush_handle is _GATHERING:  # (else a wake() asked for another flush)
            self._flush_handle = None
        if self._held is not None and self._transport is not None:
            held, self._held = self._held, None
            want = self.wait_replicas
            self._pending.append(lambda n: _release(held, n, want, self.wait_timeout))
            if self.hold:
                self._sent.append(None)
            self._out.append(pack_command("WAIT", want, self.wait_timeout))
        if self._transport is not None and self._out:
            out = self._out
            self._out = []
            self._transport.write(b"".join(out) if len(out) > 1 else out[0])

    def close(self) -> None:
        """Close the connection; pending commands fail with RedisClosed."""
        if self._transport is not None:
            self._flush()
            self._transport.close()


_GATHERING = object()  # RedisConnection._flush_handle while the gatherers send


def _deliver(waiter: asyncio.Future | Then, reply: Any) -> None:
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


def _release(held: list, acked: Any, want: int, timeout: int) -> None:
    """WAIT answered (``acked`` replicas, or an error): pass on the held replies."""
    err: Exception | None = None
    if isinstance(acked, Exception):
        err = acked
    elif acked < want:
        err = NotReplicated(f"the write was not confirmed by {want} Redis "
                            f"replica{'s' if want > 1 else ''} within {timeout} ms "
                            "(--redis-wait-replicas); it may or may not be stored")
    for waiter, reply in held:
        _deliver(waiter, reply if err is None or isinstance(reply, Exception) else err)


def sentinels(target: dict[str, Any]) -> Any:
    """redis-py's Sentinel client for a ``redis+sentinel://`` URL's parts: one try per
    Sentinel (its default retries would make a Sentinel that is down cost seconds)."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry
    from redis.sentinel import Sentinel

    return Sentinel(target["sentinels"], sentinel_kwargs={
        "socket_timeout": 1.0, "socket_connect_timeout": 1.0, "retry": Retry(NoBackoff(), 0),
        "password": target["sentinel_password"]})


def discover_primary(target: dict[str, Any]) -> tuple[str, int]:
    """Ask the Sentinels of a ``redis+sentinel://`` URL where the primary is (blocking): the
    first that knows a primary by that name not flagged down answers (redis-py's
    ``discover_master``)."""
    client = sentinels(target)
    try:
        host, port = client.discover_master(target["service"])
    finally:
        client.close()
    return host, int(port)


async def connect(url: str, on_push: Callable[[list], None] | None = None,
                  conn: RedisConnection | None = None, ready: Ready | None = None,
                  tag: str = keys.CLUSTER_TAG) -> RedisConnection:
    """Open a connection to the Redis at ``url`` (with ``redis+sentinel://``, to the primary
    the Sentinels name; ``redis+cluster://``, to the primary of the slot of ``tag``: one
    partition's: ``partitions.tags_of``), check that it is a primary, select the database and run
    ``ready``.

    ``conn`` re-opens that (closed) connection object instead of making one. Raises
    RedisClosed (or the error that stopped it) if any step fails, the connection closed.
    """
    loop = asyncio.get_running_loop()
    target = parse_redis_url(url)
    if conn is None:
        conn = RedisConnection(on_push)
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            await _open(loop, conn, target, tag)
    except TimeoutError:
        await _abandon(conn)
        raise RedisClosed(f"{conn.address or redis_location(url)}: no answer within "
                          f"{CONNECT_TIMEOUT:g} s") from None
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            if target["password"]:
                await conn.execute("AUTH", target["password"])
            role = await _role(conn)
            if role != b"master":
                raise RedisClosed(f"{conn.address} is a {role.decode(errors='replace')}, "
                                  "not the primary")
            if target["db"]:
                await conn.execute("SELECT", target["db"])
            if ready is not None:
                await ready(conn)
    except BaseException as exc:
        await _abandon(conn)
        if isinstance(exc, TimeoutError):
            raise RedisClosed(f"{conn.address}: no answer within {CONNECT_TIMEOUT:g} s") from None
        raise
    conn.send_waiting()  # what waited for the connection's return
    return conn


async def _abandon(conn: RedisConnection) -> None:
    """Close a connection being opened and let its connection_lost run (before it is opened
    again: a late one would close the next connection)."""
    conn.close()
    if conn.connected:
        await asyncio.shield(conn.closed)


async def _open(loop: asyncio.AbstractEventLoop, conn: RedisConnection,
                target: dict[str, Any], tag: str = keys.CLUSTER_TAG) -> None:
    if "path" in target:
        conn.address = target["path"]
        await loop.create_unix_connection(lambda: cast(asyncio.Protocol, conn), target["path"])
        return
    if "sentinels" in target:
        host, port = await asyncio.to_thread(discover_primary, target)
    elif "cluster" in target:
        host, port = await _cluster_primary(loop, target, tag)
    else:
        host, port = target["host"], target["port"]
    conn.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    transport, _ = await loop.create_connection(lambda: cast(asyncio.Protocol, conn), host, port,
                                                ssl=True if target.get("ssl") else None)
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in KEEPALIVE.items():
            if hasattr(socket, name):  # Linux names
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


async def _cluster_primary(loop: asyncio.AbstractEventLoop, target: dict[str, Any], tag: str
                          ) -> tuple[str, int]:
    """The primary that holds the slot of ``tag``, as the first of the URL's nodes that
    answers ``CLUSTER SLOTS`` says."""
    from redis.crc import key_slot

    slot = key_slot(tag.encode())
    failures = []
    for host, port in target["cluster"]:
        node = RedisConnection()
        try:
            async with asyncio.timeout(NODE_TIMEOUT):  # a node that is down costs this, not all
                await _open(loop, node, {"host": host, "port": port, "ssl": target["ssl"]})
                if target["password"]:
                    await node.execute("AUTH", target["password"])
                ranges = await node.execute("CLUSTER", "SLOTS")
            for first, last, primary, *_ in ranges:
                if first <= slot <= last:
                    # An empty host: the node's own address, as the client reached it.
                    return (primary[0].decode() or host), int(primary[1])
            failures.append(f"{host}:{port} knows no primary for slot {slot}")
        except (OSError, ReplyError, RedisClosed, TimeoutError) as exc:
            failures.append(f"{host}:{port}: {exc or 'no answer'}")
        finally:
            await _abandon(node)
    raise RedisClosed("no node of the cluster named the primary of our keys: " + "; ".join(failures))


async def _role(conn: RedisConnection) -> bytes:
    """``master`` or ``slave`` (ROLE); ``master`` where ROLE is refused (renamed, or denied
    by an ACL): such a Redis is taken at its word until it answers -READONLY."""
    try:
        reply = await conn.execute("ROLE")
    except ReplyError:
        return b"master"
    return reply[0] if isinstance(reply, list) and reply else b"master"


async def reconnect(conn: RedisConnection, url: str, stop: asyncio.Future | None = None,
                    ready: Ready | None = None, give_up: float | None = None,
                    tag: str = keys.CLUSTER_TAG) -> bool:
    """Re-open ``conn`` (closed, to the primary of ``tag`` on a cluster) until it works: True;
    False once ``stop`` is done or ``give_up`` seconds have passed. Tries again after 0.1 s,
    0.2 s, ... up to 1 s.

    The loss and the return are the caller's to log; here one warning says what fails if it
    still does after STILL_DOWN_EVERY seconds (and every as long again), not one per attempt.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    delay = BACKOFF[0]
    next_word = started + STILL_DOWN_EVERY
    said = False  # a failure that waiting will not mend was logged
    while stop is None or not stop.done():
        try:
            await connect(url, conn=conn, ready=ready, tag=tag)
            return True
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # OSError, RedisClosed, ReplyError, Sentinel's errors
            now = loop.time()
            if not said and _needs_a_fix(exc):
                said = True
                log.warning("Redis at %s: %s (trying again)", conn.address or redis_location(url),
                            exc)
            else:
                log.debug("Redis at %s: %s", conn.address or redis_location(url), exc)
            if give_up is not None and now - started >= give_up:
                log.error("No Redis at %s after %.0f s: %s", redis_location(url), now - started, exc)
                return False
            if now >= next_word:
                log.warning("Still no Redis at %s after %.0f s: %s", redis_location(url),
                            now - started, exc)
                next_word = now + STILL_DOWN_EVERY
        if stop is None:
            await asyncio.sleep(delay)
        else:
            await asyncio.wait([stop], timeout=delay)
        delay = min(delay * 2, BACKOFF[1])
    return False


def _needs_a_fix(exc: Exception) -> bool:
    """A failure to connect that is a configuration's, not a Redis away for a while: its
    certificate not trusted, the password refused."""
    return isinstance(exc, ssl.SSLCertVerificationError) or (
        isinstance(exc, ReplyError) and str(exc).startswith(("WRONGPASS", "NOAUTH", "NOPERM")))
