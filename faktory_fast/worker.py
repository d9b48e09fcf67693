"""One server process: serves client connections on the socket the supervisor bound.

Started by the supervisor as ``python -P -m faktory_fast.worker`` with the listening socket
inherited and its settings (JSON) on stdin. Shares nothing with its siblings but Redis.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import time
from typing import Any

import orjson
import uvloop

from faktory_fast import aredis, keys, log as logsetup, net, resp, wire
from faktory_fast.lifecycle import Lifecycle
from faktory_fast.server import LINE_TIMEOUT, Connection, ProxyHeader, ServerState
from faktory_fast.store import Store, ensure_library

log = logging.getLogger("faktory_fast")

COMMAND_REPORT_INTERVAL = 1.0
SHUTDOWN_GRACE = 5.0
REDIS_START_WAIT = 30.0  # seconds a Redis of the user's may take to answer at start-up


async def serve(settings: dict[str, Any]) -> int:
    """Serve until SIGTERM (exit 0) or until Redis goes away (exit 1; with a Redis of the
    user's, ``redis_reconnect``: reconnect instead, clients keep their connections)."""
    loop = asyncio.get_running_loop()
    proc = settings["proc"]
    settings["pipe"].follow(loop)
    url = settings["redis_url"]
    reconnect = settings.get("redis_reconnect", False)
    lc: Lifecycle | None = None

    def on_message(msg: list) -> None:
        # Not strict: a hand-edited queue name that is not UTF-8 must not kill the process.
        channel, data = msg[1], msg[2].decode(errors="replace")
        if lc is None:
            return
        if channel == b"ff:ctl":
            lc.on_control(data)
        else:
            lc.on_wake(data)

    async def subscribe(sub: aredis.RedisConnection) -> None:
        await sub.execute("SUBSCRIBE", keys.wake_channel(proc))
        await sub.execute("SUBSCRIBE", keys.CONTROL_CHANNEL)

    sub = aredis.RedisConnection(on_message)
    conn = aredis.RedisConnection()
    conn.wait_replicas = settings.get("redis_wait_replicas", 0)
    conn.wait_timeout = settings.get("redis_wait_timeout", 1000)
    if reconnect:  # the master has just reached it, but it may be failing over right now
        if not (await aredis.reconnect(sub, url, ready=subscribe, give_up=REDIS_START_WAIT)
                and await aredis.reconnect(conn, url, give_up=REDIS_START_WAIT)):
            return 1
    else:
        await aredis.connect(url, conn=sub, ready=subscribe)
        await aredis.connect(url, conn=conn)
    store = Store.for_async(conn)
    lc = Lifecycle(store, proc, settings["started_at"])
    state = ServerState(lc, settings["password"], settings["max_line"], settings["max_connections"],
                        settings["environment"], settings.get("line_budget"),
                        settings.get("line_timeout", LINE_TIMEOUT))
    conn.on_pressure = state.redis_pressure
    sock = socket.socket(fileno=settings["fd"])
    server = await listen(loop, state, sock, settings)
    log.debug("Process %s serving (wire codec: %s, RESP codec: %s)", proc,
              wire.IMPLEMENTATION, resp.IMPLEMENTATION)

    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, lambda: stop.done() or stop.set_result(0))

    async def report_commands() -> None:
        while True:
            await asyncio.sleep(COMMAND_REPORT_INTERVAL)
            n, lc.commands = lc.commands, 0
            if n:
                try:
                    await store.count_commands(proc, n)
                except aredis.RedisClosed:
                    if not reconnect:
                        return  # serve() reports the loss
                    lc.commands += n  # counted once Redis is back

    reporter = asyncio.ensure_future(report_commands())
    while True:
        await asyncio.wait([stop, conn.closed, sub.closed], return_when=asyncio.FIRST_COMPLETED)
        if stop.done() or not reconnect:
            break
        if not await _reconnect(proc, url, conn, sub, subscribe, state, stop):
            break
    reporter.cancel()
    # Stopping or not, clients are told and let go before we exit: commands still arriving
    # would start tasks that never run. Without Redis every command fails at once.
    server.close()
    state.shutdown()
    deadline = loop.time() + SHUTDOWN_GRACE
    while any(c.busy for c in state.connections) and loop.time() < deadline:
        await asyncio.sleep(0.01)  # in-flight commands finish their Redis round trip
    for c in list(state.connections):
        c.write_and_close(b"")
    if lc.commands and not conn.closed.done():
        try:
            await store.count_commands(proc, lc.commands)
        except aredis.RedisClosed:
            pass
    else:
        await asyncio.sleep(0)  # the connections' connection_lost (and their BYE tasks) run
    if not stop.done() and (conn.closed.done() or sub.closed.done()):
        # The one line for this: the commands it failed answered "-ERR lost the connection to
        # Redis" without a word each (server._error_reply).
        log.error("Lost the connection to Redis; process %s exits", proc)
        return 1
    conn.close()
    sub.close()
    return 0


from faktory_fast.server import LINE_TIMEOUT, Connection, ProxyHeader, ServerState
from faktory_fast.store import Store, ensure_library


def main() -> None:
    pipe = MasterPipe()
    settings = pipe.first()
    settings["pipe"] = pipe
    logsetup.setup(settings["log_level"])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when we stop
    sys.exit(uvloop.run(serve(settings)))


if __name__ == "__main__":
    main()
