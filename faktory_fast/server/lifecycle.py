"""The job lifecycle of one server process: what each protocol command does, over the Store.

The commands (``server/commands.py``) call these methods; they validate, shape payloads with
``jobs`` and change Redis state with one Store call each. FETCH is ``parking``'s
(a FETCH may have to wait for a job); failing a reservation is ``failures``' (the master's
reaper fails expired ones the same way).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable

import orjson

from faktory_fast import jobs
from faktory_fast.job_metrics import JobMetrics
from faktory_fast.jobs import JobError, now_score
from faktory_fast.server.batches import Batches
from faktory_fast.server.failures import fail_reservation
from faktory_fast.server.parking import Parking
from faktory_fast.stats import info_document, latency
from faktory_fast.storage import keys
from faktory_fast.storage.fcall import Outcome
from faktory_fast.storage.ops.jobs import ACK_HOOKS, ACK_PLAIN, ACK_RECORD
from faktory_fast.storage.ops.queues import sum_info
from faktory_fast.storage.partitions import Partitions
from faktory_fast.storage.redis_client import Then
from faktory_fast.storage.store import AsyncStore

log = logging.getLogger("faktory_fast")
GONE, DONE = Outcome.GONE, Outcome.DONE  # module globals: an Enum's attributes are slow to read

CUSTOM = b'"custom":'  # in a job's JSON: it may concern an Enterprise feature (batch, unique...)
PUSHB_CALL = 500  # jobs of a PUSHB stored per Redis call (under 10 ms of Redis, unique ones too)


class Lifecycle:
    """Protocol command semantics for one server process (``proc_id``)."""

    def __init__(self, parts: Partitions[AsyncStore], parking: Parking, proc_id: str,
                 started_at: float, metrics: JobMetrics | None = None) -> None:
        #: The stores of the key partitions: a queue's jobs are in its partition's
        #: (``parts.of``); workers, batches and tracking in the home partition's (``store``).
        self.parts = parts
        self.store = parts.home
        #: The job metrics of the reservations that end here (None: not counted).
        self.metrics = metrics
        self.reserved = parking.reserved  # what its FETCHes handed out: a FAIL in one trip
        # FETCH is parking's: the next job of the first non-empty queue, waiting up to 2 s for
        # one; ``then`` gets the job (bytes), None if none came, or the exception. (Bound here:
        # no call of ours in between on the hot path.)
        self.fetch: Callable[[list[str], str, Then], None] = parking.fetch
        self.hand_over: Callable[[jobs.Prepared, Then], bool] = parking.hand_over
        self.proc_id = proc_id
        self.started_at = started_at
        self.batches = Batches(parts)  # BATCH and TRACK (Enterprise batches, job tracking)

    # -- HELLO / connection closed -------------------------------------------------------------
    async def hello(self, max_connections: int, wid: str, hostname: str, pid: int,
                    labels: list[str], v: int, addr: str) -> int | None:
        """Count an identified connection (and register its worker, if it names one): None,
        or the connection count that would pass ``max_connections`` (then nothing is
        counted)."""
        return await self.store.hello(self.proc_id, max_connections, wid, hostname, pid,
                                      orjson.dumps(labels), v, now_score(), addr)

    async def bye(self, wid: str) -> None:
        """An identified connection closed; its worker goes with its last connection."""
        await self.store.bye(self.proc_id, wid)

    # -- PUSH / PUSHB ----------------------------------------------------------------------
    def push(self, payload: bytes, then: Then) -> None:
        """Validate (JobError at once) and store one job; ``then`` gets the store's answer (a
        JobError if an Enterprise rule refused it)."""
        prepared = jobs.prepare(jobs.loads(payload), time.time_ns())
        # A FETCH parked here for this queue gets the job in the same Redis call.
        if (prepared.plain and not prepared.at_score and prepared.priority == 5
                and self.hand_over(prepared, then)):
            return
        self.parts.of(prepared.queue).push_then(prepared, then)

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
        for store, mine in self.parts.by_store(ok, _queue_of):
            for start in range(0, len(mine), PUSHB_CALL):  # no call holds Redis for a PUSHB
                part = mine[start:start + PUSHB_CALL]
                for i, refusal in (await store.push(part)).items():
                    errors[part[i].jid] = (str(refusal) if refusal.code == "ERR"
                                           else f"{refusal.code} {refusal}")
        return orjson.dumps(errors)

    # -- FETCH (self.fetch, above) -------------------------------------------------------------
    async def release(self, job: bytes) -> None:
        """Put back a job fetched for a client that left before it could be sent."""
        doc = orjson.loads(job)
        jid = doc.get("jid") or ""
        self.reserved.pop(jid)
        queue = doc.get("queue") or "default"
        await self.parts.of(queue).release(jid, queue, jobs.priority_of(doc), job)

    # -- ACK / FAIL ------------------------------------------------------------------------
    def ack(self, payload: bytes, then: Then) -> None:
        """Finish a reservation (JobError at once if the payload is bad); ``then`` gets the
        ``Outcome`` (or the exception)."""
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            data = None
        if (not isinstance(data, dict) or "jid" not in data
                or any(type(v) is not str for v in data.values())):
            raise JobError(f"invalid ACK {payload.decode(errors='replace')}")
        jid = data["jid"]
        # A job this process handed out and that has no custom object needs no Enterprise
        # hook: ff_ack then skips reading the reservation. One handed out elsewhere: its record
        # comes back, for the metrics.
        known = self.reserved.pop(jid)
        metrics = self.metrics
        if known is None:
            flag = ACK_RECORD if metrics is not None else ACK_HOOKS
        else:
            flag = ACK_HOOKS if CUSTOM in known[1] else ACK_PLAIN

        def done(reply: Outcome | bytes | Exception) -> None:
            if type(reply) is bytes:  # the record (ACK_RECORD): done
                if metrics is not None:
                    metrics.finished_record(reply, True)
                reply = DONE
            elif reply is GONE:
                log.info("No such job to acknowledge %s", jid)
            elif reply is DONE and known is not None and metrics is not None:
                metrics.finished(known[1], True, known[2])
            then(reply)

        parts = self.parts
        if parts.count == 1:
            self.store.ack_then(jid, jobs.today(), flag, done)
        elif known is not None:
            parts.of_job(known[1]).ack_then(jid, jobs.today(), flag, done)
        else:  # fetched by another process: every partition is asked, one has it
            ack_everywhere(parts.stores, jid, jobs.today(), flag, done)

    async def fail(self, payload: bytes) -> None:
        jid, info = jobs.fail_info(payload)
        known = self.reserved.pop(jid)
        parts = self.parts
        if known is not None or parts.count == 1:
            store = self.store if known is None else parts.of_job(known[1])
            if await fail_reservation(store, jid, info, known, self.metrics):
                return
        else:  # fetched by another process: the partition that has it
            for store in parts.stores:
                if await fail_reservation(store, jid, info, None, self.metrics):
                    return
        raise JobError(f"Job not found {jid}")

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
        state = await self.store.beat(wid, now_score(), data.get("current_state") or "", rss)
        if state is None:
            raise JobError(f"unknown worker {wid}")
        return state

    # -- INFO / FLUSH / QUEUE / MUTATE -------------------------------------------------------
    async def info(self, local_commands: int = 0) -> bytes:
        """INFO's document; ``local_commands``: those dispatched here not yet counted in Redis."""
        infos = [await store.info() for store in self.parts.stores]
        return orjson.dumps(info_document(sum_info(infos), self.started_at, local_commands))

    async def flush(self) -> None:
        for store in self.parts.stores:
            await store.flush()

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
            if "*" in names or self.parts.count == 1:
                for store in self.parts.stores:
                    await store.queue_op(sub, names)
            else:
                for store, mine in self.parts.by_store(names, str):  # (a name is its queue)
                    await store.queue_op(sub, mine)
            return None
        if sub != "LATENCY":
            raise JobError(f"no such QUEUE subcommand: {sub}")
        if "*" in names:
            raise JobError("QUEUE LATENCY does not support wildcards")
        head: dict[str, list[bytes]] = {}
        for store, mine in self.parts.by_store(names, str):
            head.update(zip(mine, await store.queue_heads(mine)))
        now_ns = time.time_ns()
        return orjson.dumps({n: latency(head[n], now_ns) for n in names})

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
            mode, extra = "jids", jids
        elif pattern:
            mode, extra = "glob", ([f'"jobtype":"{jobtype}"'] if jobtype else [])
        elif jobtype:
            mode, pattern, extra = "glob", f'*"jobtype":"{jobtype}"*', []
        else:
            mode, extra = "all", []
        now_ns = time.time_ns()
        for store in self.parts.stores:  # each partition's set in turn
            cursor = "0"
            while True:  # a page of the set a call (ops.queues.MUTATE_PAGE)
                if cmd != "requeue":
                    cursor, _ = await store.mutate(cmd, target, jobs.dead_score(now_ns), mode,
                                                   pattern, extra, cursor)
                else:
                    cursor, members = await store.mutate_select(target, mode, pattern, extra,
                                                                cursor)
                    # jobs.requeue's rule, as the scheduler's and the web UI's: an entry that
                    # is not a job with a valid queue name stays where it is.
                    moves, _ = jobs.requeue_moves(members, now_ns)
                    if moves:
                        await store.enqueue_from(target, moves)
                if cursor == "0":
                    break


def _queue_of(job: jobs.Prepared) -> str:
    return job.queue


def ack_everywhere(stores: list[AsyncStore], jid: str, day: str, flag: str,
                   then: Callable[[Outcome | bytes | Exception], None]) -> None:
    """ACK ``jid`` in every partition at once (its reservation is in one of them): ``then``
    gets that one's answer (DONE, or the record), GONE if none had it, or the first error."""
    answers: list[Outcome | bytes | Exception] = []

    def one(reply: Outcome | bytes | Exception) -> None:
        answers.append(reply)
        if len(answers) < len(stores):
            return
        found: Outcome | bytes | Exception = GONE
        for a in answers:
            if isinstance(a, Exception):
                found = a if found is GONE else found
            elif a is not GONE:
                found = a
                break
        then(found)
    for store in stores:
        store.ack_then(jid, day, flag, one)
