"""The worker: fetches jobs, runs their handlers, reports ACK or FAIL, beats every 15 s.

Handlers are registered by job type and called with the job's ``args``. An ``async def``
handler runs as a task on the worker's event loop; a plain function runs on a thread pool.
``concurrency`` jobs run at once: that many slots, each with its own connection, fetching
from the queues (strict order, or weighted like faktory_worker_go when queues is a mapping),
running one job, reporting it, fetching again.

Quiet (SIGTSTP, or the server's BEAT reply): stop fetching, finish the jobs in hand.
Terminate (SIGTERM/SIGINT, or the server): stop fetching, wait up to ``shutdown_timeout`` s for
the jobs in hand, FAIL those still running (errtype ``Shutdown``) so they are retried, return.
SIGTTIN prints every thread's stack and every task to stderr.

Middleware wraps every job: ``async def mw(job, call_next): ...; await call_next()``, first
registered outermost (logging, tracing, metrics). Inside a handler (or middleware),
:func:`current_job` is the job being run; ``worker.pool`` (threads) and ``worker.async_pool``
(the loop) lend clients to push jobs, report progress (TRACK SET) or add to the job's batch.
"""
from __future__ import annotations

import asyncio
import contextvars
import faulthandler
import functools
import inspect
import logging
import os
import random
import secrets
import signal
import ssl
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from . import commands as cmds
from .aio import AsyncClient
from .errors import FaktoryError, ServerError
from .job import Job
from .pool import AsyncPool, Pool

log = logging.getLogger("faktory_fast_client.worker")

Handler = Callable[..., Any]
CallNext = Callable[[], Awaitable[None]]
Middleware = Callable[[Job, CallNext], Awaitable[None]]
H = TypeVar("H", bound=Handler)

_current_job: contextvars.ContextVar[Job] = contextvars.ContextVar("faktory_job")

BACKTRACE_LINES = 30  # sent with a FAIL unless the job's ``backtrace`` asks for another number
REPORT_FOR = 30.0  # seconds a slot keeps trying to ACK/FAIL through a broken connection (as Go)
FETCH_GRACE = 5.0  # seconds a FETCH under way at the shutdown deadline gets (the server waits 2)


def current_job() -> Job:
    """The job the calling handler or middleware runs (LookupError outside one)."""
    return _current_job.get()


class NoHandlerError(FaktoryError):
    """A fetched job's type has no registered handler (the job is FAILed with this)."""


class ShutdownError(FaktoryError):
    """A job fetched after the shutdown deadline is FAILed unrun with this (errtype Shutdown)."""

    errtype = "Shutdown"


def error_fields(exc: BaseException, lines: int = BACKTRACE_LINES) -> tuple[str, str, list[str]]:
    """FAIL's errtype (the exception's ``errtype`` attribute if it has a string one, else its
    class name), message and backtrace (innermost frame first, at most ``lines``)."""
    frames = traceback.extract_tb(exc.__traceback__)
    backtrace = [f"{f.filename}:{f.lineno}:in `{f.name}'" for f in reversed(frames)][:lines]
    errtype = getattr(exc, "errtype", None)
    if not isinstance(errtype, str) or not errtype:
        errtype = type(exc).__name__
    return errtype, str(exc) or type(exc).__name__, backtrace


def rss_kb() -> int | None:
    """This process's resident memory in KB (Linux), for BEAT."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    except (OSError, ValueError, IndexError):
        return None


class Worker:
    """A Faktory worker process.

    ``queues``: a sequence is fetched in strict order; a mapping ``{queue: weight}`` is
    shuffled by weight on every fetch. ``concurrency``: jobs at once. ``shutdown_timeout``:
    seconds given to running jobs on terminate. ``beat_interval``: seconds between BEATs.
    The connection arguments (``url``, ``password``, ``ssl_context``) are Client's.
    """

    def __init__(self, url: str | None = None, *,
                 queues: Sequence[str] | Mapping[str, int] = ("default",),
                 concurrency: int = 10, shutdown_timeout: float = 25.0,
                 beat_interval: float = 15.0, wid: str | None = None,
                 labels: list[str] | None = None, password: str | None = None,
                 ssl_context: ssl.SSLContext | None = None, hostname: str | None = None,
                 timeout: float = 10.0) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if isinstance(queues, Mapping):
            if not queues or any(w < 1 for w in queues.values()):
                raise ValueError("weighted queues need at least one queue, weights >= 1")
            self.queues = sorted(queues)
            self._weighted = sorted(q for q, w in queues.items() for _ in range(w))
        else:
            if isinstance(queues, str):
                queues = [queues]
            if not queues:
                raise ValueError("a worker needs at least one queue")
            self.queues = list(queues)
            self._weighted = []
        self.concurrency = concurrency
        self.shutdown_timeout = shutdown_timeout
        self.beat_interval = beat_interval
        self.wid = wid or secrets.token_hex(8)
        self._client_args: dict[str, Any] = {
            "url": url, "password": password, "ssl_context": ssl_context, "wid": self.wid,
            "labels": labels if labels is not None else ["python"], "hostname": hostname,
            "timeout": timeout}
        self._producer_args = {k: v for k, v in self._client_args.items() if k != "wid"}
        self._pool: Pool | None = None
        #: For ``async def`` handlers: clients on the worker's loop (None until it runs) to
        #: push, track progress, open the job's batch.
        self.async_pool: AsyncPool | None = None
        self._handlers: dict[str, Handler] = {}
        self._middleware: list[Middleware] = []
        self.state = "running"  # -> "quiet" -> "terminate"
        self.ready = threading.Event()  # set once registered with the server and fetching
        self._loop: asyncio.AbstractEventLoop | None = None
        self._terminated: asyncio.Event | None = None
        self._wake_beat: asyncio.Event | None = None
        self._slot_jobs: dict[asyncio.Task[Any], str] = {}  # slot -> the jid it runs
        self._past_deadline = False
        self.fetching = 0  # FETCH commands under way (none after quiet once this is 0)
        self._abandoned: set[str] = set()

    @property
    def pool(self) -> Pool:
        """For plain-function handlers (threads): clients to push, track progress, open the
        job's batch (made on first use, ``concurrency`` clients at most)."""
        if self._pool is None:
            self._pool = Pool(size=self.concurrency, **self._producer_args)
        return self._pool

    # -- set-up --

    def register(self, jobtype: str, handler: H | None = None) -> Any:
        """Register ``handler`` for ``jobtype``; without ``handler``, a decorator::

            @worker.register("SendEmail")
            async def send_email(to, subject): ...
        """
        if handler is None:
            def decorate(fn: H) -> H:
                self._handlers[jobtype] = fn
                return fn
            return decorate
        self._handlers[jobtype] = handler
        return handler

    def use(self, *middleware: Middleware) -> None:
        """Add middleware around every job (``async def mw(job, call_next)``)."""
        self._middleware.extend(middleware)

    # -- state changes (any thread) --

    def quiet(self) -> None:
        """Stop fetching; jobs in hand finish. Thread-safe."""
        self._from_any_thread(self._quiet)

    def terminate(self) -> None:
        """Stop: no more fetching, jobs in hand get ``shutdown_timeout``. Thread-safe."""
        self._from_any_thread(self._terminate)

    def _from_any_thread(self, fn: Callable[[], None]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            fn()
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            fn()
        else:
            loop.call_soon_threadsafe(fn)

    def _quiet(self) -> None:
        if self.state == "running":
            log.info("worker %s quiet: no more fetching", self.wid)
            self.state = "quiet"
            self._beat_now()

    def _terminate(self) -> None:
        if self.state != "terminate":
            log.info("worker %s terminating", self.wid)
            self.state = "terminate"
            self._beat_now()
        if self._terminated is not None:
            self._terminated.set()

    def _dump(self) -> None:
        """SIGTTIN, as faktory_worker_go: every thread's stack and every task, to stderr."""
        sys.stderr.flush()
        faulthandler.dump_traceback(all_threads=True)  # written to the file descriptor
        for task in asyncio.all_tasks():
            task.print_stack(limit=20, file=sys.stderr)
        sys.stderr.flush()

    def _beat_now(self) -> None:
        # Tell the server at once (its Busy page, and its FETCH answers nothing to a quiet
        # worker), not at the next heartbeat.
        if self._wake_beat is not None:
            self._wake_beat.set()

    # -- running --

    def run(self) -> None:
        """Run until terminated (blocking). In the main thread, SIGTERM and SIGINT terminate
        and SIGTSTP quiets."""
        asyncio.run(self.run_async(
            install_signals=threading.current_thread() is threading.main_thread()))

    async def run_async(self, install_signals: bool = False) -> None:
        """Run on the current event loop until terminated."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._terminated = asyncio.Event()
        self._wake_beat = asyncio.Event()
        if self.state == "terminate":
            return
        executor = ThreadPoolExecutor(self.concurrency, thread_name_prefix="faktory-job")
        self.async_pool = AsyncPool(size=self.concurrency, **self._producer_args)
        control = AsyncClient(**self._client_args)  # BEAT, and FAILs at shutdown
        signals = (signal.SIGTERM, signal.SIGINT, signal.SIGTSTP, signal.SIGTTIN) \
            if install_signals else ()
        handlers = {signal.SIGTSTP: self._quiet, signal.SIGTTIN: self._dump}
        try:
            await control.connect()  # registers this worker's wid with the server
            for sig in signals:
                loop.add_signal_handler(sig, handlers.get(sig, self._terminate))
            slots = [asyncio.create_task(self._slot(executor), name=f"faktory-slot-{i}")
                     for i in range(self.concurrency)]
            beat = asyncio.create_task(self._heartbeat(control), name="faktory-beat")
            self.ready.set()
            log.info("worker %s ready: %d slots on %s", self.wid, self.concurrency, self.queues)
            await self._terminated.wait()
            await self._shutdown(control, slots)
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
            executor.shutdown(wait=False, cancel_futures=True)
            await control.close()
            await self.async_pool.close()
            if self._pool is not None:
                self._pool.close()
                self._pool = None
            self.ready.clear()
            log.info("worker %s stopped", self.wid)

    async def _shutdown(self, control: AsyncClient, slots: list[asyncio.Task[None]]) -> None:
        _, running = await asyncio.wait(slots, timeout=self.shutdown_timeout)
        if not running:
            return
        self._past_deadline = True
        # Jobs still running: FAIL them so the server retries them, then stop their slots.
        # A thread running a plain function cannot be stopped; its result is ignored.
        holding = {task for task in running if task in self._slot_jobs}
        for task in holding:
            await self._fail_unfinished(control, self._slot_jobs[task])
            task.cancel()
        # The other slots are in a FETCH: cancelling one could lose the job its reply brings
        # (reserved until it expires), so they get the server's 2 s wait and a margin; a job
        # they bring now is FAILed unrun (_perform).
        _, stuck = await asyncio.wait(running, timeout=FETCH_GRACE)
        for task in stuck:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    async def _fail_unfinished(self, control: AsyncClient, jid: str) -> None:
        self._abandoned.add(jid)
        try:
            await control.fail(jid, "Shutdown", "worker terminated before the job finished")
        except FaktoryError as exc:
            log.warning("could not FAIL job %s at shutdown: %s", jid, exc)

    def _queue_list(self) -> list[str]:
        if not self._weighted:
            return self.queues
        shuffled = random.sample(self._weighted, len(self._weighted))
        return list(dict.fromkeys(shuffled))  # each queue once, in shuffled order

    async def _slot(self, executor: ThreadPoolExecutor) -> None:
        client = AsyncClient(**self._client_args)
        backoff = 0.5
        # The last job's ACK or FAIL goes out with the next FETCH: one round trip for both.
        report: tuple[cmds.Command[None], str] | None = None
        try:
            while self.state == "running":
                self.fetching += 1
                failed: FaktoryError | None = None
                job: Job | None = None
                try:
                    fetch = cmds.fetch(self._queue_list())
                    if report is None:
                        job = await client.run(fetch)
                    else:
                        reported, fetched = await client.run_pipelined([report[0], fetch])
                        if isinstance(reported, ServerError):
                            log.warning("server refused the result of job %s: %s", report[1],
                                        reported)
                        report = None
                        if isinstance(fetched, ServerError):
                            raise fetched
                        job = fetched
                except FaktoryError as exc:
                    failed = exc
                finally:
                    self.fetching -= 1
                    if self.fetching == 0 and self.state != "running":
                        log.info("worker %s: no FETCH under way any more", self.wid)
                if failed is not None:
                    if report is not None:  # it may not have landed: again, on its own
                        await self._report(client, *report)
                        report = None
                    log.warning("fetch failed: %s", failed)
                    await self._pause(backoff)
                    backoff = min(backoff * 2, 30.0)
                    continue
                backoff = 0.5
                if job is not None:
                    report = await self._perform(executor, job)
            if report is not None:
                await self._report(client, *report)
        finally:
            await client.close()

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at terminate."""
        assert self._terminated is not None
        try:
            async with asyncio.timeout(seconds):
                await self._terminated.wait()
        except TimeoutError:
            pass

    async def _perform(self, executor: ThreadPoolExecutor,
                       job: Job) -> tuple[cmds.Command[None], str] | None:
        """Run ``job``; the ACK or FAIL to send (None if the shutdown FAILed it already)."""
        if self._past_deadline:  # fetched after the shutdown timeout: not run, retried later
            return self._result(job, ShutdownError("worker terminated before the job ran"))
        task = asyncio.current_task()
        assert task is not None
        self._slot_jobs[task] = job.jid
        try:
            error: BaseException | None = None
            handler = self._handlers.get(job.jobtype)
            if handler is None:
                error = NoHandlerError(f"No handler registered for job type {job.jobtype}")
            else:
                try:
                    await self._dispatch(executor, job, handler)
                except Exception as exc:
                    error = exc
                    log.info("job %s %s failed: %s: %s", job.jobtype, job.jid,
                             type(exc).__name__, exc)
            if job.jid in self._abandoned:
                return None
            return self._result(job, error)
        finally:
            self._slot_jobs.pop(task, None)
            self._abandoned.discard(job.jid)

    @staticmethod
    def _result(job: Job, error: BaseException | None) -> tuple[cmds.Command[None], str]:
        if error is None:
            return cmds.ack(job.jid), job.jid
        errtype, message, backtrace = error_fields(error, job.backtrace or BACKTRACE_LINES)
        return cmds.fail(job.jid, errtype, message, backtrace), job.jid

    async def _dispatch(self, executor: ThreadPoolExecutor, job: Job, handler: Handler) -> None:
        loop = asyncio.get_running_loop()

        async def perform() -> None:
            if inspect.iscoroutinefunction(handler):
                await handler(*job.args)
            else:
                # The thread sees current_job() too: it runs in a copy of this context.
                context = contextvars.copy_context()
                await loop.run_in_executor(executor, functools.partial(
                    context.run, handler, *job.args))

        call: CallNext = perform
        for middleware in reversed(self._middleware):
            call = functools.partial(middleware, job, call)
        token = _current_job.set(job)
        try:
            await call()
        finally:
            _current_job.reset(token)

    async def _report(self, client: AsyncClient, command: cmds.Command[None], jid: str) -> None:
        """Send an ACK or FAIL alone, retried through connection errors for up to REPORT_FOR
        seconds (an ACK twice is harmless; a FAIL that landed makes the next one refused)."""
        deadline = time.monotonic() + REPORT_FOR
        pause = 0.2
        while True:
            try:
                await client.run(command)
                return
            except ServerError as exc:  # e.g. the reservation expired meanwhile: nothing to do
                log.warning("server refused the result of job %s: %s", jid, exc)
                return
            except FaktoryError as exc:
                if time.monotonic() + pause > deadline or self.state == "terminate":
                    log.error("could not report job %s: %s", jid, exc)
                    return
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)

    async def _heartbeat(self, control: AsyncClient) -> None:
        assert self._wake_beat is not None
        while True:
            try:
                async with asyncio.timeout(self.beat_interval):
                    await self._wake_beat.wait()
            except TimeoutError:
                pass
            self._wake_beat.clear()
            try:
                state = await control.beat(
                    self.state if self.state != "running" else None, rss_kb())
            except FaktoryError as exc:
                log.warning("heartbeat failed: %s", exc)
                continue
            if state == "quiet":
                self._quiet()
            elif state == "terminate":
                self._terminate()
