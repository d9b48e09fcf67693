"""FETCH of one server process: a look in Redis, and parking when every queue is empty.

Waiting FETCHes are parked here, not in Redis: a FETCH that finds nothing registers this
process as a waiter for its queues (atomically, inside ``ff_fetch``), and the push that later
fills one of them publishes a wake-up (``Parking.on_wake``), so thousands of idle fetchers cost
no Redis connections and no polling. A parked FETCH answers nil at its deadline (2 s, Faktory's
blocking pop), all of them from one timer.
"""
from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Sequence

from faktory_fast import jobs
from faktory_fast.jobs import Prepared, now_score
from faktory_fast.storage.ops.jobs import Fetched, Reserved
from faktory_fast.storage.partitions import Partitions
from faktory_fast.storage.redis_client import Then
from faktory_fast.storage.store import AsyncStore

FETCH_WAIT = 2.0  # seconds a FETCH waits for a job (Faktory's BRPOP timeout)
SWEEP_SLACK = 0.01  # seconds a parked FETCH may answer nil after its deadline
EMPTY_TRUST = 10.0  # seconds we trust "queue was empty" without asking Redis again
RESERVED_CACHE = 100_000  # reservations handed out here, remembered for a one-trip FAIL
# Fetched's members as module globals: found() compares with them on every empty FETCH, and
# an Enum class's attributes are slow to read.
EMPTY, QUIET, ALL_PAUSED, MORE = Fetched.EMPTY, Fetched.QUIET, Fetched.ALL_PAUSED, Fetched.MORE
SOME_PAUSED = Fetched.SOME_PAUSED


class Reservations:
    """The reservations this process handed out, (token, job, when) by jid: a FAIL of one of
    them needs no read of the reservation first, and its end is timed (``job_metrics``).
    Forgets the oldest beyond RESERVED_CACHE."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[int, bytes, float]] = {}

    def handed_out(self, res: Reserved) -> bytes:
        """Remember a job ``ff_fetch`` reserved; the job."""
        job, rid, jid = res
        if jid:
            known = self._known
            known[jid.decode()] = (rid, job, time.time())
            if len(known) > RESERVED_CACHE:  # forget the oldest tenth; FAIL then takes 2 trips
                for old in list(known)[: RESERVED_CACHE // 10]:
                    del known[old]
        return job

    def pop(self, jid: str) -> tuple[int, bytes, float] | None:
        """Forget ``jid``'s reservation (ACK, FAIL, release); (token, job, when) if it was
        known."""
        return self._known.pop(jid, None)


class Parking:
    """The FETCHes of one server process that wait for a job."""

    def __init__(self, parts: Partitions[AsyncStore], proc_id: str, reserved: Reservations,
                 loop: asyncio.AbstractEventLoop,
                 default_reserve: int = jobs.DEFAULT_RESERVE) -> None:
        self.parts = parts
        self.store = parts.home
        self.partitioned = parts.count > 1
        self.proc_id = proc_id
        self.reserved = reserved
        self.loop = loop
        self.default_reserve = default_reserve
        self._waiting: dict[str, dict[_Fetch, None]] = {}  # queue -> parked FETCHes, oldest first
        self._deadlines: list[tuple[float, int, _Fetch]] = []  # heap of parked FETCHes
        self._seq = itertools.count()  # heap tie-break
        self._sweep: asyncio.TimerHandle | None = None
        self._sweep_at: float | None = None
        self._empty: dict[str, float] = {}  # queue -> when we registered as its waiter
        self._wakes = 0  # bumped by every wake-up and flush: detects one racing a FETCH

    def fetch(self, queues: list[str], wid: str, then: Then) -> None:
        """The next job of the first non-empty queue, waiting up to 2 s for one.

        ``then`` gets the job (bytes), None if none came, or the exception. The common case
        (a job is there) is one Redis call whose reply callback answers.
        """
        _Fetch(self, queues, wid, self.loop.time() + FETCH_WAIT, then).look()

    def hand_over(self, job: Prepared, then: Then) -> bool:
        """PUSH ``job`` (due now, priority 5, no custom object) straight to the oldest FETCH
        parked here on its queue; False if there is none (the caller pushes as usual).

        One Redis call (``ff_push_to``) reserves the job for that FETCH, instead of a push, a
        wake-up and a FETCH; if the queue had other jobs meanwhile, the job is enqueued and
        the FETCH looks again. ``then`` gets the PUSH's answer (1, or the exception).
        """
        d = self._waiting.get(job.queue)
        if not d:
            return False
        f = next(iter(d))
        self._unpark(f)

        def done(res: Reserved | Fetched | Exception) -> None:
            if isinstance(res, Exception):
                then(res)
                f.then(res)
                return
            then(1)
            if type(res) is Reserved:
                f.found(res, True)
            else:
                f.woken = True
                f.look()
        self.parts.of(job.queue).push_to_then(job, f.wid, now_score(), self.default_reserve, done)
        return True

    # -- told by Redis (pub/sub) -------------------------------------------------------------
    def on_wake(self, queue: str) -> None:
        """A job arrived in ``queue`` (published by whoever pushed it)."""
        self._wakes += 1
        self._empty.pop(queue, None)
        self._wake_one(queue)

    def forget_empty(self) -> None:
        """What we knew of empty queues may be wrong now (a FLUSH): ask Redis again."""
        self._wakes += 1
        self._empty.clear()

    def look_again(self) -> None:
        """Wake-ups may have been lost (Redis was away): every parked FETCH looks again."""
        self.forget_empty()
        for queue in list(self._waiting):
            self.on_wake(queue)

    def stop_waiting(self) -> None:
        """Shutdown: every parked FETCH answers nil now."""
        for _, _, f in sorted(self._deadlines):
            if f.parked:
                self._unpark(f)
                f.then(None)
        self._deadlines.clear()

    # -- parking -------------------------------------------------------------------------------
    def _known_empty(self, queues: list[str], now: float) -> bool:
        empty = self._empty
        for q in queues:
            t = empty.get(q)
            if t is None or now - t > EMPTY_TRUST:
                return False
        return True

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


class _Fetch:
    """One FETCH: looks in Redis, parks until a wake-up or its deadline, looks again.

    Driven by callbacks (Redis replies, wake-ups, the deadline sweep), not a task: a parked
    FETCH costs no task, future or timer of its own, which is what thousands of idle workers
    (each re-sending FETCH every 2 s) cost a server.
    """

    __slots__ = ("park", "queues", "wid", "deadline", "then", "wakes", "woken", "parked",
                 "listening", "runs", "run", "empties", "pauses")

    def __init__(self, park: Parking, queues: list[str], wid: str, deadline: float,
                 then: Then) -> None:
        self.park = park
        self.queues = queues
        # Over partitions: the runs of queues of one partition, asked in order (one call each;
        # ``run``: the one being asked; ``empties``, ``pauses``: the runs that were).
        self.runs = park.parts.runs(queues) if park.partitioned else None
        self.run = self.empties = self.pauses = 0
        self.wid = wid
        self.deadline = deadline
        self.then = then
        self.wakes = 0  # park's wake count when we last looked: detects one racing the look
        self.woken = False  # a wake-up made us look again
        self.parked = False  # waiting for a wake-up or the deadline, not yet answered
        self.listening = False  # listed in park._waiting under each of our queues

    def look(self) -> None:
        """Ask Redis for a job, unless every queue is known to be empty."""
        park = self.park
        self.wakes = park._wakes
        if park._known_empty(self.queues, park.loop.time()):
            self.found(EMPTY, False)
            return
        if self.runs is not None:
            self.run = self.empties = self.pauses = 0
            self._ask_run()
            return
        try:
            park.store.fetch_then(self.wid, park.proc_id, now_score(), park.default_reserve,
                                  self.queues, self._asked)
        except Exception as exc:  # Redis gone
            self.then(exc)

    def _asked(self, res: Reserved | Fetched | Exception) -> None:
        try:
            self.found(res, True)
        except Exception as exc:
            self.then(exc)

    def _ask_run(self) -> None:
        """Ask the next run whose queues are not known to be empty (this process waits on
        those already: a push there wakes it); after the last, act on what the runs found."""
        park = self.park
        runs = self.runs
        assert runs is not None
        now = park.loop.time()
        while self.run < len(runs) and park._known_empty(runs[self.run][1], now):
            self.empties += 1
            self.run += 1
        n = len(runs)
        if self.run == n:  # (unasked: the runs found empty have marked their queues already)
            self.found(EMPTY if self.empties == n else ALL_PAUSED if self.pauses == n
                       else SOME_PAUSED, False)
            return
        store, queues = runs[self.run]
        try:
            store.fetch_then(self.wid, park.proc_id, now_score(), park.default_reserve, queues,
                             self._ran)
        except Exception as exc:  # Redis gone
            self.then(exc)

    def _ran(self, res: Reserved | Fetched | Exception) -> None:
        """One partition's answer: a job (or QUIET, or an error) ends the look; nothing there
        asks the next run."""
        try:
            if res is MORE:
                self._ask_run()
                return
            if type(res) is Reserved or res is QUIET or isinstance(res, Exception):
                self.found(res, True)
                return
            if res is EMPTY:
                assert self.runs is not None
                if not self._empty_here(self.runs[self.run][1]):
                    return
                self.empties += 1
            elif res is ALL_PAUSED:
                self.pauses += 1
            self.run += 1
            self._ask_run()
        except Exception as exc:
            self.then(exc)

    def _empty_here(self, asked: Sequence[str]) -> bool:
        """Redis found the ``asked`` queues empty (and has this process down as waiting on
        each): known empty from now until a wake-up. False, and a new look at once, if a
        wake-up raced the look."""
        park = self.park
        if park._wakes != self.wakes:
            self.look()
            return False
        t = park.loop.time()
        for q in asked:
            park._empty[q] = t
        return True

    def found(self, res: Reserved | Fetched | Exception, asked: bool) -> None:
        """Act on ``ff_fetch``'s answer (EMPTY unasked: every queue was known to be empty)."""
        park = self.park
        if type(res) is Reserved:
            job = park.reserved.handed_out(res)
            if self.woken:  # more jobs may have come with this one: let the next waiter look too
                park._pass_wake(self.queues)
            self.then(job)
            return
        if isinstance(res, Exception):
            self.then(res)
            return
        if res is MORE:  # ff_fetch stopped after a long run of expired jobs: go on
            self.look()
            return
        if res is QUIET or res is ALL_PAUSED:
            if self.woken:  # the job that woke us is still there: pass the wake-up on
                park._pass_wake(self.queues)
            park._park(self, listen=False)  # nil at the deadline, as Faktory's blocking pop
            return
        if res is EMPTY and not self._empty_here(self.queues if asked else ()):
            return
        if self.deadline <= park.loop.time():
            self.then(None)
        else:
            park._park(self, listen=True)
