"""The master process: owns the child Redis, binds the port, runs N server processes
(``faktory_fast.server.process``), the background tasks (``faktory_fast.master.tasks``: once, here,
not once per process) and the web UI (``faktory_fast.master.webui``), and restarts what dies.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import orjson
import uvloop

from faktory_fast import config, hot_path
from faktory_fast import log as logsetup
from faktory_fast.config import Config
from faktory_fast.log import FailureLog
from faktory_fast.master import migration
from faktory_fast.master.listen import StartupError, bind
from faktory_fast.master.redis_child import (
    MIN_REDIS,
    RedisChild,
    RedisChildError,
    set_pdeathsig,
)
from faktory_fast.master.tasks import BackgroundTasks
from faktory_fast.master.webui import WebUI, bind_web
from faktory_fast.storage import redis_client
from faktory_fast.storage.partitions import Partitions, layout_text, pinned_of, tags_of
from faktory_fast.storage.store import AsyncStore, ensure_library, process_id

log = logging.getLogger("faktory_fast")

CRASH_LOOP = 5  # server process deaths within a second of start before we give up
REDIS_START_WAIT = 30.0  # seconds a Redis of the user's may take to answer at start-up


@dataclass
class ServerProcess:
    """One of the server processes (``faktory_fast.server.process``) the master runs."""

    proc: subprocess.Popen
    proc_id: str
    started: float


class Supervisor:
    """Runs the whole server; ``run()`` returns the process exit status."""

    def __init__(self, cfg: Config, argv: list[str] | None = None,
                 reload_hooks: Sequence[Callable[[Config], None]] = ()) -> None:
        """``argv``: the command line ``cfg`` came from, read again on SIGHUP;
        ``reload_hooks``: called with the new Config after each SIGHUP reload (subsystems with
        configuration of their own: cron, throttles)."""
        self.cfg = cfg
        self.argv = argv
        self.reload_hooks = list(reload_hooks)
        self.started_at = time.time()
        self.redis: RedisChild | None = None
        self.redis_url = cfg.redis_url or ""
        self.server_processes: list[ServerProcess] = []
        self.web: WebUI | None = None  # made by _main, with -w
        self.sock: socket.socket | None = None
        self.stopping = False
        self.exit_code = 0
        self._quick_deaths = 0
        self._children: ChildWatch  # made by _main before it starts any child

    # -- entry -----------------------------------------------------------------------------
    def run(self) -> int:
        try:
            if not self.redis_url:
                self.redis = RedisChild(self.cfg.data_dir, self.cfg.redis_server,
                                        self.cfg.durability, self.cfg.log_level == "debug")
                self.redis.start()
                self.redis_url = self.redis.url
            return uvloop.run(self._main())
        except (StartupError, RedisChildError) as exc:
            log.error("%s", exc)
            return 1
        except redis_client.RedisClosed:
            log.error("Lost the connection to Redis while starting")
            return 1
        except redis_client.NotReplicated as exc:  # min-replicas-to-write, and too few replicas
            log.error("Cannot start: %s", exc)
            return 1
        finally:
            self._stop_children()
            if self.redis is not None:
                self.redis.stop()
            log.info("Goodbye")

    async def _main(self) -> int:
        loop = asyncio.get_running_loop()
        # What no task or callback caught: one line per distinct failure a minute, as the
        # background tasks report theirs, not asyncio's traceback each time.
        loop_failures = FailureLog("Event loop callback")
        loop.set_exception_handler(lambda _loop, context: loop_failures.failed(
            context.get("exception") or RuntimeError(context.get("message", "unknown"))))
        stop = loop.create_future()
        tags = tags_of(self.redis_url)  # a connection for each partition
        conns = [redis_client.RedisConnection() for _ in tags]
        for conn, tag in zip(conns, tags):
            if self.redis is not None:
                await redis_client.connect(self.redis_url, conn=conn, tag=tag)
            # A Redis of the user's may be restarting, or failing over: give it a while.
            elif not await redis_client.reconnect(conn, self.redis_url, give_up=REDIS_START_WAIT,
                                                  tag=tag):
                return 1  # reconnect said why
        parts = Partitions([AsyncStore(conn, tag) for conn, tag in zip(conns, tags)],
                           pinned_of(self.redis_url))
        store = parts.home
        for each in parts.stores:  # each partition may be on a primary of its own
            await self._check_redis(each)
            await each.load_library()
        if tags != [""]:  # a cluster: its queues stay where the first node put them
            layout = layout_text(self.redis_url)
            recorded = await store.claim_layout(layout)
            if recorded != layout:
                raise StartupError(f"the Redis Cluster's queues are spread over partitions as "
                                   f"{recorded!r} (count, pinned queues), not {layout!r}: use "
                                   "that REDIS_URL (the layout cannot change while it holds jobs)")
        await migration.migrate(store)
        background = BackgroundTasks(parts, lambda: self.cfg, self.redis)
        # Throttles are read by every FETCH: in Redis before the first server process starts.
        await background.publish_config()
        if self.redis is not None:
            # Our own Redis: any process still registered died with a killed master before us.
            for proc_id in await store.registered_processes():
                await store.process_gone(proc_id)
        # From "Listening on", a SIGHUP reloads (its default action would stop the server).
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        self.sock = bind(self.cfg.host, self.cfg.port)
        web_sock = bind_web(self.cfg) if self.cfg.web_port else None
        log.info("Listening on %s:%d with %d server processes (hot path: %s)", self.cfg.host,
                 self.sock.getsockname()[1], self.cfg.processes, hot_path())
        # Whenever a child exits: restart it, or stop the server.
        self._children = ChildWatch(loop, lambda: self._reap_children(store, stop))
        if self.redis is not None and self.redis.proc is not None:
            self._children.watch(self.redis.proc)
        for _ in range(self.cfg.processes):
            self._spawn()
        if web_sock is not None:
            self.web = WebUI(lambda: self.cfg, self.redis_url, self.started_at,
                             self._children.watch)
            self.web.start(web_sock)

        def request_stop(signame: str) -> None:
            if not stop.done():
                log.info("%s received, shutting down", signame)
                stop.set_result(None)

        loop.add_signal_handler(signal.SIGTERM, request_stop, "SIGTERM")
        loop.add_signal_handler(signal.SIGINT, request_stop, "SIGINT")
        tasks = background.start()
        await self._follow_redis(conns, tags, stop)
        for t in tasks:
            t.cancel()
        self.stopping = True
        self._stop_children()
        for sp in self.server_processes:
            try:
                await store.process_gone(sp.proc_id)
            except Exception:
                pass
        for conn in conns:
            conn.close()
        return self.exit_code

    async def _follow_redis(self, conns: list[redis_client.RedisConnection], tags: list[str],
                            stop: asyncio.Future) -> None:
        """Until ``stop``: a Redis of the user's that goes away (killed, failed over to a
        replica, demoted) is reconnected to, found again through Sentinel or the cluster;
        the background tasks skip their rounds meanwhile. Losing the child Redis stops the
        server."""
        while True:
            await asyncio.wait([stop, *(c.closed for c in conns)],
                               return_when=asyncio.FIRST_COMPLETED)
            if stop.done():
                return
            if self.redis is not None:
                log.error("Lost the connection to Redis")
                self.exit_code = 1
                return
            for conn, tag in zip(conns, tags):
                if not conn.closed.done():
                    continue
                log.warning("Lost the connection to Redis (%s); reconnecting", conn.lost)
                down = time.monotonic()
                if not await redis_client.reconnect(conn, self.redis_url, stop,
                                                    ready=ensure_library, tag=tag):
                    return
                log.info("Reconnected to Redis at %s after %.1f s", conn.address,
                         time.monotonic() - down)

    async def _check_redis(self, store: AsyncStore) -> None:
        text = await store.server_version()
        for line in text.splitlines():
            if line.startswith("redis_version:"):
                version = tuple(int(p) for p in line.split(":", 1)[1].strip().split(".")[:2])
                if version < MIN_REDIS:
                    raise StartupError(f"Redis {line.split(':', 1)[1].strip()} is too old: "
                                       "faktory_fast needs Redis >= 7.0")

    # -- processes ---------------------------------------------------------------------------
    def _settings(self, proc_id: str) -> bytes:
        assert self.sock is not None
        return orjson.dumps({
            "proc_id": proc_id, "fd": self.sock.fileno(), "redis_url": self.redis_url,
            "password": self.cfg.password, "max_line": self.cfg.max_line,
            "max_connections": self.cfg.max_connections, "log_level": self.cfg.log_level,
            "line_budget": self.cfg.line_budget, "line_timeout": self.cfg.line_timeout,
            "redis_reconnect": self.redis is None,
            "redis_wait_replicas": self.cfg.redis_wait_replicas,
            "redis_wait_timeout": self.cfg.redis_wait_timeout,
            "redis_hold": self.cfg.redis_hold,
            "environment": self.cfg.environment,
            "batch_retention": self.cfg.batch_retention,
            "job_metrics": self.cfg.metrics_job_types > 0,
            "started_at": self.started_at,
            "tls_cert": self.cfg.tls_cert, "tls_key": self.cfg.tls_key,
            "proxy_protocol": self.cfg.proxy_protocol, "proxy_from": self.cfg.proxy_from,
        })

    def _spawn(self) -> None:
        assert self.sock is not None
        proc_id = process_id() + f"-{len(self.server_processes)}"
        # -P: the working directory is not put on sys.path (started in a source checkout, the
        # process would import the checkout instead of the installed package).
        p = subprocess.Popen([sys.executable, "-P", "-m", "faktory_fast.server.process"],
                             stdin=subprocess.PIPE, pass_fds=(self.sock.fileno(),),
                             preexec_fn=set_pdeathsig)
        assert p.stdin is not None
        # The settings, one line; the pipe stays open for later ones (a SIGHUP's log level).
        p.stdin.write(self._settings(proc_id) + b"\n")
        p.stdin.flush()
        self.server_processes.append(ServerProcess(p, proc_id, time.monotonic()))
        self._children.watch(p)
        log.debug("Started server process %d (%s)", p.pid, proc_id)

    def _reap_children(self, store: AsyncStore, stop: asyncio.Future) -> None:
        if self.redis is not None and not self.redis.alive():
            if not stop.done() and not self.stopping:  # one line per death, not one per exit
                log.error("The child Redis died (exit status %s); shutting down. A supervisor such "
                          "as systemd should restart the server.",
                          self.redis.proc and self.redis.proc.returncode)
            self.exit_code = 1
            if not stop.done():
                stop.set_result(None)
            return
        for sp in list(self.server_processes):
            code = sp.proc.poll()
            if code is None or self.stopping:
                continue
            self.server_processes.remove(sp)
            log.warning("Server process %d exited with status %s; starting another", sp.proc.pid,
                        code)
            asyncio.ensure_future(store.process_gone(sp.proc_id))
            if time.monotonic() - sp.started < 1.0:
                self._quick_deaths += 1
                if self._quick_deaths >= CRASH_LOOP:
                    log.error("Server processes keep dying at start; giving up")
                    self.exit_code = 1
                    if not stop.done():
                        stop.set_result(None)
                    return
            else:
                self._quick_deaths = 0
            self._spawn()
        if self.web is not None and not self.stopping and not self.web.reap():
            self.exit_code = 1
            if not stop.done():
                stop.set_result(None)

    def _stop_children(self) -> None:
        self.stopping = True
        procs = [sp.proc for sp in self.server_processes] + (self.web.stop() if self.web else [])
        for p in procs:
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + 10
        for p in procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.server_processes = [sp for sp in self.server_processes if sp.proc.poll() is None]

    # -- SIGHUP ----------------------------------------------------------------------------------
    def reload(self) -> None:
        """Read conf.d/*.toml (and the environment) again, as Faktory does on SIGHUP: apply the
        log level, the web password and the backup schedule; report other changes as needing
        a restart; call the reload hooks. No connection is dropped (the web UI restarts if its
        password changed)."""
        try:
            new = config.load(self.argv)
        except config.ConfigError as exc:
            log.error("SIGHUP: configuration not reloaded: %s", exc)
            return
        except Exception as exc:  # a check config.load lacks: the same one line, config kept
            log.error("SIGHUP: configuration not reloaded: %s: %s", type(exc).__name__,
                      logsetup.one_line(str(exc)))
            log.debug("SIGHUP: traceback", exc_info=True)
            return
        if new is None:
            return
        for name in config.restart_needed(self.cfg, new):
            log.warning("SIGHUP: %s changed in the configuration; that needs a restart", name)
        old, self.cfg = self.cfg, replace(self.cfg, **{n: getattr(new, n) for n in config.RELOADABLE})
        changed = [n for n in config.RELOADABLE if getattr(old, n) != getattr(self.cfg, n)]
        if old.log_level != self.cfg.log_level:
            log.setLevel(logsetup.LEVELS[self.cfg.log_level])
            message = orjson.dumps({"log_level": self.cfg.log_level}) + b"\n"
            for sp in self.server_processes:
                try:
                    assert sp.proc.stdin is not None
                    sp.proc.stdin.write(message)
                    sp.proc.stdin.flush()
                except (OSError, ValueError):
                    pass  # gone: its successor starts with the new settings
        if old.web_password != self.cfg.web_password and self.web is not None:
            self.web.reload()
        for hook in self.reload_hooks:
            try:
                hook(self.cfg)
            except Exception:
                log.exception("SIGHUP: reloading %s failed", getattr(hook, "__qualname__", hook))
        log.info("SIGHUP: configuration reloaded (%s)", ", ".join(changed) or "no change")


class ChildWatch:
    """Calls ``on_exit`` whenever a watched child process ends (uvloop keeps SIGCHLD for
    itself): the supervisor then looks at every child (``Supervisor._reap_children``)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_exit: Callable[[], None]) -> None:
        self.loop = loop
        self.on_exit = on_exit

    def watch(self, proc: subprocess.Popen) -> None:
        loop = self.loop
        try:
            fd = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):  # no pidfd (old kernel, not Linux): poll instead
            def poll() -> None:
                if proc.poll() is None:
                    loop.call_later(0.5, poll)
                else:
                    self.on_exit()
            loop.call_later(0.5, poll)
            return

        def exited() -> None:
            loop.remove_reader(fd)
            os.close(fd)
            self.on_exit()
        loop.add_reader(fd, exited)
