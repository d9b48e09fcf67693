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
from typing import Any

import orjson
import uvloop

from faktory_fast import aredis, keys, log as logsetup, net, resp, wire
from faktory_fast.lifecycle import Lifecycle
from faktory_fast.server import LINE_TIMEOUT, Connection, ProxyHeader, ServerState
from faktory_fast.store import Store

log = logging.getLogger("faktory_fast")

COMMAND_REPORT_INTERVAL = 1.0
SHUTDOWN_GRACE = 5.0


async def serve(settings: dict[str, Any]) -> int:
    """Serve until SIGTERM (exit 0) or until Redis goes away (exit 1)."""
    loop = asyncio.get_running_loop()
    proc = settings["proc"]
    settings["pipe"].follow(loop)
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

    sub = await aredis.connect(settings["redis_url"], on_push=on_message)
    conn = await aredis.connect(settings["redis_url"])
    store = Store.for_async(conn)
    lc = Lifecycle(store, proc, settings["started_at"])
    await sub.execute("SUBSCRIBE", keys.wake_channel(proc))
    await sub.execute("SUBSCRIBE", keys.CONTROL_CHANNEL)
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
                    return  # serve() reports the loss

    reporter = asyncio.ensure_future(report_commands())
    await asyncio.wait([stop, conn.closed, sub.closed], return_when=asyncio.FIRST_COMPLETED)
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
    if conn.closed.done() or sub.closed.done():
        # The one line for this: the commands it failed answered "-ERR lost the connection to
        # Redis" without a word each (server._error_reply).
        log.error("Lost the connection to Redis; process %s exits", proc)
        return 1
    conn.close()
    sub.close()
    return 0


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


async def listen(loop: asyncio.AbstractEventLoop, state: ServerState, sock: socket.socket,
                 settings: dict[str, Any]) -> asyncio.AbstractServer:
    """Serve client connections on ``sock``: plain TCP, TLS, or PROXY header first (the
    configuration allows one of the last two). Plain TCP goes straight to ``Connection``."""
    if settings.get("proxy_protocol"):
        networks = net.parse_networks(settings["proxy_from"])
        return await loop.create_server(lambda: ProxyHeader(state, networks), sock=sock,
                                        backlog=1024)
    if settings.get("tls_cert"):
        # asyncio's TLS: a handshake that fails (a plain-TCP client) closes without a log line.
        tls = net.server_context(settings["tls_cert"], settings["tls_key"])
        return await loop.create_server(lambda: Connection(state), sock=sock, backlog=1024,
                                        ssl=tls, ssl_handshake_timeout=net.TLS_HANDSHAKE_TIMEOUT)
    return await loop.create_server(lambda: Connection(state), sock=sock, backlog=1024)


def main() -> None:
    pipe = MasterPipe()
    settings = pipe.first()
    settings["pipe"] = pipe
    logsetup.setup(settings["log_level"])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when we stop
    sys.exit(uvloop.run(serve(settings)))


if __name__ == "__main__":
    main()
