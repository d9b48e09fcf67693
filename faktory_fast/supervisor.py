"""The master process: owns the child Redis, binds the port, runs N server processes and the
background tasks (scheduler and reapers: once, here, not once per process), and the web UI.
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
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvloop

from faktory_fast import aredis, hot_path, jobs, keys
from faktory_fast.config import Config
from faktory_fast.lifecycle import Lifecycle, now_str, reservation_job
from faktory_fast.redis_child import MIN_REDIS, RedisChild, RedisChildError, set_pdeathsig
from faktory_fast.store import Store, process_id

log = logging.getLogger("faktory_fast")

SCHEDULER_INTERVAL = 0.25  # due scheduled/retry jobs are enqueued within this
RESERVATION_INTERVAL = 1.0
WORKER_REAP_INTERVAL = 15.0
WORKER_TIMEOUT = 60.0
DEAD_PURGE_INTERVAL = 60.0
SCAN_BATCH = 500
CRASH_LOOP = 5  # worker deaths within a second of start before we give up


class StartupError(RuntimeError):
    """The server cannot start; the message says why."""


@dataclass
class WorkerProcess:
    proc: subprocess.Popen
    proc_id: str
    started: float
    expected_exit: bool = False


@dataclass
class TaskStats:
    """Counters behind INFO's ``tasks`` section."""

    values: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, **fields: float) -> None:
        for k, v in fields.items():
            key = f"{name}.{k}"
            self.values[key] = self.values.get(key, 0) + v


def bind(host: str, port: int) -> socket.socket:
    """The listening socket every server process accepts on."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


class Supervisor:
    """Runs the whole server; ``run()`` returns the process exit status."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.started_at = time.time()
        self.redis: RedisChild | None = None
        self.redis_url = cfg.redis_url or ""
        self.workers: list[WorkerProcess] = []
        self.web: subprocess.Popen | None = None
        self.sock: socket.socket | None = None
        self.web_sock: socket.socket | None = None
        self.stopping = False
        self.exit_code = 0
        self.stats = TaskStats()
        self._quick_deaths = 0
        self._on_exit: Any = None  # set once the event loop runs
        self._web_started = 0.0

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
        finally:
            self._stop_children()
            if self.redis is not None:
                self.redis.stop()
            log.info("Goodbye")

    async def _main(self) -> int:
        loop = asyncio.get_running_loop()
        conn = await aredis.connect(self.redis_url)
        store = Store.for_async(conn)
        await self._check_redis(store)
        await store.load_library()
        await self._migrate(store)
        if self.redis is not None:
            # Our own Redis: any process still registered died with a killed master before us.
            for proc in await store.registered_processes():
                await store.process_gone(proc)
        self.sock = bind(self.cfg.host, self.cfg.port)
        log.info("Listening on %s:%d with %d server processes (hot path: %s)", self.cfg.host,
                 self.sock.getsockname()[1], self.cfg.processes, hot_path())
        for _ in range(self.cfg.processes):
            self._spawn()
        if self.cfg.web_port:
            self._start_web()

        stop = loop.create_future()

        def request_stop(signame: str) -> None:
            if not stop.done():
                log.info("%s received, shutting down", signame)
                stop.set_result(None)

        loop.add_signal_handler(signal.SIGTERM, request_stop, "SIGTERM")
        loop.add_signal_handler(signal.SIGINT, request_stop, "SIGINT")
        loop.add_signal_handler(signal.SIGHUP, lambda: log.info("SIGHUP: nothing to reload yet"))
        self._on_exit = lambda: self._reap_children(store, stop)
        for w in self.workers:
            self._watch(w.proc)
        if self.web is not None:
            self._watch(self.web)
        if self.redis is not None and self.redis.proc is not None:
            self._watch(self.redis.proc)

        master = Lifecycle(store, process_id(), self.started_at)
        tasks = [asyncio.ensure_future(t) for t in (
            self._every(SCHEDULER_INTERVAL, self._enqueue_due, store),
            self._every(RESERVATION_INTERVAL, self._expire_reservations, store, master),
            self._every(WORKER_REAP_INTERVAL, self._reap_workers, store),
            self._every(DEAD_PURGE_INTERVAL, self._purge_dead, store),
        )]
        await asyncio.wait([stop, conn.closed], return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            t.cancel()
        if conn.closed.done() and not stop.done():
            log.error("Lost the connection to Redis")
            self.exit_code = 1
        self.stopping = True
        self._stop_children()
        for w in self.workers:
            try:
                await store.process_gone(w.proc_id)
            except Exception:
                pass
        conn.close()
        return self.exit_code

    async def _check_redis(self, store: Store) -> None:
        text = await store.server_version()
        for line in text.splitlines():
            if line.startswith("redis_version:"):
                version = tuple(int(p) for p in line.split(":", 1)[1].strip().split(".")[:2])
                if version < MIN_REDIS:
                    raise StartupError(f"Redis {line.split(':', 1)[1].strip()} is too old: "
                                       "faktory_fast needs Redis >= 7.0")

    async def _migrate(self, store: Store) -> None:
        """A data dir written by Faktory: turn its ``working`` entries into ours."""
        legacy = await store.legacy_reservations()
        for member, score in legacy:
            try:
                res = orjson.loads(member)
                job = res["job"]
                record = orjson.dumps({"rid": 0, "wid": res.get("wid", ""),
                                       "reserved_at": score, "expires_at": score, "job": job})
                await store.migrate_reservation(member, job["jid"], record, score)
            except (ValueError, KeyError, TypeError):
                log.warning("Dropping unreadable reservation %r", member[:200])
        if legacy:
            log.info("Migrated %d reservations from Faktory's format", len(legacy))

    # -- processes ---------------------------------------------------------------------------
    def _settings(self, proc_id: str) -> bytes:
        assert self.sock is not None
        return orjson.dumps({
            "proc": proc_id, "fd": self.sock.fileno(), "redis_url": self.redis_url,
            "password": self.cfg.password, "max_line": self.cfg.max_line,
            "max_connections": self.cfg.max_connections, "log_level": self.cfg.log_level,
            "line_budget": self.cfg.line_budget, "line_timeout": self.cfg.line_timeout,
            "environment": self.cfg.environment,
            "started_at": self.started_at,
        })

    def _spawn(self) -> None:
        assert self.sock is not None
        proc_id = process_id() + f"-{len(self.workers)}"
        p = subprocess.Popen([sys.executable, "-m", "faktory_fast.worker"], stdin=subprocess.PIPE,
                             pass_fds=(self.sock.fileno(),), preexec_fn=set_pdeathsig)
        assert p.stdin is not None
        p.stdin.write(self._settings(proc_id))
        p.stdin.close()
        self.workers.append(WorkerProcess(p, proc_id, time.monotonic()))
        self._watch(p)
        log.debug("Started server process %d (%s)", p.pid, proc_id)

    def _start_web(self) -> None:
        env = dict(os.environ,
                   FAKTORY_FAST_REDIS_URL=self.redis_url,
                   FAKTORY_FAST_WEB_PASSWORD=self.cfg.web_password,
                   FAKTORY_FAST_ENV=self.cfg.environment,
                   FAKTORY_FAST_STARTED_AT=repr(self.started_at),
                   FAKTORY_FAST_BINDING=self.cfg.binding)
        bind_to = f"[{self.cfg.web_host}]:{self.cfg.web_port}" if ":" in self.cfg.web_host \
            else f"{self.cfg.web_host}:{self.cfg.web_port}"
        if self.web_sock is None:
            # Bound here so a taken port is reported at once (gunicorn would retry for 5 s).
            try:
                self.web_sock = bind(self.cfg.web_host, self.cfg.web_port)
            except StartupError as exc:
                log.error("Web UI disabled: %s", exc)
                return
        fd = self.web_sock.fileno()
        self.web = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-b", f"fd://{fd}", "-w", "1", "--threads", "4",
             "--log-level", "warning", "faktory_fast.web.app:create_app()"], env=env,
            pass_fds=(fd,), preexec_fn=set_pdeathsig)
        self._web_started = time.monotonic()
        self._watch(self.web)
        log.info("Web UI at http://%s", bind_to)

    def _watch(self, proc: subprocess.Popen) -> None:
        """Call ``self._on_exit`` when ``proc`` ends (uvloop keeps SIGCHLD for itself)."""
        if self._on_exit is None:
            return  # before the loop runs: _main() adds the watchers
        loop = asyncio.get_running_loop()
        try:
            fd = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):  # no pidfd (old kernel, not Linux): poll instead
            def poll() -> None:
                if proc.poll() is None:
                    loop.call_later(0.5, poll)
                else:
                    self._on_exit()
            loop.call_later(0.5, poll)
            return

        def exited() -> None:
            loop.remove_reader(fd)
            os.close(fd)
            self._on_exit()
        loop.add_reader(fd, exited)

    def _reap_children(self, store: Store, stop: asyncio.Future) -> None:
        if self.redis is not None and not self.redis.alive():
            if not stop.done() and not self.stopping:  # one line per death, not one per exit
                log.error("The child Redis died (exit status %s); shutting down. A supervisor such "
                          "as systemd should restart the server.",
                          self.redis.proc and self.redis.proc.returncode)
            self.exit_code = 1
            if not stop.done():
                stop.set_result(None)
            return
        for w in list(self.workers):
            code = w.proc.poll()
            if code is None or self.stopping:
                continue
            self.workers.remove(w)
            log.warning("Server process %d exited with status %s; starting another", w.proc.pid, code)
            asyncio.ensure_future(store.process_gone(w.proc_id))
            if time.monotonic() - w.started < 1.0:
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
        if self.web is not None and self.web.poll() is not None and not self.stopping:
            if time.monotonic() - self._web_started < 2.0:  # broken, not crashed: no respawn loop
                log.error("The web UI exited at start (status %s); serving without it",
                          self.web.returncode)
                self.web = None
            else:
                log.warning("The web UI exited with status %s; restarting it", self.web.returncode)
                self._start_web()

    def _stop_children(self) -> None:
        self.stopping = True
        procs = [w.proc for w in self.workers] + ([self.web] if self.web else [])
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
        self.workers = [w for w in self.workers if w.proc.poll() is None]

    # -- background tasks --------------------------------------------------------------------
    async def _every(self, interval: float, fn: Any, *args: Any) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await fn(*args)
            except aredis.RedisClosed:
                return
            except Exception:
                log.exception("Background task %s failed", fn.__name__)

    async def _enqueue_due(self, store: Store) -> None:
        for zset, name in ((keys.SCHEDULED, "Scheduled"), (keys.RETRIES, "Retries")):
            t0 = time.perf_counter()
            moved = 0
            while True:
                due = await store.due(zset, now_str(), SCAN_BATCH)
                if not due:
                    break
                now_ns = time.time_ns()
                moves = []
                for member in due:
                    queue, prio, payload = jobs.requeue(member, now_ns)
                    if not queue:
                        log.warning("Dropping a due job with an invalid queue: %r", member[:200])
                    moves.append((member, queue, prio, payload))
                moved += await store.enqueue_from(zset, moves)
                if len(due) < SCAN_BATCH:
                    break
            self.stats.add(name, cycles=1, enqueued=moved, wall_time_sec=time.perf_counter() - t0)
        await store.set_task_stats(self.stats.values)

    async def _expire_reservations(self, store: Store, master: Lifecycle) -> None:
        n = 0
        while True:
            records = await store.expired(now_str(), 100)
            for record in records:
                rid, job = reservation_job(record)
                jid = orjson.loads(job).get("jid", "")
                if await master.fail_reservation(jid, jobs.EXPIRED, (rid, job)):
                    n += 1
            if len(records) < 100:
                break
        if n:
            log.info("%d job reservations expired", n)
            self.stats.add("Busy", reaped=n)

    async def _reap_workers(self, store: Store) -> None:
        n = await store.reap_workers(jobs.score(time.time_ns() - int(WORKER_TIMEOUT * 1e9)))
        if n:
            log.info("Reaped %d workers that stopped sending heartbeats", n)
            self.stats.add("Workers", reaped=n)

    async def _purge_dead(self, store: Store) -> None:
        t0 = time.perf_counter()
        await store.purge_dead(now_str())
        self.stats.add("Dead", cycles=1, wall_time_sec=time.perf_counter() - t0)
