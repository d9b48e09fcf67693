"""The job lifecycle of one server process: what each protocol command does, over the Store.

The wire layer (``server.py``) parses lines and calls these methods; they validate, shape
payloads with ``jobs`` and change Redis state with one Store call each. Waiting FETCHes are
parked here, not in Redis: a FETCH that finds nothing registers this process as a waiter for
its queues (atomically, inside ``ff_fetch``), and the push that later fills one of them
publishes a wake-up, so thousands of idle fetchers cost no Redis connections and no polling.
"""
from __future__ import annotations

import asyncio
import heapq
import itertools
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
SWEEP_SLACK = 0.01  # seconds a parked FETCH may answer nil after its deadline
EMPTY_TRUST = 10.0  # seconds we trust "queue was empty" without asking Redis again
RESERVED_CACHE = 100_000  # reservations handed out here, remembered for a one-trip FAIL
# ff_fetch's answers besides a job: 0 nothing (we are registered as a waiter), these two,
# and -3: nothing in the unpaused queues (not registered for the paused ones).
QUIET = -1
ALL_PAUSED = -2


def now_str(ns: int | None = None) -> str:
    """Unix seconds as the decimal string our Lua functions take."""
    return jobs.score(time.time_ns() if ns is None else ns)


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
        self._waiting: dict[str, dict[_Fetch, None]] = {}  # queue -> parked FETCHes, oldest first
        self._deadlines: list[tuple[float, int, _Fetch]] = []  # heap of parked FETCHes
        self._seq = itertools.count()  # heap tie-break
        self._sweep: asyncio.TimerHandle | None = None
        self._sweep_at: float | None = None
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

        ``then`` gets the job (bytes), None if none came, or the exception. The common case
        (a job is there) is one Redis call whose reply callback answers.
        """
        _Fetch(self, queues, wid, self.loop.time() + FETCH_WAIT, then).look()

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

    def _park(self, f: _Fetch, listen: bool) -> None:
        """Park a FETCH until its deadline; ``listen``: or until a wake-up for its queues."""
        f.parked = True
        if listen:
            f.listening = True
            for q in f.queues:
                self._waiting.setdefault(q, {})[f] = None
        # Entries of FETCHes answered early stay until their deadline (lazy deletion).
        heapq.heappush(self._deadlines, (f.deadline, next(self._seq), f))
        if self._sweep_at is None or f.deadline + SWEEP_SLACK < self._sweep_at:
            self._arm_sweep(f.deadline)

    def _unpark(self, f: _Fetch) -> None:
        f.parked = False
        if f.listening:
            f.listening = False
            for q in f.queues:
                d = self._waiting.get(q)
                if d is not None:
                    d.pop(f, None)
                    if not d:
                        del self._waiting[q]

    def _arm_sweep(self, deadline: float) -> None:
        # One timer for all parked FETCHes, late by up to SWEEP_SLACK so that neighbouring
        # deadlines are answered by one sweep.
        if self._sweep is not None:
            self._sweep.cancel()
        self._sweep_at = deadline + SWEEP_SLACK
        self._sweep = self.loop.call_at(self._sweep_at, self._sweep_due)

    def _sweep_due(self) -> None:
        """Answer nil to every parked FETCH whose deadline has passed."""
        self._sweep = self._sweep_at = None
        now = self.loop.time()
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            f = heapq.heappop(heap)[2]
            if f.parked:
                self._unpark(f)
                f.then(None)
        if heap:
            self._arm_sweep(heap[0][0])

    def _wake_one(self, queue: str) -> None:
        d = self._waiting.get(queue)
        if d:
            f = next(iter(d))
            self._unpark(f)
            f.woken = True
            f.look()

    def _pass_wake(self, queues: list[str]) -> None:
        for q in queues:
            self._wake_one(q)

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
        for _, _, f in sorted(self._deadlines):
            if f.parked:
                self._unpark(f)
                f.then(None)
        self._deadlines.clear()

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
                try:
                    outcome, payload, score = jobs.apply_failure(job, info, now_ns)
                except JobError:  # not a job PUSH accepts: read the record, set it aside
                    known = None
                    continue
                res = await self.store.fail(jid, rid, jobs.today(), outcome, payload, score)
            if res[0] == 1:
                return True
            if res[0] == 0:
                return False
            try:
                known = reservation_job(res[1])
            except JobError as exc:
                await set_aside(self.store, keys.WORKING, jid, res[1], str(exc))
                return True  # the failure is recorded: the job is in the dead set, or kept
        raise RuntimeError(f"reservation of {jid} kept changing")

    async def expire(self, jid: bytes, record: bytes) -> bool:
        """The reaper's part: fail an expired reservation (``ff:res`` record) as Faktory does.

        True if it was failed; a record that is not one of ours (or holds a job PUSH would
        refuse) is set aside instead, and False is returned.
        """
        try:
            known = reservation_job(record)
            name = jid.decode()
        except (JobError, UnicodeDecodeError) as exc:
            await set_aside(self.store, keys.WORKING, jid, record, str(exc))
            return False
        return await self.fail_reservation(name, jobs.EXPIRED, known)

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
            for name in names:
                if name != "*":  # a name like "a:p9" would reach another queue's keys
                    jobs.check_queue(name)
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


class _Fetch:
    """One FETCH: looks in Redis, parks until a wake-up or its deadline, looks again.

    Driven by callbacks (Redis replies, wake-ups, the deadline sweep), not a task: a parked
    FETCH costs no task, future or timer of its own, which is what thousands of idle workers
    (each re-sending FETCH every 2 s) cost a server.
    """

    __slots__ = ("lc", "queues", "wid", "deadline", "then", "wakes", "woken", "parked",
                 "listening")

    def __init__(self, lc: Lifecycle, queues: list[str], wid: str, deadline: float,
                 then: Then) -> None:
        self.lc = lc
        self.queues = queues
        self.wid = wid
        self.deadline = deadline
        self.then = then
        self.wakes = 0  # lc's wake count when we last looked: detects one racing the look
        self.woken = False  # a wake-up made us look again
        self.parked = False  # waiting for a wake-up or the deadline, not yet answered
        self.listening = False  # listed in lc._waiting under each of our queues

    def look(self) -> None:
        """Ask Redis for a job, unless every queue is known to be empty."""
        lc = self.lc
        self.wakes = lc._wakes
        if lc._known_empty(self.queues, lc.loop.time()):
            self.found(0, False)
            return
        try:
            lc.store.fetch(self.wid, lc.proc, now_str(), lc.default_reserve, self.queues,
                           self._asked)
        except Exception as exc:  # Redis gone
            self.then(exc)

    def _asked(self, res: Any) -> None:
        try:
            self.found(res, True)
        except Exception as exc:
            self.then(exc)

    def found(self, res: Any, asked: bool) -> None:
        """Act on ``ff_fetch``'s answer (0 unasked: every queue was known to be empty)."""
        lc = self.lc
        if type(res) is list:
            job = lc._reserved_job(res)
            if self.woken:  # more jobs may have come with this one: let the next waiter look too
                lc._pass_wake(self.queues)
            self.then(job)
            return
        if isinstance(res, Exception):
            self.then(res)
            return
        if res == QUIET or res == ALL_PAUSED:
            if self.woken:  # the job that woke us is still there: pass the wake-up on
                lc._pass_wake(self.queues)
            lc._park(self, listen=False)  # nil at the deadline, as Faktory's blocking pop
            return
        if res == 0:
            if lc._wakes != self.wakes:  # a wake-up raced this look: look again at once
                self.look()
                return
            if asked:  # Redis now has us down as waiting on each of these queues
                t = lc.loop.time()
                for q in self.queues:
                    lc._empty[q] = t
        if self.deadline <= lc.loop.time():
            self.then(None)
        else:
            lc._park(self, listen=True)


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


def reservation_job(record: bytes) -> tuple[int, bytes]:
    """(token, job JSON) of a reservation record from ``ff:res``.

    JobError (saying why) unless the record is one ``ff_fetch`` writes (``ff_fail`` finds the
    token by its prefix) holding a job PUSH would accept.
    """
    if not record:
        raise JobError("a reservation without its record")
    data = jobs.loads(record)
    rid = data.get("rid") if isinstance(data, dict) else None
    if type(rid) is not int or not record.startswith(b'{"rid":%d,' % rid):
        raise JobError("not a reservation record")
    job = orjson.dumps(data.get("job"))
    jobs.stored_job(job)
    return rid, job


async def set_aside(store: Store, source: str, key: Any, record: bytes, reason: str) -> bool:
    """Move one stored record the server cannot use out of the machinery's way, logging once.

    ``source`` is the sorted set holding it (``key``: the member) or ``working`` (``key``: the
    jid, ``record``: its reservation record, b'' for a ``working`` entry without one). A job
    with a jid goes to the dead set with ``reason`` as its failure (``jobs.aside_entry``);
    anything else is kept as it is in ``keys.BAD_RECORDS``. False if the record had already
    changed or gone.
    """
    now_ns = time.time_ns()
    job = key
    if source == keys.WORKING:
        try:  # a reservation record, or a member in Faktory's format: {"job": {...}, ...}
            job = orjson.dumps(orjson.loads(record or key).get("job"))
        except (ValueError, TypeError, AttributeError):
            job = b""
    where = {keys.WORKING: "the reservations", keys.SCHEDULED: "the scheduled set",
             keys.RETRIES: "the retry set"}.get(source, source)
    entry = jobs.aside_entry(job, f"{reason} (found in {where})", now_ns) if job else b""
    dead_score = jobs.score(now_ns + jobs.DEAD_TTL * 1_000_000_000)
    moved = await store.set_aside(source, key, record, dead_score, entry, reason, now_str(now_ns))
    if moved:
        name = key.decode(errors="replace") if isinstance(key, bytes) else key
        log.warning("Set aside a bad record from %s into %s: %s: %.200s", source,
                    "the dead set" if entry else keys.BAD_RECORDS, reason, name)
    return bool(moved)


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
