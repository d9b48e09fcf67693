"""The job lifecycle of one server process: what each protocol command does, over the Store.

The wire layer (``server.py``) parses lines and calls these methods; they validate, shape
payloads with ``jobs`` and change Redis state with one Store call each. Waiting FETCHes are
parked here, not in Redis: a FETCH that finds nothing registers this process as a waiter for
its queues (atomically, inside ``ff_fetch``), and the push that later fills one of them
publishes a wake-up, so thousands of idle fetchers cost no Redis connections and no polling.
"""
from __future__ import annotations

import asyncio
import logging
import resource
import time
from typing import Any, Callable, Coroutine

import orjson

from faktory_fast import FAKTORY_VERSION, jobs, keys
from faktory_fast.aredis import Then
from faktory_fast.jobs import JobError
from faktory_fast.store import Store

log = logging.getLogger("faktory_fast")

FETCH_WAIT = 2.0  # seconds a FETCH waits for a job (Faktory's BRPOP timeout)
EMPTY_TRUST = 10.0  # seconds we trust "queue was empty" without asking Redis again
RESERVED_CACHE = 100_000  # reservations handed out here, remembered for a one-trip FAIL
# ff_fetch's answers besides a job: 0 nothing (we are registered as a waiter), these two,
# and -3: nothing in the unpaused queues (not registered for the paused ones).
QUIET = -1
ALL_PAUSED = -2


def now_str(ns: int | None = None) -> str:
    """Unix seconds as the decimal string our Lua functions take."""
    return jobs.score(time.time_ns() if ns is None else ns)


class _Waiter:
    __slots__ = ("fut", "queues")

    def __init__(self, fut: asyncio.Future, queues: list[str]) -> None:
        self.fut = fut
        self.queues = queues


class Lifecycle:
    """Protocol command semantics for one server process."""

    def __init__(self, store: Store, proc: str, started_at: float,
                 default_reserve: int = jobs.DEFAULT_RESERVE) -> None:
        self.store = store
        self.proc = proc
        self.started_at = started_at
        self.default_reserve = default_reserve
        self.commands = 0  # dispatched since the last report to Redis
        self.loop = asyncio.get_running_loop()
        self._reserved: dict[str, tuple[int, bytes]] = {}
        self._waiting: dict[str, dict[_Waiter, None]] = {}
        self._empty: dict[str, float] = {}  # queue -> when we registered as its waiter
        self._wakes = 0  # bumped by every wake-up and flush: detects one racing a FETCH
        self.on_reap: Callable[[str], None] = lambda wid: None

    # -- PUSH / PUSHB ----------------------------------------------------------------------
    def push(self, payload: bytes, then: Then) -> None:
        """Validate (JobError at once) and store one job; ``then`` gets Redis's reply."""
        prepared = jobs.prepare(jobs.loads(payload), time.time_ns())
        self.store.push((prepared,), then)

    async def push_bulk(self, payload: bytes) -> bytes:
        """Returns the JSON object of jid -> error for the jobs that were refused."""
        batch = jobs.loads(payload)
        if not isinstance(batch, list):
            raise JobError("invalid JSON: json: cannot unmarshal object into Go value of type []client.Job")
        for job in batch:
            jobs.check_types(job)
        now_ns = time.time_ns()
        created_at = jobs.rfc3339(now_ns)
        ok, errors = [], {}
        for job in batch:
            try:
                ok.append(jobs.prepare(job, now_ns, created_at))
            except JobError as exc:
                errors[job.get("jid") or ""] = str(exc)
        if ok:
            await self.store.push(ok)
        return orjson.dumps(errors)

    # -- FETCH ---------------------------------------------------------------------------------
    def fetch(self, queues: list[str], wid: str, then: Then) -> None:
        """The next job of the first non-empty queue, waiting up to 2 s for one.

        ``then`` gets the job (bytes), None if none came, or the exception. The first look is
        a plain callback on the Redis reply (the common case: a job is there); only a FETCH
        that has to wait becomes a task.
        """
        loop = self.loop
        deadline = loop.time() + FETCH_WAIT
        wakes = self._wakes
        if self._known_empty(queues, loop.time()):
            run_then(loop, self._fetch(queues, wid, deadline, (wakes, False, 0)), then)
            return

        def first(res: Any) -> None:
            if type(res) is list:
                then(self._reserved_job(res))
            elif isinstance(res, Exception):
                then(res)
            else:
                run_then(loop, self._fetch(queues, wid, deadline, (wakes, True, res)), then)

        self.store.fetch(wid, self.proc, now_str(), self.default_reserve, queues, first)

    async def _fetch(self, queues: list[str], wid: str, deadline: float,
                     first: tuple[int, bool, Any]) -> bytes | None:
        """FETCH from its first answer on: wait for wake-ups and look again until the deadline.

        ``first`` is (wake count before the look, whether Redis was asked, its answer).
        """
        loop = self.loop
        wakes, asked, res = first
        woken = False
        while True:
            if type(res) is list:
                job = self._reserved_job(res)
                if woken:  # more jobs may have come with this one: let the next waiter look too
                    for q in queues:
                        self._wake_one(q)
                return job
            remaining = deadline - loop.time()
            if res == QUIET or res == ALL_PAUSED:
                if woken:  # the job that woke us is still there: pass the wake-up on
                    for q in queues:
                        self._wake_one(q)
                await asyncio.sleep(max(0.0, remaining))
                return None
            raced = False
            if res == 0:
                if self._wakes != wakes:
                    raced = True  # a wake-up raced this fetch: look again at once
                elif asked:  # Redis now has us down as waiting on each of these queues
                    t = loop.time()
                    for q in queues:
                        self._empty[q] = t
            if not raced:
                if remaining <= 0:
                    return None
                woken = await self._wait(queues, remaining)
                if not woken:
                    return None
            wakes = self._wakes
            asked = not self._known_empty(queues, loop.time())
            res = 0
            if asked:
                res = await self.store.fetch(wid, self.proc, now_str(), self.default_reserve, queues)

    def _reserved_job(self, res: list) -> bytes:
        job, rid, jid = res
        if jid:
            self._remember(jid.decode(), rid, job)
        return job

    async def release(self, job: bytes) -> None:
        """Put back a job fetched for a client that left before it could be sent."""
        doc = orjson.loads(job)
        jid = doc.get("jid") or ""
        self._reserved.pop(jid, None)
        await self.store.release(jid, doc.get("queue") or "default", jobs.priority_of(doc), job)

    def _known_empty(self, queues: list[str], now: float) -> bool:
        empty = self._empty
        for q in queues:
            t = empty.get(q)
            if t is None or now - t > EMPTY_TRUST:
                return False
        return True

    def _remember(self, jid: str, rid: int, job: bytes) -> None:
        reserved = self._reserved
        reserved[jid] = (rid, job)
        if len(reserved) > RESERVED_CACHE:  # forget the oldest tenth; FAIL then takes 2 trips
            for old in list(reserved)[: RESERVED_CACHE // 10]:
                del reserved[old]

    async def _wait(self, queues: list[str], timeout: float) -> bool:
        fut = self.loop.create_future()
        waiter = _Waiter(fut, queues)
        for q in queues:
            self._waiting.setdefault(q, {})[waiter] = None
        handle = self.loop.call_later(timeout, _resolve, fut, False)
        try:
            return await fut
        finally:
            handle.cancel()
            self._forget(waiter)

    def _forget(self, waiter: _Waiter) -> None:
        for q in waiter.queues:
            d = self._waiting.get(q)
            if d is not None:
                d.pop(waiter, None)
                if not d:
                    del self._waiting[q]

    def _wake_one(self, queue: str) -> None:
        d = self._waiting.get(queue)
        while d:
            waiter = next(iter(d))
            self._forget(waiter)
            if not waiter.fut.done():
                waiter.fut.set_result(True)
                return

    def on_wake(self, queue: str) -> None:
        """A job arrived in ``queue`` (published by whoever pushed it)."""
        self._wakes += 1
        self._empty.pop(queue, None)
        self._wake_one(queue)

    def on_control(self, message: str) -> None:
        """Broadcasts on ``ff:ctl`` from any process."""
        if message == "flush":
            self._wakes += 1
            self._empty.clear()
        elif message.startswith("reap "):
            self.on_reap(message[5:])

    def stop_waiting(self) -> None:
        """Shutdown: every parked FETCH answers nil now."""
        for d in list(self._waiting.values()):
            for waiter in list(d):
                _resolve(waiter.fut, False)

    # -- ACK / FAIL ------------------------------------------------------------------------
    def ack(self, payload: bytes, then: Then) -> None:
        """Finish a reservation (JobError at once if the payload is bad); ``then`` gets 1 or 0."""
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            data = None
        if (not isinstance(data, dict) or "jid" not in data
                or any(type(v) is not str for v in data.values())):
            raise JobError(f"invalid ACK {payload.decode(errors='replace')}")
        jid = data["jid"]
        self._reserved.pop(jid, None)

        def done(reply: Any) -> None:
            if reply == 0:
                log.info("No such job to acknowledge %s", jid)
            then(reply)

        self.store.ack(jid, jobs.today(), done)

    async def fail(self, payload: bytes) -> None:
        jid, info = jobs.fail_info(payload)
        cached = self._reserved.pop(jid, None)
        if not await self.fail_reservation(jid, info, cached):
            raise JobError(f"Job not found {jid}")

    async def fail_reservation(self, jid: str, info: jobs.FailInfo,
                               known: tuple[int, bytes] | None = None) -> bool:
        """Fail one reservation by Faktory's retry rules; False if it no longer exists.

        ``known`` is (token, job) as handed out; without it (or if the reservation changed
        since) Redis returns the current record and we compute again from that.
        """
        for _ in range(5):
            now_ns = time.time_ns()
            if known is None:
                res = await self.store.fail(jid, "", jobs.today(), "", b"", "")
            else:
                rid, job = known
                outcome, payload, score = jobs.apply_failure(job, info, now_ns)
                res = await self.store.fail(jid, rid, jobs.today(), outcome, payload, score)
            if res[0] == 1:
                return True
            if res[0] == 0:
                return False
            known = reservation_job(res[1])
        raise RuntimeError(f"reservation of {jid} kept changing")

    # -- BEAT ----------------------------------------------------------------------------------
    async def beat(self, payload: bytes) -> str:
        """The worker's state after this heartbeat: running, quiet or terminate."""
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            data = None
        bad = not isinstance(data, dict)
        if not bad:
            bad = (any(data.get(k) is not None and type(data[k]) is not str
                       for k in ("wid", "current_state"))
                   or (data.get("rss_kb") is not None and type(data["rss_kb"]) is not int))
        if bad:
            raise JobError(f"invalid BEAT {payload.decode(errors='replace')}")
        wid = data.get("wid") or ""
        rss = data.get("rss_kb")
        state = await self.store.beat(wid, now_str(), data.get("current_state") or "",
                                      "" if rss is None else rss)
        if state is None:
            raise JobError(f"unknown worker {wid}")
        return state

    # -- INFO / FLUSH / QUEUE / MUTATE -------------------------------------------------------
    async def info(self) -> bytes:
        return orjson.dumps(info_document(await self.store.info(), self.started_at, self.commands))

    async def flush(self) -> None:
        await self.store.flush()

    async def queue(self, payload: bytes) -> bytes | None:
        """QUEUE PAUSE|RESUME|REMOVE (None: +OK) or LATENCY (a JSON document)."""
        parts = payload.decode(errors="replace").split(" ")
        if len(parts) < 2 or not parts[0] or not parts[1]:
            raise JobError("internal error")
        sub, names = parts[0].upper(), [n for n in parts[1:] if n]
        if sub in ("PAUSE", "RESUME", "REMOVE"):
            await self.store.queue_op(sub, names)
            return None
        if sub != "LATENCY":
            raise JobError(f"no such QUEUE subcommand: {sub}")
        if "*" in names:
            raise JobError("QUEUE LATENCY does not support wildcards")
        heads = await self.store.queue_heads(names)
        now_ns = time.time_ns()
        return orjson.dumps({n: latency(h, now_ns) for n, h in zip(names, heads)})

    async def mutate(self, payload: bytes) -> None:
        if not payload or b" " in payload:
            raise JobError("invalid format")
        try:
            op = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise JobError(str(exc)) from None
        if not isinstance(op, dict):
            raise JobError("json: cannot unmarshal into Go value of type client.Operation")
        flt = op.get("filter") or {}
        if (not isinstance(flt, dict) or type(op.get("cmd", "")) is not str
                or type(op.get("target", "")) is not str):
            raise JobError("json: cannot unmarshal into Go struct field Operation.filter")
        target, cmd = op.get("target") or "", op.get("cmd") or ""
        if target not in keys.SORTED_SETS:
            raise JobError("invalid target for mutation command")
        if cmd not in ("clear", "kill", "discard", "requeue"):
            raise JobError("unknown mutate operation")
        jids = flt.get("jids") or []
        jobtype = flt.get("jobtype") or ""
        pattern = flt.get("regexp") or ""
        if (not isinstance(jids, list) or any(type(j) is not str for j in jids)
                or type(jobtype) is not str or type(pattern) is not str):
            raise JobError("json: cannot unmarshal into Go struct field JobFilter")
        if jids:
            mode, extra = "jids", [f'"jid":"{j}"' for j in jids]
        elif pattern:
            mode, extra = "glob", ([f'"jobtype":"{jobtype}"'] if jobtype else [])
        elif jobtype:
            mode, pattern, extra = "glob", f'*"jobtype":"{jobtype}"*', []
        else:
            mode, extra = "all", []
        dead_score = jobs.score(time.time_ns() + jobs.DEAD_TTL * 1_000_000_000)
        await self.store.mutate(cmd, target, dead_score, mode, pattern, extra)


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


def _resolve(fut: asyncio.Future, value: bool) -> None:
    if not fut.done():
        fut.set_result(value)


def reservation_job(record: bytes) -> tuple[int, bytes]:
    """(token, job JSON) of a reservation record from ``ff:res``."""
    data = orjson.loads(record)
    return int(data.get("rid") or 0), orjson.dumps(data.get("job"))


def latency(heads: list[bytes], now_ns: int) -> float | int:
    """Seconds the oldest of these jobs has waited since ``enqueued_at`` (0 if none)."""
    best = 0.0
    for raw in heads:
        try:
            enq = orjson.loads(raw).get("enqueued_at")
            best = max(best, (now_ns - jobs.parse_rfc3339(enq)) / 1e9)
        except (ValueError, AttributeError, TypeError):
            continue
    return best if best > 0 else 0


def _rss_mb() -> int:
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * resource.getpagesize() // (1024 * 1024)
    except (OSError, ValueError, IndexError):
        return 0


def info_document(state: dict[str, Any], started_at: float, local_commands: int = 0) -> dict:
    """INFO's JSON (also the web UI's /stats), from ``Store.info()``."""
    now_ns = time.time_ns()
    queues = dict(sorted(state["queues"].items()))
    tasks = state["tasks"]

    def task(name: str, *fields: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields:
            v = tasks.get(f"{name}.{f}", 0)
            out[f] = v if f == "wall_time_sec" else int(v)
        return out

    busy = task("Busy", "reaped")
    busy["size"] = state["working"]
    workers = task("Workers", "reaped")
    workers["size"] = state["workers"]
    sets = {"dead": state["dead"], "retries": state["retries"], "scheduled": state["scheduled"]}
    scanners = {}
    for name, key in (("Dead", "dead"), ("Retries", "retries"), ("Scheduled", "scheduled")):
        t = task(name, "cycles", "enqueued")
        t["size"] = sets[key]
        t["wall_time_sec"] = tasks.get(f"{name}.wall_time_sec", 0.0)
        scanners[name] = t
    return {
        "now": jobs.rfc3339(now_ns),
        "server_utc_time": time.strftime("%H:%M:%S UTC", time.gmtime(now_ns // 1_000_000_000)),
        "faktory": {
            "queues": queues,
            "sets": {**sets, "working": state["working"]},
            "tasks": {"Busy": busy, **scanners, "Workers": workers},
            "total_failures": state["failures"],
            "total_processed": state["processed"],
            "total_enqueued": sum(queues.values()),
            "total_queues": len(queues),
        },
        "server": {
            "description": "Faktory",
            "faktory_version": FAKTORY_VERSION,
            "uptime": int(time.time() - started_at),
            "connections": state["connections"],
            "command_count": state["commands"] + local_commands,
            "used_memory_mb": _rss_mb(),
        },
    }
