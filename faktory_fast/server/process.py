"""One server process: serves client connections on the socket the supervisor bound.

Started by the supervisor as ``python -P -m faktory_fast.server.process`` with the listening
socket inherited and its settings (JSON) on stdin. Shares nothing with its siblings but Redis.
``serve`` builds the process's parts (a Redis connection and a store for each partition of the
keys, ``storage.partitions``, and one for broadcasts; FETCH parking, the lifecycle, the
connections' shared state) and routes Redis's broadcasts to them.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any, cast

import orjson
import uvloop

from faktory_fast import log as logsetup
from faktory_fast.codec import net, resp, wire
from faktory_fast.job_metrics import JobMetrics, flush_every
from faktory_fast.server.connection import LINE_TIMEOUT, Connection, ProxyHeader, ServerState
from faktory_fast.server.lifecycle import Lifecycle
from faktory_fast.server.parking import Parking, Reservations
from faktory_fast.storage import keys, redis_client
from faktory_fast.storage.partitions import Partitions, pinned_of, tags_of
from faktory_fast.storage.store import AsyncStore, ensure_library

log = logging.getLogger("faktory_fast")

COMMAND_REPORT_INTERVAL = 1.0
SHUTDOWN_GRACE = 5.0
REDIS_START_WAIT = 30.0  # seconds a Redis of the user's may take to answer at start-up


async def serve(settings: dict[str, Any], pipe: MasterPipe) -> int:
    """Serve until SIGTERM (exit 0) or until Redis goes away (exit 1; with a Redis of the
    user's, ``redis_reconnect``: reconnect instead, clients keep their connections)."""
    loop = asyncio.get_running_loop()
    proc_id = settings["proc_id"]
    pipe.follow(loop)
    url = settings["redis_url"]
    reconnect = settings.get("redis_reconnect", False)
    state = ServerState(loop, settings["password"], settings["max_line"],
                        settings["max_connections"], settings["environment"],
                        settings.get("line_budget"), settings.get("line_timeout", LINE_TIMEOUT))
    tags = tags_of(url)
    pressure = Pressure(len(tags), state.redis_pressure)
    conns = [redis_client.RedisConnection(
        on_pressure=pressure.of(i), wait_replicas=settings.get("redis_wait_replicas", 0),
        wait_timeout=settings.get("redis_wait_timeout", 1000),
        hold=settings.get("redis_hold", 5000) / 1000 if reconnect else 0.0)
        for i in range(len(tags))]
    parts = Partitions([AsyncStore(c, tag) for c, tag in zip(conns, tags)], pinned_of(url))
    store, conn = parts.home, conns[keys.HOME]
    parking = Parking(parts, proc_id, Reservations(), loop)
    metrics = JobMetrics() if settings.get("job_metrics", True) else None
    lc = Lifecycle(parts, parking, proc_id, settings["started_at"], metrics)
    lc.batches.retention = settings.get("batch_retention", lc.batches.retention)
    sub = redis_client.RedisConnection(on_push=broadcasts(parking, state))

    async def subscribe(sub: redis_client.RedisConnection) -> None:
        await sub.execute("SUBSCRIBE", keys.wake_channel(proc_id))
        await sub.execute("SUBSCRIBE", keys.CONTROL_CHANNEL)

    if reconnect:  # the master has just reached it, but it may be failing over right now
        if not await redis_client.reconnect(sub, url, ready=subscribe, give_up=REDIS_START_WAIT):
            return 1
        for rc, tag in zip(conns, tags):
            if not await redis_client.reconnect(rc, url, give_up=REDIS_START_WAIT, tag=tag):
                return 1
    else:
        await redis_client.connect(url, conn=sub, ready=subscribe)
        for rc, tag in zip(conns, tags):
            await redis_client.connect(url, conn=rc, tag=tag)
    sock = socket.socket(fileno=settings["fd"])
    server = await listen(loop, state, lc, sock, settings)
    log.debug("Process %s serving (wire codec: %s, RESP codec: %s)", proc_id,
              wire.IMPLEMENTATION, resp.IMPLEMENTATION)

    stop = loop.create_future()
    def on_sigterm() -> None:
        if not stop.done():
            stop.set_result(0)

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)

    async def report_commands() -> None:
        while True:
            await asyncio.sleep(COMMAND_REPORT_INTERVAL)
            n = state.take_commands()
            if n:
                try:
                    await store.count_commands(proc_id, n)
                except redis_client.RedisClosed:
                    if not reconnect:
                        return  # serve() reports the loss
                    state.untake_commands(n)  # counted once Redis is back

    every = flush_every(os.environ)

    async def flush_metrics() -> None:
        assert metrics is not None
        while True:
            await asyncio.sleep(every)
            try:
                await metrics.flush(store)
            except redis_client.RedisClosed:
                if not reconnect:
                    return  # serve() reports the loss; these seconds of metrics are lost

    reporter = asyncio.ensure_future(report_commands())
    flusher = asyncio.ensure_future(flush_metrics()) if metrics is not None else None
    while True:
        await asyncio.wait([stop, sub.closed, *(rc.closed for rc in conns)],
                           return_when=asyncio.FIRST_COMPLETED)
        if stop.done() or not reconnect:
            break
        if not await _reconnect(proc_id, url, conns, tags, sub, subscribe, pressure, parking,
                                stop):
            break
    reporter.cancel()
    if flusher is not None:
        flusher.cancel()
    # Stopping or not, clients are told and let go before we exit: commands still arriving
    # would start tasks that never run. Without Redis every command fails at once.
    server.close()
    state.shutdown()
    parking.stop_waiting()  # after shutdown(): each parked FETCH answers nil, then says so
    deadline = loop.time() + SHUTDOWN_GRACE
    while any(c.busy for c in state.connections) and loop.time() < deadline:
        await asyncio.sleep(0.01)  # in-flight commands finish their Redis round trip
    for c in list(state.connections):
        c.write_and_close(b"")
    if (state.commands or metrics is not None) and not conn.closed.done():
        try:
            if state.commands:
                await store.count_commands(proc_id, state.take_commands())
            if metrics is not None:
                await metrics.flush(store)
        except redis_client.RedisClosed:
            pass
    else:
        await asyncio.sleep(0)  # the connections' connection_lost (and their BYE tasks) run
    if not stop.done() and (sub.closed.done() or any(rc.closed.done() for rc in conns)):
        # The one line for this: the commands it failed answered "-ERR lost the connection to
        # Redis" without a word each (connection._error_reply).
        log.error("Lost the connection to Redis; process %s exits", proc_id)
        return 1
    for rc in conns:
        rc.close()
    sub.close()
    return 0


class Pressure:
    """Whether any of ``count`` Redis connections is congested: ``pressure(True)`` once one is,
    ``pressure(False)`` once none is (clients are read again)."""

    def __init__(self, count: int, pressure: Callable[[bool], None]) -> None:
        self.full = [False] * count
        self.pressure = pressure

    def of(self, i: int) -> Callable[[bool], None]:
        """Connection ``i``'s ``on_pressure`` (also called with False when it is re-opened:
        its write buffer went with it)."""
        def on_pressure(congested: bool) -> None:
            before = any(self.full)
            self.full[i] = congested
            if any(self.full) != before:
                self.pressure(not before)
        return on_pressure


class MasterPipe:
    """stdin, from the master: the settings as the first JSON line, later lines (a SIGHUP's
    log level) applied as they come. EOF means the master is gone: the parent-death signal
    handles that."""

    def __init__(self, fd: int = 0) -> None:
        self.fd = fd
        self.pending = b""

    def first(self) -> dict[str, Any]:
        while b"\n" not in self.pending:
            data = os.read(self.fd, 65536)
            if not data:
                raise SystemExit("no settings on stdin")
            self.pending += data
        line, self.pending = self.pending.split(b"\n", 1)
        return orjson.loads(line)

    def follow(self, loop: asyncio.AbstractEventLoop) -> None:
        def readable() -> None:
            data = os.read(self.fd, 65536)
            if not data:
                loop.remove_reader(self.fd)
            self.pending += data
            self._apply()

        loop.add_reader(self.fd, readable)
        self._apply()  # a line that came with the settings

    def _apply(self) -> None:
        *lines, self.pending = self.pending.split(b"\n")
        for line in lines:
            level = orjson.loads(line).get("log_level")
            if level in logsetup.LEVELS:
                log.setLevel(logsetup.LEVELS[level])
                log.debug("Log level now %s", level)


def broadcasts(parking: Parking, state: ServerState) -> Callable[[list], None]:
    """What to do with a message on the channels a server process subscribes to: a wake-up
    for one of its waiting FETCHes, or a broadcast on ``keys.CONTROL_CHANNEL`` to all."""
    control = keys.CONTROL_CHANNEL.encode()

    def on_message(msg: list) -> None:
        # Not strict: a hand-edited queue name that is not UTF-8 must not kill the process.
        channel, data = msg[1], msg[2].decode(errors="replace")
        if channel != control:
            parking.on_wake(data)
        elif data == "flush":
            parking.forget_empty()
        elif data.startswith("reap "):  # a worker stopped beating: close its connections
            state.close_worker(data[5:])
    return on_message


async def listen(loop: asyncio.AbstractEventLoop, state: ServerState, lc: Lifecycle,
                 sock: socket.socket, settings: dict[str, Any]) -> asyncio.AbstractServer:
    """Serve client connections on ``sock``: plain TCP, TLS, or PROXY header first (the
    configuration allows one of the last two). Plain TCP goes straight to ``Connection``."""
    # (cast: the compiled Connection and ProxyHeader cannot subclass asyncio.Protocol, but are)
    if settings.get("proxy_protocol"):
        networks = net.parse_networks(settings["proxy_from"])
        return await loop.create_server(
            lambda: cast(asyncio.Protocol, ProxyHeader(state, lc, networks)), sock=sock,
            backlog=1024)

    def connection() -> asyncio.Protocol:
        return cast(asyncio.Protocol, Connection(state, lc))

    if settings.get("tls_cert"):
        # asyncio's TLS: a handshake that fails (a plain-TCP client) closes without a log line.
        tls = net.server_context(settings["tls_cert"], settings["tls_key"])
        return await loop.create_server(connection, sock=sock, backlog=1024, ssl=tls,
                                        ssl_handshake_timeout=net.TLS_HANDSHAKE_TIMEOUT)
    return await loop.create_server(connection, sock=sock, backlog=1024)


async def _reconnect(proc_id: str, url: str, conns: list[redis_client.RedisConnection],
                     tags: list[str], sub: redis_client.RedisConnection,
                     subscribe: redis_client.Ready, pressure: Pressure, parking: Parking,
                     stop: asyncio.Future) -> bool:
    """Redis went away: open the connection again (to the primary Sentinel names now, or that
    holds the partition's slot), with one log line for the loss and one for the return. On one
    Redis both connections go (they go to the same new primary); on a cluster, the ones that
    were lost: the other partitions' primaries serve on. False if stopped meanwhile."""
    gone = [i for i, c in enumerate(conns) if c.closed.done()]
    lost = conns[gone[0]].lost if gone else sub.lost
    log.warning("Lost the connection to Redis (%s); process %s reconnecting", lost, proc_id)
    started = time.monotonic()
    single = tags == [""]
    if single:
        gone = list(range(len(conns)))
        sub.close()
    for i in gone:
        conns[i].close()
    await asyncio.wait([*(conns[i].closed for i in gone),
                        *([sub.closed] if single or sub.closed.done() else [])])
    for i in gone:
        pressure.of(i)(False)  # its write buffer went with it
        if not await redis_client.reconnect(conns[i], url, stop, ready=ensure_library,
                                            tag=tags[i]):
            return False
    if sub.closed.done() and not await redis_client.reconnect(sub, url, stop, ready=subscribe):
        return False
    # Wake-ups published while we were away are lost, and "queue empty" may be stale:
    # forget it (as after a FLUSH) and let each parked FETCH look again.
    parking.look_again()
    back = conns[gone[0]].address if gone else sub.address
    log.info("Reconnected to Redis at %s after %.1f s; process %s serving", back,
             time.monotonic() - started, proc_id)
    return True


def main() -> None:
    pipe = MasterPipe()
    settings = pipe.first()
    logsetup.setup(settings["log_level"])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when we stop
    sys.exit(uvloop.run(serve(settings, pipe)))


if __name__ == "__main__":
    main()
