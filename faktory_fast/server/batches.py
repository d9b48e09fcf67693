"""BATCH and TRACK (Faktory Enterprise's batches and job tracking): what the commands do.

The state and its rules live in ``lua/batch.lua`` (one FCALL per command, and the hooks PUSH,
ACK and FAIL run inside their own FCALL); this module parses the commands, validates them and
shapes the replies. docs/enterprise.md describes the behaviour and the decisions taken where
Faktory's documentation is silent.
"""
from __future__ import annotations

import secrets
import time
from typing import Any

import orjson

from faktory_fast import jobs
from faktory_fast.jobs import JobError
from faktory_fast.storage.fcall import Outcome
from faktory_fast.storage.partitions import Partitions
from faktory_fast.storage.store import AsyncStore

#: The batch fields BATCH STATUS reports (Go's client.BatchStatus), in its order.
STATUS_FIELDS = ("bid", "parent_bid", "description", "created_at", "total", "pending", "failed",
                 "complete_st", "success_st")
COUNTERS = ("total", "pending", "failed")
CALLBACKS = ("complete", "success")
DEFAULT_RETENTION = 30 * 86400  # --batch-retention's default


def new_bid() -> str:
    """A fresh batch id: ``b-`` and 20 random URL-safe characters."""
    return "b-" + secrets.token_urlsafe(15)


def _split(payload: bytes, command: str) -> tuple[str, str]:
    text = payload.decode(errors="replace")
    sub, _, rest = text.partition(" ")
    if not sub:
        raise JobError(f"{command} needs a subcommand")
    return sub.upper(), rest.strip()


def _bid(rest: str, sub: str) -> str:
    if not rest or " " in rest:
        raise JobError(f"BATCH {sub} needs one batch id")
    return rest


def callback_job(raw: Any, which: str, bid: str, now_ns: int) -> tuple[str, bytes, str, int, str]:
    """A batch's callback job as stored: (which, JSON without enqueued_at, queue, priority,
    jid). It carries ``custom._bid``; a jid is made up if it has none (Ruby's callbacks omit
    it); an ``at`` is dropped (callbacks run when the batch says so)."""
    if not isinstance(raw, dict):
        raise JobError(f"batch {which} callback must be a job object")
    job = dict(raw)
    if not job.get("jid"):
        job["jid"] = secrets.token_hex(12)
    job.pop("at", None)
    custom = job.get("custom")
    if custom is not None and not isinstance(custom, dict):
        raise JobError(f"batch {which} callback: custom must be an object")
    job["custom"] = {**(custom or {}), "_bid": bid}
    try:
        prepared = jobs.prepare(job, now_ns)
    except JobError as exc:
        raise JobError(f"batch {which} callback: {exc}") from None
    job.pop("enqueued_at", None)  # lua/batch.lua stamps it when the callback fires
    return which, jobs.encode(job), prepared.queue, prepared.priority, prepared.jid


def status_document(fields: dict[str, str]) -> bytes:
    """BATCH STATUS's JSON from the stored fields (parent_bid and description omitted when
    empty, as Go's omitempty)."""
    doc: dict[str, Any] = {}
    for name in STATUS_FIELDS:
        value = fields.get(name, "")
        if name in COUNTERS:
            doc[name] = int(value or 0)
        elif value or name not in ("parent_bid", "description"):
            doc[name] = value
    return orjson.dumps(doc)


def track_document(jid: str, reserved: bool, fields: dict[str, str]) -> bytes:
    """TRACK GET's JSON: the stored progress and the job's state, 'working' while it is
    reserved, 'unknown' if it is not tracked (or its data expired). As Faktory's (Go's
    JobTrack, omitempty): percent and desc only when set; an unknown job is
    ``{"jid":..,"state":"unknown","updated_at":""}``."""
    state = fields.get("state") or "unknown"
    if reserved and state in ("enqueued", "failed"):
        state = "working"
    doc: dict[str, Any] = {"jid": jid}
    if fields.get("desc"):
        doc["desc"] = fields["desc"]
    doc["state"] = state
    doc["updated_at"] = fields.get("updated_at", "")
    if int(fields.get("percent") or 0):
        doc["percent"] = int(fields["percent"])
    return orjson.dumps(doc)


class Batches:
    """BATCH and TRACK for one server process."""

    def __init__(self, parts: Partitions[AsyncStore], retention: int = DEFAULT_RETENTION) -> None:
        self.parts = parts
        self.store = parts.home  # the batches'
        self.retention = retention  # seconds a finished batch's data is kept

    async def batch(self, payload: bytes) -> str | bytes | None:
        """BATCH NEW | COMMIT | OPEN | STATUS. Returns a str to send as a simple string (the
        bid), bytes as a bulk string (STATUS's JSON), None for OK."""
        sub, rest = _split(payload, "BATCH")
        if self.parts.count > 1:
            # A batch's counters change in the same call as its jobs' reservations: not yet
            # possible across the slots of several partitions.
            raise JobError("BATCH is not available on a Redis Cluster with partitions=N > 1")
        if sub == "NEW":
            return await self.new(rest)
        if sub == "COMMIT":
            bid = _bid(rest, sub)
            if await self.store.batch_commit(bid, self.retention) is Outcome.GONE:
                raise JobError(f"No such batch {bid}")
            return None
        if sub == "OPEN":
            bid = _bid(rest, sub)
            if await self.store.batch_open(bid) is Outcome.GONE:
                raise JobError(f"No such batch {bid}")
            return bid
        if sub == "STATUS":
            bid = _bid(rest, sub)
            fields = await self.store.batch_status(bid)
            if not fields:
                raise JobError(f"No such batch {bid}")
            return status_document(fields)
        raise JobError(f"Unknown BATCH subcommand: {sub}")

    async def new(self, text: str) -> str:
        """BATCH NEW {json}: create the batch, return its bid."""
        spec = jobs.loads(text.encode(), "batch")
        if not isinstance(spec, dict):
            raise JobError("BATCH NEW needs a JSON object")
        if spec.get("bid"):
            raise JobError("BID must be blank when creating a new batch")
        parent = spec.get("parent_bid") or ""
        description = spec.get("description") or ""
        if type(parent) is not str or type(description) is not str:
            raise JobError("parent_bid and description must be strings")
        bid = new_bid()
        now_ns = time.time_ns()
        callbacks = [callback_job(spec[w], w, bid, now_ns) for w in CALLBACKS if spec.get(w)]
        if not callbacks:
            raise JobError("A batch needs a success or complete callback job")
        refusal = await self.store.batch_new(bid, now_ns, description, parent, callbacks)
        if refusal:
            raise JobError.from_line(refusal)
        return bid

    async def track(self, payload: bytes) -> bytes | None:
        """TRACK SET {json} (None: OK) | TRACK GET jid (the JSON)."""
        sub, rest = _split(payload, "TRACK")
        if sub == "GET":
            if not rest or " " in rest:
                raise JobError("TRACK GET needs one jid")
            # A tracked job's progress is kept in its queue's partition, which a jid does not
            # tell: the partition that knows it (each is asked, in turn).
            for store in self.parts.stores:
                reserved, fields = await store.track_get(rest)
                if fields or reserved:
                    break
            return track_document(rest, reserved, fields)
        if sub != "SET":
            raise JobError(f"Unknown TRACK subcommand: {sub}")
        spec = jobs.loads(rest.encode(), "TRACK SET")
        if not isinstance(spec, dict):
            raise JobError("TRACK SET needs a JSON object")
        jid, percent, desc = spec.get("jid"), spec.get("percent"), spec.get("desc")
        until = spec.get("reserve_until") or ""
        if type(jid) is not str or not jid:
            raise JobError("TRACK SET needs a jid")
        if percent is not None and (type(percent) is not int or not 0 <= percent <= 100):
            raise JobError("TRACK SET: percent must be an integer from 0 to 100")
        if desc is not None and type(desc) is not str:
            raise JobError("TRACK SET: desc must be a string")
        if type(until) is not str:
            raise JobError("TRACK SET: reserve_until must be an RFC3339 time")
        score = ""
        if until:
            try:
                score = jobs.score(jobs.parse_rfc3339(until))
            except ValueError as exc:
                raise JobError(f"TRACK SET: invalid reserve_until: {exc}") from None
        for store in self.parts.stores:  # the partition that tracks it (see GET)
            if await store.track_set(jid, percent, desc, score) is not Outcome.GONE:
                return None
        raise JobError(f"Job {jid} is not tracked: push it with custom.track = 1")
