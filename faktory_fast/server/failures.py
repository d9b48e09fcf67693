"""Failing a reservation by Faktory's retry rules, and setting aside what cannot be failed.

A FAIL (``Lifecycle.fail``) and the master's reservation reaper (``tasks``) both end a
reservation here; the scheduler and the start-up migration set aside stored records the server
cannot use.
"""
from __future__ import annotations

import logging
import time

import orjson

from faktory_fast import jobs
from faktory_fast.job_metrics import JobMetrics
from faktory_fast.jobs import JobError
from faktory_fast.storage import keys
from faktory_fast.storage.fcall import Outcome
from faktory_fast.storage.store import AsyncStore

log = logging.getLogger("faktory_fast")


async def fail_reservation(store: AsyncStore, jid: str, info: jobs.FailInfo,
                           known: tuple[int, bytes, float] | None = None,
                           metrics: JobMetrics | None = None) -> bool:
    """Fail one reservation by Faktory's retry rules; False if it no longer exists.

    ``known`` is (token, job, reserved at) as handed out; without it (or if the reservation
    changed since) Redis returns the current record and we compute again from that. The
    failure is counted in ``metrics`` (timed, unless the reservation expired).
    """
    for _ in range(5):
        now_ns = time.time_ns()
        if known is None:
            res = await store.fail(jid, None, jobs.today(), "", b"", "")
        else:
            rid, job, reserved_at = known
            try:
                outcome, payload, score = jobs.apply_failure(job, info, now_ns)
            except JobError:  # not a job PUSH accepts: read the record, set it aside
                known = None
                continue
            res = await store.fail(jid, rid, jobs.today(), outcome, payload, score)
        if res.outcome is Outcome.DONE:
            if metrics is not None and known is not None:
                metrics.finished(known[1], False, None if info is jobs.EXPIRED else known[2])
            return True
        if res.outcome is Outcome.GONE:
            return False
        try:  # CHANGED: compute again from the reservation as it is
            known = reservation_job(res.record)
        except JobError as exc:
            await set_aside(store, keys.WORKING, jid, res.record, str(exc))
            return True  # the failure is recorded: the job is in the dead set, or kept
    raise RuntimeError(f"reservation of {jid} kept changing")


async def expire_reservation(store: AsyncStore, jid: bytes, record: bytes,
                             metrics: JobMetrics | None = None) -> bool:
    """The reaper's part: fail an expired reservation (``ff:res`` record) as Faktory does.

    True if it was failed; a record that is not one of ours (or holds a job PUSH would
    refuse) is set aside instead, and False is returned.
    """
    try:
        known = reservation_job(record)
        name = jid.decode()
    except (JobError, UnicodeDecodeError) as exc:
        await set_aside(store, keys.WORKING, jid, record, str(exc))
        return False
    return await fail_reservation(store, name, jobs.EXPIRED, known, metrics)


def reservation_job(record: bytes) -> tuple[int, bytes, float]:
    """(token, job JSON, reserved at) of a reservation record from ``ff:res``.

    JobError (saying why) unless the record is one ``ff_fetch`` writes (``ff_fail`` finds the
    token by its prefix) holding a job PUSH would accept.
    """
    if not record:
        raise JobError("a reservation without its record")
    data = jobs.loads(record)
    rid = data.get("rid") if isinstance(data, dict) else None
    if type(rid) is not int or not record.startswith(b'{"rid":%d,' % rid):
        raise JobError("not a reservation record")
    try:
        job = orjson.dumps(data.get("job"))
    except orjson.JSONEncodeError:  # only nesting: the record was decoded from JSON
        raise JobError(jobs.TOO_DEEP) from None
    jobs.stored_job(job)
    at = data.get("reserved_at")
    return rid, job, float(at) if type(at) in (int, float) else time.time()


async def set_aside(store: AsyncStore, source: str, key: bytes | str, record: bytes,
                    reason: str) -> bool:
    """Move one stored record the server cannot use out of the machinery's way, logging once.

    ``source`` is the sorted set holding it (``key``: the member) or ``working`` (``key``: the
    jid, ``record``: its reservation record, b'' for a ``working`` entry without one). A job
    with a jid goes to the dead set with ``reason`` as its failure (``jobs.aside_entry``);
    anything else is kept as it is in ``keys.BAD_RECORDS``. False if the record had already
    changed or gone.
    """
    now_ns = time.time_ns()
    job = key if isinstance(key, bytes) else key.encode()
    if source == keys.WORKING:
        try:  # a reservation record, or a member in Faktory's format: {"job": {...}, ...}
            job = orjson.dumps(orjson.loads(record or key).get("job"))
        except (ValueError, TypeError, AttributeError):
            job = b""
    where = {keys.WORKING: "the reservations", keys.SCHEDULED: "the scheduled set",
             keys.RETRIES: "the retry set"}.get(source, source)
    entry = jobs.aside_entry(job, f"{reason} (found in {where})", now_ns) if job else b""
    moved = await store.set_aside(source, key, record, jobs.dead_score(now_ns), entry, reason,
                                  jobs.score(now_ns))
    if moved:
        name = key.decode(errors="replace") if isinstance(key, bytes) else key
        log.warning("Set aside a bad record from %s into %s: %s: %r", source,
                    "the dead set" if entry else keys.BAD_RECORDS, reason, name[:200])
    return moved
