"""The core of the job lifecycle (``lua/jobs.lua``): push, fetch, ack, fail, release, and the
moves of the scheduled, retries and dead sets. Compiled (``faktory_fast.COMPILED``): the group
commit of ``store.AsyncStore`` builds its calls with the argument builders here."""
from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from enum import IntEnum
from typing import Any, NamedTuple

from faktory_fast.jobs import JobError, Move, Prepared
from faktory_fast.storage import keys
from faktory_fast.storage.fcall import (
    OUTCOMES,
    Call,
    Fn,
    Op,
    Outcome,
    as_int,
    as_list,
    as_outcome,
    as_text,
    pairs,
)

log = logging.getLogger("faktory_fast")


class Fetched(IntEnum):
    """What ``ff_fetch`` found instead of a job (``FETCHED`` in the Lua library)."""

    EMPTY = 0  # every queue is empty: this process is registered as a waiter on each
    QUIET = -1  # the worker is quiet or terminating
    ALL_PAUSED = -2  # every queue is paused
    SOME_PAUSED = -3  # the others are empty (registered as a waiter on those only)
    MORE = -4  # it discarded as many expired jobs as one call may: ask again


class Reserved(NamedTuple):
    """A job ``ff_fetch`` reserved: its JSON, the reservation's token and the jid (b'' for a
    stored job without one, handed out unreserved)."""

    job: bytes
    token: int
    jid: bytes


class FailResult(NamedTuple):
    """``ff_fail``'s answer: the outcome and, when CHANGED, the reservation record as it is."""

    outcome: Outcome
    record: bytes


def _refusals(reply: Any) -> dict[int, JobError]:
    """ff_push's answer: the jobs an Enterprise hook refused, by their index in the call."""
    if type(reply) is int:
        return {}
    return {i: JobError.from_line(line) for i, line in enumerate(reply) if line}


def _first_outcome(reply: Any) -> Outcome:
    return OUTCOMES[reply[0]]


def _moved(reply: Any) -> bool:
    return reply == Outcome.DONE


def decode_fetched(reply: Any) -> Reserved | Fetched:
    if type(reply) is list:
        if len(reply) == 3:  # [job, token, jid]
            return _new_tuple(Reserved, reply)  # Reserved(*reply) without its __new__
        return _fetched_past_expired(reply)
    return _FETCHED[reply]


def decode_first_fetched(reply: list[Any]) -> Reserved | Fetched:
    return decode_fetched(reply[0])


def _fetched_past_expired(reply: list[Any]) -> Reserved | Fetched:
    """ff_fetch discarded expired jobs on its way ([job, token, jid, [jid...]] or
    [Fetched, [jid...]]): each is logged once, here, at debug level."""
    *found, expired = reply
    for jid in expired:
        log.debug("JID %s: Halt: job expired", as_text(jid))
    return _new_tuple(Reserved, found) if len(found) == 3 else _FETCHED[found[0]]


def _fail_result(reply: Any) -> FailResult:
    return FailResult(OUTCOMES[reply[0]], reply[1] if len(reply) > 1 else b"")


def _expired(reply: Any) -> list[tuple[bytes, bytes]]:
    return pairs(reply)


def _records(reply: Any) -> list[bytes]:
    return [r for r in reply if r is not None]


_FETCHED = {f.value: f for f in Fetched}
_new_tuple = tuple.__new__


FF_PUSH = Fn("ff_push", (keys.SCHEDULED, keys.QUEUES, keys.PRIORITY_QUEUES), _refusals)
FF_FETCH = Fn("ff_fetch", (keys.QUIET_WORKERS, keys.PAUSED, keys.PRIORITY_QUEUES,
                           keys.RESERVATION_SEQ, keys.RESERVATIONS, keys.WORKING, keys.THROTTLES),
              list)
FF_PUSH_TO = Fn("ff_push_to", (keys.QUEUES, keys.PRIORITY_QUEUES, keys.PAUSED, keys.QUIET_WORKERS,
                               keys.RESERVATION_SEQ, keys.RESERVATIONS, keys.WORKING,
                               keys.THROTTLES),
                decode_fetched)
FF_ACK = Fn("ff_ack", (keys.RESERVATIONS, keys.WORKING, keys.PROCESSED, keys.THROTTLES),
            _first_outcome)
FF_FAIL = Fn("ff_fail", (keys.RESERVATIONS, keys.WORKING, keys.PROCESSED, keys.FAILURES,
                         keys.RETRIES, keys.DEAD), _fail_result)
FF_RELEASE = Fn("ff_release", (keys.RESERVATIONS, keys.WORKING, keys.QUEUES,
                               keys.PRIORITY_QUEUES), as_outcome)
FF_EXPIRED = Fn("ff_expired", (keys.WORKING, keys.RESERVATIONS), _expired)
FF_ENQUEUE_FROM = Fn("ff_enqueue_from", (keys.QUEUES, keys.PRIORITY_QUEUES), as_int)
FF_SET_ASIDE = Fn("ff_set_aside", (keys.WORKING, keys.RESERVATIONS, keys.DEAD,
                                   keys.BAD_RECORDS), _moved)
FF_RESERVATIONS = Fn("ff_reservations", (keys.WORKING, keys.RESERVATIONS), _records)


def queue_keys(name: str, priority: int) -> tuple[str, str]:
    return keys.queue_list(name, priority), keys.waiters(name)


def push_args(jobs: Iterable[Prepared]) -> tuple[Any, ...]:
    """ff_push's arguments: each queue and priority (and its keys) once, then the jobs."""
    lists: dict[tuple[str, int], int] = {}
    job_args: list[Any] = []
    for p in jobs:
        number = lists.setdefault((p.queue, p.priority), len(lists) + 1)
        job_args += (number, p.payload, p.at_score, hooks_of(p))
    item_keys = [k for q, prio in lists for k in queue_keys(q, prio)]
    return FF_PUSH.args(item_keys, (len(lists), *(x for pair in lists for x in pair),
                                    len(job_args) // 4, *job_args))


def hooks_of(job: Prepared) -> str:
    """What ff_push's hooks get to know of a job (push_one in lua/jobs.lua)."""
    if job.unique:
        return f"{job.unique}:{job.unique_ms}"
    return "" if job.plain else "+"


def push_to_args(job: Prepared, wid: str, now: str, default_reserve: int) -> tuple[Any, ...]:
    return FF_PUSH_TO.args((keys.worker(wid), *queue_keys(job.queue, 5)),
                           (job.queue, wid, job.reserve_for, default_reserve, job.payload,
                            job.jid, now))


def fetch_args(proc_id: str, now: str, default_reserve: int,
               fetches: Sequence[tuple[str, Sequence[str]]]) -> tuple[Any, ...]:
    """ff_fetch's arguments for (wid, queues) FETCHes of one server process: the queues they
    name (and their keys) once, then each FETCH."""
    named = dict.fromkeys(q for _, queues in fetches for q in queues)
    item_keys = [k for q in named for k in (keys.queue(q), keys.waiters(q))]
    args: list[Any] = [proc_id, now, default_reserve, len(named), *named, len(fetches)]
    for wid, queues in fetches:
        args += (wid, len(queues), *queues)
    return FF_FETCH.args(item_keys, args)


#: How ff_ack treats an ACK (its flag): a job known to have no custom object (no Enterprise hook
#: to run, its reservation not read); one that may have hooks; one reserved elsewhere, whose
#: record comes back (for the job metrics of this process: ``job_metrics``).
ACK_PLAIN, ACK_HOOKS, ACK_RECORD = "1", "", "r"


def ack_args(acks: Sequence[tuple[str, str]], day: str) -> tuple[Any, ...]:
    """ff_ack's arguments for (jid, flag) ACKs of one day (flag: ACK_PLAIN and so on)."""
    return FF_ACK.args((keys.daily(keys.PROCESSED, day),),
                       (len(acks), *(x for ack in acks for x in ack)))


def ack_outcome(reply: Any) -> Outcome | bytes:
    """One ACK's part of ff_ack's reply: its outcome, or (for ACK_RECORD) the record of the
    reservation it ended."""
    return reply if type(reply) is bytes else OUTCOMES[reply]


class JobOps:
    """The operations on jobs."""

    @Op
    def push(self, jobs: Iterable[Prepared]) -> Call[dict[int, JobError]]:
        """Store prepared jobs: enqueue now or schedule. The ones refused (by their index), and
        why: an Enterprise rule (a unique job's duplicate, an unknown batch)."""
        return Call(push_args(jobs), _refusals, replicated=True)

    @Op
    def push_to(self, job: Prepared, wid: str, now: str,
                default_reserve: int) -> Call[Reserved | Fetched]:
        """Store ``job`` (due now, priority 5, no custom object) for a FETCH of worker ``wid``
        that waits for its queue: reserved for it at once when its queue is empty (Reserved),
        else enqueued (Fetched.EMPTY: the FETCH is still to be answered)."""
        return Call(push_to_args(job, wid, now, default_reserve), decode_fetched, replicated=True)

    @Op
    def fetch(self, wid: str, proc_id: str, now: str, default_reserve: int,
              queues: Sequence[str]) -> Call[Reserved | Fetched]:
        """Reserve the next job of the first of ``queues`` that has one, for worker ``wid``
        of server process ``proc_id``; else what was found instead (``Fetched``)."""
        return Call(fetch_args(proc_id, now, default_reserve, [(wid, queues)]),
                    decode_first_fetched)

    @Op
    def ack(self, jid: str, day: str, plain: bool = False) -> Call[Outcome]:
        """Finish a reservation: DONE, or GONE if there is no such reservation. ``plain``: the
        caller knows the job has no ``custom`` object (no Enterprise hook to run)."""
        return Call(ack_args([(jid, ACK_PLAIN if plain else ACK_HOOKS)], day), _first_outcome)

    @Op
    def fetch_all(self, proc_id: str, now: str, default_reserve: int,
                  fetches: Sequence[tuple[str, Sequence[str]]]) -> Call[list[Reserved | Fetched]]:
        """``fetch`` of several (wid, queues) FETCHes of server process ``proc_id`` in one call,
        in order (a turn's group commit)."""
        def found(reply: Any) -> list[Reserved | Fetched]:
            return [decode_fetched(f) for f in reply]
        return Call(fetch_args(proc_id, now, default_reserve, fetches), found)

    @Op
    def ack_all(self, acks: Sequence[tuple[str, bool]], day: str) -> Call[list[Outcome]]:
        """``ack`` of several (jid, plain) reservations in one call (a turn's group commit)."""
        def outcomes(reply: Any) -> list[Outcome]:
            return [OUTCOMES[o] for o in reply]
        return Call(ack_args([(jid, ACK_PLAIN if plain else ACK_HOOKS) for jid, plain in acks],
                             day), outcomes)

    @Op
    def fail(self, jid: str, token: int | None, day: str, outcome: str, payload: bytes,
             score: str) -> Call[FailResult]:
        """End the reservation with this token (None: unknown) as failed: ``outcome`` retry
        (``payload`` into the retries at ``score``), dead (into the dead set) or discard.
        CHANGED (with the current record, to compute again from) if it has another token."""
        return FF_FAIL.call((keys.daily(keys.PROCESSED, day), keys.daily(keys.FAILURES, day)),
                            jid, "" if token is None else token, outcome, payload, score)

    @Op
    def release(self, jid: str, queue: str, priority: int, job: bytes) -> Call[Outcome]:
        """Undo a reservation; the job goes back to the head of its queue. GONE if there was
        no such reservation."""
        return FF_RELEASE.call(queue_keys(queue, priority), jid, queue, priority, job)

    @Op
    def reservations(self, limit: int = 1000) -> Call[list[bytes]]:
        """Up to ``limit`` reservation records (jobs in progress), soonest to expire first."""
        return FF_RESERVATIONS.call((), limit)

    @Op
    def expired(self, now: str, limit: int) -> Call[list[tuple[bytes, bytes]]]:
        """[(jid, reservation record), ...] whose time is up; the record is b'' for a
        ``working`` entry that has none but may hold data (see ``ff_expired``)."""
        return FF_EXPIRED.call((), now, limit)

    @Op
    def due(self, zset: str, now: str, limit: int) -> Call[list[bytes]]:
        """Members of a sorted set whose score is ``<= now``, oldest first."""
        return Call(("ZRANGEBYSCORE", zset, "-inf", now, "LIMIT", 0, limit), as_list, keyed=1)

    @Op
    def enqueue_from(self, zset: str, moves: Sequence[Move]) -> Call[int]:
        """Move entries (``jobs.requeue_moves``) from a sorted set to their queues, each only
        if it is still there; how many moved."""
        item_keys: list[str] = []
        args: list[Any] = []
        for member, queue, priority, payload in moves:
            item_keys += queue_keys(queue, priority)
            args += (member, queue, priority, payload)
        return FF_ENQUEUE_FROM.call(item_keys, len(moves), *args, lead=(zset,))

    @Op
    def set_aside(self, source: str, key: bytes | str, record: bytes, dead_score: str,
                  entry: bytes, reason: str, now: str) -> Call[bool]:
        """Move a record the server cannot use from ``source`` (a sorted set, or ``working``
        with ``key`` a jid and ``record`` its reservation) to ``dead`` as ``entry``, or, with
        ``entry`` b'', as it is to ``keys.BAD_RECORDS``. False if it had changed or gone."""
        return FF_SET_ASIDE.call((), key, record, dead_score, entry, reason, now, lead=(source,))

    @Op
    def purge_dead(self, now: str) -> Call[int]:
        """Forget dead jobs past their retention; how many."""
        return Call(("ZREMRANGEBYSCORE", keys.DEAD, "-inf", now), as_int, keyed=1)
