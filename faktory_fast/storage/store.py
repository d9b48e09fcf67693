"""The storage interface: every Redis key the server touches is behind one table of operations.

Each operation is one Redis round trip: an FCALL of a function of our library
(``lua/faktory.lua``, listed in the table of functions below with the keys it always touches
and the decoder of its reply) or a plain command; the reply comes back decoded, with named
results (``Outcome``, ``Fetched``) rather than bare codes. An operation over a set that may be
big (``Paged``) is a round trip a page: no call holds the Redis every client shares for long.
The operations (``Operations``) are written once; two thin stores run them:

* ``AsyncStore``, the server's, over an ``redis_client.RedisConnection``: an operation returns an
  awaitable. The hot ones also have a form that hands the decoded reply to a callback straight
  from the Redis reply handler (``push_then``, ``fetch_then``, ``ack_then``); those of one turn
  of the event loop go to Redis as one call per kind (group commit: ``ff_push`` with n jobs,
  ``ff_ack`` with n jids, ``ff_fetch`` with n FETCHes), each caller still answered on its own.
* ``SyncStore``, the web UI's (and the tests' and tools'), over a redis-py client of its own:
  an operation returns its value.
"""
from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from enum import IntEnum
from importlib import resources
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Generic,
    NamedTuple,
    ParamSpec,
    TypedDict,
    TypeVar,
    overload,
)

import orjson

from faktory_fast.codec.resp import pack_command
from faktory_fast.jobs import JobError, Move, Prepared, rfc3339, unique_name
from faktory_fast.jobs import score as ns_score
from faktory_fast.storage import keys
from faktory_fast.storage.redis_url import parse_redis_url

if TYPE_CHECKING:
    import redis

    from faktory_fast.storage.redis_client import RedisConnection

LIBRARY_NAME = "faktory_fast"
HOT_CACHE = 10_000  # packed command parts AsyncStore keeps per hot command (see _pack_parts)
MUTATE_PAGE = 500  # sorted-set entries one MUTATE call looks at: no call holds Redis for a set
GROUP_MAX = 200  # commands of a kind one group-commit call carries (200 FETCHes: ~4 ms of Redis)
PAGE = 500  # queues, workers... a Paged operation's call looks at (about: SCAN's COUNT)
MIGRATE_PAGE = 2_000  # jobs of a Faktory 1.9 queue one migration call moves onto ours
#: What one call of the web UI's functions looks at (the caller goes on from where it stopped):
WEB_SAME_SCORE = 1_000  # members of one score read looking for a named entry (set_entries...)
WEB_SET_SCAN = 1_000  # entries of a sorted set a filter scans (set_filter)
WEB_BATCH_SCAN = 1_000  # batches (batch_page), a batch's jobs (batch_detail), open batches
#: The line of ``lua/faktory.lua`` that ``library_source`` replaces with the names from Python.
NAMES_MARK = "--@names from python"
#: A line ``--@include NAME.lua`` of ``lua/faktory.lua`` is replaced by that file of ``lua/``
#: (the Enterprise features' functions live in files of their own, in the same library).
INCLUDE = re.compile(r"^--@include ([a-z_]+\.lua)$", re.M)

log = logging.getLogger("faktory_fast")

T = TypeVar("T")
P = ParamSpec("P")


# -- named results -------------------------------------------------------------------------------

class Outcome(IntEnum):
    """What a function that changes one stored record did (``OUTCOME`` in the Lua library)."""

    GONE = 0  # there is no such record: nothing changed
    DONE = 1
    CHANGED = 2  # not the record the caller read (or it went meanwhile): nothing changed


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


class BatchDetail(NamedTuple):
    """A batch as the web UI shows it: its fields (``ff_batch_status``), some of its jobs (jid
    -> state) with the cursor to ask for more ('0': no more) and its child batches (bid ->
    state)."""

    fields: dict[str, str]
    cursor: str
    jobs: dict[str, str]
    children: dict[str, str]


class Info(TypedDict):
    """Everything INFO reports that lives in Redis (``ff_info``)."""

    processed: int
    failures: int
    scheduled: int
    retries: int
    dead: int
    working: int
    workers: int
    connections: int
    commands: int
    tasks: dict[str, float]
    queues: dict[str, int]
    expired: int  # expiring jobs discarded at FETCH


class Throttle(NamedTuple):
    """A throttle's configuration and use (``ff_throttle_usage``), for the web UI."""

    queue: str
    kind: str  # concurrency | worker
    limit: int
    timeout: int
    in_use: int  # locks held (cluster-wide, or summed over workers)
    workers: int  # workers holding locks (per-worker throttles)
    waiting: int  # jobs in the queue


def library_source() -> str:
    """The Lua function library as Redis loads it: the file shipped in the package, with the
    names it takes from Python (``keys.LUA_NAMES``, ``Outcome``, ``Fetched``) filled in."""
    lua = resources.files("faktory_fast.storage").joinpath("lua")
    text = lua.joinpath("faktory.lua").read_text()
    text = INCLUDE.sub(lambda m: lua.joinpath(m.group(1)).read_text(), text)
    names = [f"local {name} = {json.dumps(value)}" for name, value in keys.LUA_NAMES.items()]
    for enum in (Outcome, Fetched):
        members = ", ".join(f"{m.name} = {m.value}" for m in enum)
        names.append(f"local {enum.__name__.upper()} = {{{members}}}")
    if text.count(NAMES_MARK) != 1:
        raise RuntimeError(f"lua/faktory.lua must have one line {NAMES_MARK!r}")
    return text.replace(NAMES_MARK, "\n".join(names))


# -- reply decoders ------------------------------------------------------------------------------

def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(flat: Sequence[Any]) -> list[tuple[Any, Any]]:
    return list(zip(flat[0::2], flat[1::2]))


def _int(reply: Any) -> int:
    return int(reply)


def _cursor_and(reply: Any) -> tuple[str, Any]:
    """{cursor, value}: a page of work on a big set, and where the next one starts."""
    return _text(reply[0]), reply[1]


def _none(reply: Any) -> None:
    return None


def _list(reply: Any) -> list[bytes]:
    return list(reply)


def _refusals(reply: Any) -> dict[int, JobError]:
    """ff_push's answer: the jobs an Enterprise hook refused, by their index in the call."""
    if type(reply) is int:
        return {}
    return {i: JobError.from_line(line) for i, line in enumerate(reply) if line}


def _outcome(reply: Any) -> Outcome:
    return _OUTCOMES[reply]


def _first_outcome(reply: Any) -> Outcome:
    return _OUTCOMES[reply[0]]


def _moved(reply: Any) -> bool:
    return reply == Outcome.DONE


def _fetched(reply: Any) -> Reserved | Fetched:
    if type(reply) is list:
        if len(reply) == 3:  # [job, token, jid]
            return _new_tuple(Reserved, reply)  # Reserved(*reply) without its __new__
        return _fetched_past_expired(reply)
    return _FETCHED[reply]


def _first_fetched(reply: list[Any]) -> Reserved | Fetched:
    return _fetched(reply[0])


def _fetched_past_expired(reply: list[Any]) -> Reserved | Fetched:
    """ff_fetch discarded expired jobs on its way ([job, token, jid, [jid...]] or
    [Fetched, [jid...]]): each is logged once, here, at debug level."""
    *found, expired = reply
    for jid in expired:
        log.debug("JID %s: Halt: job expired", _text(jid))
    return _new_tuple(Reserved, found) if len(found) == 3 else _FETCHED[found[0]]


def _fail_result(reply: Any) -> FailResult:
    return FailResult(_OUTCOMES[reply[0]], reply[1] if len(reply) > 1 else b"")


def _over(reply: Any) -> int | None:
    return reply or None


def _state(reply: Any) -> str | None:
    return _text(reply) if reply else None


def _info(reply: Any) -> tuple[str, Info]:
    (processed, failures, scheduled, retries, dead, working, workers, conns, cmds,
     tasks, queues, expired) = reply[1]
    return _text(reply[0]), {
        "expired": expired,
        "processed": processed, "failures": failures, "scheduled": scheduled,
        "retries": retries, "dead": dead, "working": working, "workers": workers,
        "connections": conns, "commands": cmds,
        "tasks": {_text(k): float(v) for k, v in _pairs(tasks)},
        "queues": {_text(k): v for k, v in _pairs(queues)},
    }


def _expired(reply: Any) -> list[tuple[bytes, bytes]]:
    return _pairs(reply)


def _records(reply: Any) -> list[bytes]:
    return [r for r in reply if r is not None]


def _worker_page(reply: Any) -> tuple[str, list[dict[str, str]]]:
    return _text(reply[0]), [{_text(k): _text(v) for k, v in _pairs(h)} for h in reply[1] if h]


def _scored(flat: Any) -> list[tuple[bytes, str]]:
    return [(m, _text(sc)) for m, sc in _pairs(flat)]


def _set_page(reply: Any) -> tuple[int, list[tuple[bytes, str]]]:
    return reply[0], _scored(reply[1])


def _set_filter(reply: Any) -> tuple[str, int, list[tuple[bytes, str]]]:
    return _text(reply[0]), reply[1], _scored(reply[2])


def _named(flat: Any) -> list[tuple[str, str, str]]:
    return [(_text(flat[i]), _text(flat[i + 1]), _text(flat[i + 2]))
            for i in range(0, len(flat) - 2, 3)]


def _set_get(reply: Any) -> tuple[list[tuple[bytes, str]], list[tuple[str, str, str]]]:
    return _scored(reply[0]), _named(reply[1])


def _set_remove(reply: Any) -> tuple[int, list[tuple[str, str, str]]]:
    return int(reply[0]), _named(reply[1])


def _queue_delete(reply: Any) -> tuple[bool, tuple[int, str] | None]:
    if len(reply) == 1:
        return bool(reply[0]), None
    return False, (int(reply[1]), _text(reply[2]))


def _queue_page(reply: Any) -> tuple[int, list[tuple[int, bytes]]]:
    return reply[0], [(int(p), j) for p, j in _pairs(reply[1])]


def _queue_rows(reply: Any) -> tuple[str, list[tuple[str, int, bool, list[bytes]]]]:
    return _text(reply[0]), [(_text(n), size, bool(p), heads) for n, size, p, heads in reply[1]]


def _fields(flat: Any) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in _pairs(flat)}


def _batch_page(reply: Any) -> tuple[int, int, bool, list[dict[str, str]]]:
    return int(reply[0]), int(reply[1]), bool(reply[2]), [_fields(f) for f in reply[3]]


def _batch_detail(reply: Any) -> BatchDetail | None:
    if not reply:
        return None
    return BatchDetail(_fields(reply[0]), _text(reply[1]), _fields(reply[2]), _fields(reply[3]))


def _batch_stats(reply: Any) -> tuple[str, int, int]:
    return _text(reply[0]), int(reply[1]), int(reply[2])


def _track_get(reply: Any) -> tuple[bool, dict[str, str]]:
    return bool(reply[0]), _fields(reply[1:])


def _throttle_rows(reply: Any) -> tuple[str, list[Throttle]]:
    out = []
    for queue, spec, held, holders, waiting in reply[1]:
        kind, limit, timeout = _text(spec).split()
        out.append(Throttle(_text(queue), kind, int(limit), int(timeout), held, holders, waiting))
    return _text(reply[0]), out


def _sum_throttles(pages: list[list[Throttle]]) -> list[Throttle]:
    """The throttles' use over every page of lock sets (``ff_throttle_usage``)."""
    total: dict[str, Throttle] = {}
    for page in pages:
        for t in page:
            had = total.get(t.queue)
            total[t.queue] = t if had is None else had._replace(
                in_use=had.in_use + t.in_use, workers=had.workers + t.workers,
                waiting=had.waiting + t.waiting)
    return sorted(total.values())


class UniqueLock(NamedTuple):
    """A unique job's lock (``ff_lock``): its key, the jid holding it ('' if none) and the
    seconds it has left."""

    key: str
    holder: str
    ttl: float


def _lock_state(key: str) -> Callable[[Any], UniqueLock]:
    def decode(reply: Any) -> UniqueLock:
        holder, pttl = reply
        return UniqueLock(key, _text(holder) if holder else "", max(pttl, 0) / 1000)
    return decode


def _cron_pushed(reply: Any) -> bool | JobError:
    """ff_cron_push: True (pushed), False (another process or node pushed this tick) or the
    refusal (a unique cron job whose previous run still holds the lock)."""
    if type(reply) is int:
        return bool(reply)
    return JobError.from_line(reply)


_OUTCOMES = {o.value: o for o in Outcome}
_FETCHED = {f.value: f for f in Fetched}
_new_tuple = tuple.__new__


# -- the table of functions ------------------------------------------------------------------------

class Call(Generic[T]):
    """One Redis round trip: the command and the decoder of its reply. ``replicated``: a write
    that waits for replicas when the server is told to (``--redis-wait-replicas``)."""

    __slots__ = ("args", "decode", "replicated")

    def __init__(self, args: tuple[Any, ...], decode: Callable[[Any], T],
                 replicated: bool = False) -> None:
        self.args = args
        self.decode = decode
        self.replicated = replicated


class Fn(Generic[T]):
    """A function of our Lua library: its name, the keys it always touches (its KEYS, in the
    order the Lua function reads them, after the set it works on if the caller names one) and
    the decoder of its reply."""

    __slots__ = ("name", "keys", "decode")

    def __init__(self, name: str, fixed_keys: tuple[str, ...], decode: Callable[[Any], T]) -> None:
        self.name = name
        self.keys = fixed_keys
        self.decode = decode

    def call(self, item_keys: Sequence[str], *args: Any, lead: tuple[str, ...] = ()) -> Call[T]:
        """The FCALL with these arguments. ``lead``: the set it works on, when the caller names
        it (declared first); ``item_keys``: the keys it touches that depend on the arguments
        (a queue's list, a worker's hash...), declared after the fixed ones."""
        return Call(self.args(item_keys, args, lead), self.decode)

    def args(self, item_keys: Sequence[str], args: Sequence[Any],
             lead: tuple[str, ...] = ()) -> tuple[Any, ...]:
        return ("FCALL", self.name, len(lead) + len(self.keys) + len(item_keys), *lead,
                *self.keys, *item_keys, *args)


K = keys
FF_PUSH = Fn("ff_push", (K.SCHEDULED, K.QUEUES, K.PRIORITY_QUEUES), _refusals)
FF_FETCH = Fn("ff_fetch", (K.QUIET_WORKERS, K.PAUSED, K.PRIORITY_QUEUES, K.RESERVATION_SEQ,
                           K.RESERVATIONS, K.WORKING, K.THROTTLES), list)
FF_PUSH_TO = Fn("ff_push_to", (K.QUEUES, K.PRIORITY_QUEUES, K.PAUSED, K.QUIET_WORKERS,
                               K.RESERVATION_SEQ, K.RESERVATIONS, K.WORKING, K.THROTTLES),
                _fetched)
FF_ACK = Fn("ff_ack", (K.RESERVATIONS, K.WORKING, K.PROCESSED, K.THROTTLES), _first_outcome)
FF_FAIL = Fn("ff_fail", (K.RESERVATIONS, K.WORKING, K.PROCESSED, K.FAILURES, K.RETRIES, K.DEAD),
             _fail_result)
FF_RELEASE = Fn("ff_release", (K.RESERVATIONS, K.WORKING, K.QUEUES, K.PRIORITY_QUEUES), _outcome)
FF_EXPIRED = Fn("ff_expired", (K.WORKING, K.RESERVATIONS), _expired)
FF_ENQUEUE_FROM = Fn("ff_enqueue_from", (K.QUEUES, K.PRIORITY_QUEUES), _int)
FF_SET_ASIDE = Fn("ff_set_aside", (K.WORKING, K.RESERVATIONS, K.DEAD, K.BAD_RECORDS), _moved)
FF_HELLO = Fn("ff_hello", (K.CONNECTIONS, K.WORKER_BEATS), _over)
FF_BYE = Fn("ff_bye", (K.CONNECTIONS, K.WORKER_BEATS, K.QUIET_WORKERS), _none)
FF_BEAT = Fn("ff_beat", (K.WORKER_BEATS, K.QUIET_WORKERS), _state)
FF_SIGNAL = Fn("ff_signal", (K.WORKER_BEATS, K.QUIET_WORKERS), _cursor_and)
FF_REAP_WORKERS = Fn("ff_reap_workers", (K.WORKER_BEATS, K.QUIET_WORKERS), _int)
FF_PROCESS_GONE = Fn("ff_process_gone", (K.CONNECTIONS, K.COMMANDS), _none)
FF_INFO = Fn("ff_info", (K.PROCESSED, K.FAILURES, K.SCHEDULED, K.RETRIES, K.DEAD, K.WORKING,
                         K.WORKER_BEATS, K.CONNECTIONS, K.COMMANDS, K.TASKS, K.QUEUES,
                         K.PRIORITY_QUEUES, K.EXPIRED), _info)
FF_FLUSH = Fn("ff_flush", (K.CONNECTIONS, K.COMMANDS, K.TASKS, K.WORKER_BEATS, K.QUIET_WORKERS,
                           K.THROTTLES, K.CRON_ENTRIES), _none)
FF_QUEUE = Fn("ff_queue", (K.QUEUES, K.PAUSED, K.PRIORITY_QUEUES), _cursor_and)
FF_QUEUE_HEADS = Fn("ff_queue_heads", (K.PRIORITY_QUEUES,), list)
FF_MUTATE = Fn("ff_mutate", (K.DEAD,), _cursor_and)
FF_MUTATE_SELECT = Fn("ff_mutate_select", (), _cursor_and)
FF_MIGRATE_RESERVATION = Fn("ff_migrate_reservation", (K.WORKING, K.RESERVATIONS), _outcome)
FF_MIGRATE_QUEUE = Fn("ff_migrate_queue", (), _int)
FF_RESERVATIONS = Fn("ff_reservations", (K.WORKING, K.RESERVATIONS), _records)
FF_WORKERS = Fn("ff_workers", (K.WORKER_BEATS,), _worker_page)
FF_WEB_SET_PAGE = Fn("ff_web_set_page", (), _set_page)
FF_WEB_SET_GET = Fn("ff_web_set_get", (), _set_get)
FF_WEB_SET_REMOVE = Fn("ff_web_set_remove", (K.DEAD,), _set_remove)
FF_WEB_SET_FILTER = Fn("ff_web_set_filter", (), _set_filter)
FF_WEB_QUEUE_PAGE = Fn("ff_web_queue_page", (K.PRIORITY_QUEUES,), _queue_page)
FF_WEB_QUEUE_DELETE = Fn("ff_web_queue_delete", (K.PRIORITY_QUEUES,), _queue_delete)
FF_WEB_QUEUES = Fn("ff_web_queues", (K.QUEUES, K.PAUSED, K.PRIORITY_QUEUES), _queue_rows)
FF_BATCH_NEW = Fn("ff_batch_new", (K.BATCHES, K.BATCHES_OPEN), _text)
FF_BATCH_COMMIT = Fn("ff_batch_commit", (), _outcome)
FF_BATCH_OPEN = Fn("ff_batch_open", (), _outcome)
FF_BATCH_STATUS = Fn("ff_batch_status", (), _fields)
FF_BATCH_PAGE = Fn("ff_batch_page", (K.BATCHES, K.BATCHES_OPEN), _batch_page)
FF_BATCH_DETAIL = Fn("ff_batch_detail", (), _batch_detail)
FF_BATCH_STATS = Fn("ff_batch_stats", (K.BATCHES_OPEN, K.BATCH_STATS), _batch_stats)
FF_TRACK_SET = Fn("ff_track_set", (), _outcome)
FF_TRACK_GET = Fn("ff_track_get", (), _track_get)
# Enterprise, part 2 (lua/ent.lua)
FF_REPLACE_HASH = Fn("ff_replace_hash", (), _int)
FF_THROTTLE_USAGE = Fn("ff_throttle_usage", (K.THROTTLES, K.PRIORITY_QUEUES, K.THROTTLE_LAPSES),
                       _throttle_rows)
FF_THROTTLE_LAPSED = Fn("ff_throttle_lapsed", (K.THROTTLE_LAPSES,), _int)
FF_UNIQUE_SWEEP = Fn("ff_unique_sweep", (K.UNIQUE_NAMES,), _text)
FF_CRON_PUSH = Fn("ff_cron_push", (K.SCHEDULED, K.QUEUES, K.PRIORITY_QUEUES, K.CRON_LAST),
                  _cron_pushed)
FF_CRON_SEEN = Fn("ff_cron_seen", (K.CRON_SEEN,), _text)
del K


def _queue_keys(name: str, priority: int) -> tuple[str, str]:
    return keys.queue_list(name, priority), keys.waiters(name)


def _push_args(jobs: Iterable[Prepared]) -> tuple[Any, ...]:
    """ff_push's arguments: each queue and priority (and its keys) once, then the jobs."""
    lists: dict[tuple[str, int], int] = {}
    job_args: list[Any] = []
    for p in jobs:
        number = lists.setdefault((p.queue, p.priority), len(lists) + 1)
        job_args += (number, p.payload, p.at_score, _hooks(p))
    item_keys = [k for q, prio in lists for k in _queue_keys(q, prio)]
    return FF_PUSH.args(item_keys, (len(lists), *(x for pair in lists for x in pair),
                                    len(job_args) // 4, *job_args))


def _hooks(job: Prepared) -> str:
    """What ff_push's hooks get to know of a job (push_one in lua/faktory.lua)."""
    if job.unique:
        return f"{job.unique}:{job.unique_ms}"
    return "" if job.plain else "+"


def _push_to_args(job: Prepared, wid: str, now: str, default_reserve: int) -> tuple[Any, ...]:
    return FF_PUSH_TO.args((keys.worker(wid), *_queue_keys(job.queue, 5)),
                           (job.queue, wid, job.reserve_for, default_reserve, job.payload,
                            job.jid, now))


def _fetch_args(proc_id: str, now: str, default_reserve: int,
                fetches: Sequence[tuple[str, Sequence[str]]]) -> tuple[Any, ...]:
    """ff_fetch's arguments for (wid, queues) FETCHes of one server process: the queues they
    name (and their keys) once, then each FETCH."""
    named = dict.fromkeys(q for _, queues in fetches for q in queues)
    item_keys = [k for q in named for k in (keys.queue(q), keys.waiters(q))]
    args: list[Any] = [proc_id, now, default_reserve, len(named), *named, len(fetches)]
    for wid, queues in fetches:
        args += (wid, len(queues), *queues)
    return FF_FETCH.args(item_keys, args)


def _ack_args(acks: Sequence[tuple[str, bool]], day: str) -> tuple[Any, ...]:
    """ff_ack's arguments for (jid, plain) ACKs of one day."""
    return FF_ACK.args((keys.daily(keys.PROCESSED, day),),
                       (len(acks), *(x for jid, plain in acks for x in (jid, "1" if plain else ""))))


def _bulks(*args: Any) -> bytes:
    """``args`` packed as the arguments of a command, without the command's header."""
    packed = pack_command(*args)
    return packed[packed.index(b"\n") + 1:]


# The hot commands are packed from cached parts: all but the arguments that change with each
# call (FETCH: the time; PUSH: the job and its time; ACK: the jid) are packed once per worker
# and queue list, per queue and priority, per day, and kept (up to HOT_CACHE of each).
Packed = dict[Any, tuple[bytes, bytes]]


def _pack_parts(cache: Packed, key: Any, args: tuple[Any, ...], at: int,
                count: int) -> tuple[bytes, bytes]:
    """Keep under ``key`` (head, tail) of ``args`` packed, around the ``count`` arguments from
    ``at``: the command is head + ``_bulks(those arguments)`` + tail."""
    if len(cache) >= HOT_CACHE:
        cache.clear()
    head = b"*%d\r\n" % len(args) + _bulks(*args[:at])
    parts = cache[key] = head, _bulks(*args[at + count:])
    return parts


# -- the operations --------------------------------------------------------------------------------

class Op(Generic[P, T]):
    """One store operation, written once as a method that returns its ``Call``: on an
    ``AsyncStore`` it returns an awaitable of the decoded reply, on a ``SyncStore`` the
    decoded reply."""

    def __init__(self, build: Callable[Concatenate[Any, P], Call[T]]) -> None:
        self.build = build
        self.__doc__ = build.__doc__

    @overload
    def __get__(self, store: None, owner: Any) -> Op[P, T]: ...
    @overload
    def __get__(self, store: AsyncStore, owner: Any) -> Callable[P, Awaitable[T]]: ...
    @overload
    def __get__(self, store: SyncStore, owner: Any) -> Callable[P, T]: ...

    def __get__(self, store: Any, owner: Any) -> Any:
        if store is None:
            return self
        build, run = self.build, store.run

        def operation(*args: Any, **kwargs: Any) -> Any:
            return run(build(store, *args, **kwargs))
        return operation


class Paged(Generic[P, T]):
    """A store operation over a set that may be too big for one Redis call (no call may hold
    the Redis every client shares for long): ``build`` gives the Call of one page from a cursor
    ('0' first), whose reply decodes to (the next cursor, the page's part); pages are asked for
    until the cursor is '0' again, and ``combine`` makes the result of their parts (not one
    snapshot: each page is read at its own moment). On an ``AsyncStore`` it returns an
    awaitable of the result, on a ``SyncStore`` the result."""

    def __init__(self, combine: Callable[[list[Any]], T],
                 build: Callable[Concatenate[Any, str, P], Call[tuple[str, Any]]]) -> None:
        self.combine = combine
        self.build = build
        self.__doc__ = build.__doc__

    @overload
    def __get__(self, store: None, owner: Any) -> Paged[P, T]: ...
    @overload
    def __get__(self, store: AsyncStore, owner: Any) -> Callable[P, Awaitable[T]]: ...
    @overload
    def __get__(self, store: SyncStore, owner: Any) -> Callable[P, T]: ...

    def __get__(self, store: Any, owner: Any) -> Any:
        if store is None:
            return self
        build, combine, run = self.build, self.combine, store.run
        if isinstance(store, AsyncStore):
            async def pages(*args: Any, **kwargs: Any) -> Any:
                parts, cursor = [], "0"
                while True:
                    cursor, part = await run(build(store, cursor, *args, **kwargs))
                    parts.append(part)
                    if cursor == "0":
                        return combine(parts)
            return pages

        def sync_pages(*args: Any, **kwargs: Any) -> Any:
            parts, cursor = [], "0"
            while True:
                cursor, part = run(build(store, cursor, *args, **kwargs))
                parts.append(part)
                if cursor == "0":
                    return combine(parts)
        return sync_pages


def paged(combine: Callable[[list[Any]], T]) -> Callable[
        [Callable[Concatenate[Any, str, P], Call[tuple[str, Any]]]], Paged[P, T]]:
    """``Paged`` as a decorator: ``@paged(combine)`` over the method building one page's Call."""
    def wrap(build: Callable[Concatenate[Any, str, P], Call[tuple[str, Any]]]) -> Paged[P, T]:
        return Paged(combine, build)
    return wrap


def _concat(parts: list[list[Any]]) -> list[Any]:
    return [x for part in parts for x in part]


def _merge_info(parts: list[Info]) -> Info:
    """INFO from its pages: the counters of the first, the queues of all."""
    info = parts[0]
    for part in parts[1:]:
        info["queues"].update(part["queues"])
    return info


class Operations:
    """Every store operation: one Redis round trip each (see the module docstring), except the
    ``Paged`` ones over sets that may be big: a round trip a page (PAGE entries)."""

    # -- setup -------------------------------------------------------------------------------
    @Op
    def load_library(self) -> Call[None]:
        """Install (or replace) our function library."""
        return Call(("FUNCTION", "LOAD", "REPLACE", library_source()), _none)

    @Op
    def library_loaded(self) -> Call[bool]:
        """Whether Redis has our function library (a promoted replica may not)."""
        return Call(("FUNCTION", "LIST", "LIBRARYNAME", LIBRARY_NAME), bool)

    @Op
    def server_version(self) -> Call[str]:
        """Redis's INFO server section as text."""
        return Call(("INFO", "server"), _text)

    @Op
    def legacy_reservations(self) -> Call[list[tuple[bytes, float]]]:
        """Faktory-format ``working`` members (reservation JSON) with scores, for migration."""
        def pick(flat: Any) -> list[tuple[bytes, float]]:
            return [(m, float(s)) for m, s in _pairs(flat) if m[:1] == b"{"]
        return Call(("ZRANGE", keys.WORKING, 0, -1, "WITHSCORES"), pick)

    @Op
    def migrate_reservation(self, member: bytes, jid: str, record: bytes,
                            score: float) -> Call[Outcome]:
        """Replace a Faktory-format ``working`` entry by ours; GONE if it was not there."""
        return FF_MIGRATE_RESERVATION.call((), member, jid, record, repr(score))

    @Op
    def known_queues(self) -> Call[list[str]]:
        """The names in the ``queues`` set (sorted)."""
        def names(reply: Any) -> list[str]:
            return sorted(_text(n) for n in reply)
        return Call(("SMEMBERS", keys.QUEUES), names)

    @paged(sum)
    def migrate_queue(self, more: str, name: str) -> Call[tuple[str, int]]:
        """Move Faktory 1.9's bare-named queue list to ``q:<name>``; the number of jobs moved
        (MIGRATE_PAGE a call onto an existing ``q:<name>``)."""
        def moved(reply: Any) -> tuple[str, int]:
            return ("1" if reply == MIGRATE_PAGE else "0"), reply
        return Call(FF_MIGRATE_QUEUE.args((name, keys.queue(name)), (MIGRATE_PAGE,)), moved)

    @Op
    def data_version(self) -> Call[int]:
        """Faktory's data-format version (the ``v`` key; 0 when absent)."""
        return Call(("INCRBY", keys.DATA_VERSION, 0), _int)

    @Op
    def set_data_version(self, version: int) -> Call[None]:
        return Call(("SET", keys.DATA_VERSION, version), _none)

    # -- jobs ------------------------------------------------------------------------------------
    @Op
    def push(self, jobs: Iterable[Prepared]) -> Call[dict[int, JobError]]:
        """Store prepared jobs: enqueue now or schedule. The ones refused (by their index), and
        why: an Enterprise rule (a unique job's duplicate, an unknown batch)."""
        return Call(_push_args(jobs), _refusals, replicated=True)

    @Op
    def push_to(self, job: Prepared, wid: str, now: str,
                default_reserve: int) -> Call[Reserved | Fetched]:
        """Store ``job`` (due now, priority 5, no custom object) for a FETCH of worker ``wid``
        that waits for its queue: reserved for it at once when its queue is empty (Reserved),
        else enqueued (Fetched.EMPTY: the FETCH is still to be answered)."""
        return Call(_push_to_args(job, wid, now, default_reserve), _fetched, replicated=True)

    @Op
    def fetch(self, wid: str, proc_id: str, now: str, default_reserve: int,
              queues: Sequence[str]) -> Call[Reserved | Fetched]:
        """Reserve the next job of the first of ``queues`` that has one, for worker ``wid``
        of server process ``proc_id``; else what was found instead (``Fetched``)."""
        return Call(_fetch_args(proc_id, now, default_reserve, [(wid, queues)]), _first_fetched)

    @Op
    def ack(self, jid: str, day: str, plain: bool = False) -> Call[Outcome]:
        """Finish a reservation: DONE, or GONE if there is no such reservation. ``plain``: the
        caller knows the job has no ``custom`` object (no Enterprise hook to run)."""
        return Call(_ack_args([(jid, plain)], day), _first_outcome)

    @Op
    def fetch_all(self, proc_id: str, now: str, default_reserve: int,
                  fetches: Sequence[tuple[str, Sequence[str]]]) -> Call[list[Reserved | Fetched]]:
        """``fetch`` of several (wid, queues) FETCHes of server process ``proc_id`` in one call,
        in order (a turn's group commit)."""
        def found(reply: Any) -> list[Reserved | Fetched]:
            return [_fetched(f) for f in reply]
        return Call(_fetch_args(proc_id, now, default_reserve, fetches), found)

    @Op
    def ack_all(self, acks: Sequence[tuple[str, bool]], day: str) -> Call[list[Outcome]]:
        """``ack`` of several (jid, plain) reservations in one call (a turn's group commit)."""
        def outcomes(reply: Any) -> list[Outcome]:
            return [_OUTCOMES[o] for o in reply]
        return Call(_ack_args(acks, day), outcomes)

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
        return FF_RELEASE.call(_queue_keys(queue, priority), jid, queue, priority, job)

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
        return Call(("ZRANGEBYSCORE", zset, "-inf", now, "LIMIT", 0, limit), _list)

    @Op
    def enqueue_from(self, zset: str, moves: Sequence[Move]) -> Call[int]:
        """Move entries (``jobs.requeue_moves``) from a sorted set to their queues, each only
        if it is still there; how many moved."""
        item_keys: list[str] = []
        args: list[Any] = []
        for member, queue, priority, payload in moves:
            item_keys += _queue_keys(queue, priority)
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
        return Call(("ZREMRANGEBYSCORE", keys.DEAD, "-inf", now), _int)

    @Op
    def mutate(self, cmd: str, target: str, dead_score: str, mode: str, pattern: str,
               extra: Sequence[str], cursor: str = "0") -> Call[tuple[str, int]]:
        """MUTATE clear | discard | kill on the sorted set ``target``, over one page of its
        entries (MUTATE_PAGE, from ``cursor``) selected by ``mode`` (see ``ff_mutate``):
        (the next cursor, '0' at the end; how many were removed)."""
        return FF_MUTATE.call((), cmd, dead_score, cursor, MUTATE_PAGE, mode, pattern, *extra,
                              lead=(target,))

    @Op
    def mutate_select(self, target: str, mode: str, pattern: str, extra: Sequence[str],
                      cursor: str = "0") -> Call[tuple[str, list[bytes]]]:
        """One page of the members of ``target`` a MUTATE filter selects (for a requeue):
        (the next cursor, '0' at the end; the members)."""
        return FF_MUTATE_SELECT.call((), cursor, MUTATE_PAGE, mode, pattern, *extra,
                                     lead=(target,))

    # -- batches and tracking (lua/batch.lua) ------------------------------------------------
    @Op
    def batch_new(self, bid: str, created_ns: int, description: str, parent: str,
                  callbacks: Sequence[tuple[str, bytes, str, int, str]]) -> Call[str]:
        """Create a batch with its callbacks, (which, job, queue, priority, jid) each; '' or
        the refusal ("ERR message": the parent is unknown or committed)."""
        item_keys = [keys.batch(bid)] + ([keys.batch(parent), keys.batch_kids(parent)]
                                         if parent else [])
        return FF_BATCH_NEW.call(item_keys, bid, rfc3339(created_ns), ns_score(created_ns),
                                 description, parent, *(x for cb in callbacks for x in cb))

    @Op
    def batch_commit(self, bid: str, retention: int) -> Call[Outcome]:
        """Commit a batch (its callbacks may fire; its data is kept ``retention`` seconds once
        it is finished); GONE if there is no such batch."""
        return FF_BATCH_COMMIT.call(_batch_keys(bid), bid, retention)

    @Op
    def batch_open(self, bid: str) -> Call[Outcome]:
        """Re-open a committed batch; GONE if there is no such batch."""
        return FF_BATCH_OPEN.call(_batch_keys(bid), bid)

    @Op
    def batch_status(self, bid: str) -> Call[dict[str, str]]:
        """The batch's fields ({} if there is no such batch)."""
        return FF_BATCH_STATUS.call((keys.batch(bid),), bid)

    @Op
    def batch_page(self, start: int, skip: int, count: int, text: str = "",
                   scan_cap: int = 10_000) -> Call[tuple[int, int, bool, list[dict[str, str]]]]:
        """Batches newest first whose description or bid contains ``text`` (any case), from
        rank ``start`` of the list (0 first): skip ``skip`` of them, then up to ``count``;
        stops at rank ``scan_cap``, and after WEB_BATCH_SCAN batches (call again from the start
        and skip it returns). (next start, skip left, whether the list ended, [fields, ...])."""
        return FF_BATCH_PAGE.call((), start, skip, count, text.lower(), scan_cap, WEB_BATCH_SCAN)

    @Op
    def batch_detail(self, bid: str, cursor: str = "0", want: int = 100, state: str = "",
                     children: bool = True) -> Call[BatchDetail | None]:
        """The batch, about ``want`` of its jobs from ``cursor`` on (only those in ``state`` if
        given; no more than about WEB_BATCH_SCAN scanned) and, if ``children``, its children's
        states; None if there is no such batch."""
        return FF_BATCH_DETAIL.call(_batch_keys(bid), bid, cursor, want, state, WEB_BATCH_SCAN,
                                    int(children))

    @Op
    def batch_stats(self, cursor: str = "0") -> Call[tuple[str, int, int]]:
        """Drop the expired batches of a page (about WEB_BATCH_SCAN) of the open ones from
        ``cursor`` on: (next cursor, '0' after the last page; batches open, callbacks fired)."""
        return FF_BATCH_STATS.call((), cursor, WEB_BATCH_SCAN)

    @Op
    def track_set(self, jid: str, percent: int | None, desc: str | None,
                  reserve_until: str) -> Call[Outcome]:
        """Update a tracked job's progress; ``reserve_until`` (a score, '' = none) extends its
        reservation. GONE if the job is not tracked."""
        return FF_TRACK_SET.call((keys.tracking(jid), keys.RESERVATIONS, keys.WORKING), jid,
                                 "0" if percent is None else "1", percent or 0,
                                 "0" if desc is None else "1", desc or "", reserve_until)

    @Op
    def track_get(self, jid: str) -> Call[tuple[bool, dict[str, str]]]:
        """(whether the job is reserved, its tracking fields: {} if it is not tracked)."""
        return FF_TRACK_GET.call((keys.tracking(jid), keys.RESERVATIONS), jid)

    # -- queues ----------------------------------------------------------------------------------
    @paged(sum)
    def queue_op(self, cursor: str, sub: str, names: Sequence[str]) -> Call[tuple[str, int]]:
        """QUEUE PAUSE | RESUME | REMOVE (``*`` = every queue); how many queues were named."""
        return FF_QUEUE.call([keys.queue(n) for n in names if n != "*"], sub, cursor, PAGE,
                             *names)

    @paged(_concat)
    def queue_heads(self, start: str, names: Sequence[str]) -> Call[tuple[str, list[list[bytes]]]]:
        """Per queue, the next-to-run job of each of its priority lists (PAGE queues a call)."""
        at = int(start)
        part = names[at:at + PAGE]
        after = str(at + PAGE) if at + PAGE < len(names) else "0"
        def heads(reply: Any) -> tuple[str, list[list[bytes]]]:
            return after, list(reply)
        return Call(FF_QUEUE_HEADS.args([keys.queue(n) for n in part], part), heads)

    @Op
    def flush(self) -> Call[None]:
        """Forget every job and queue (FLUSH); the live registry of processes and workers
        stays."""
        return FF_FLUSH.call(())

    @paged(_merge_info)
    def info(self, cursor: str) -> Call[tuple[str, Info]]:
        """Counters, set sizes, queue sizes, connections and task stats."""
        return FF_INFO.call((), cursor, PAGE)

    # -- Enterprise: throttles, unique locks, cron (lua/ent.lua) -------------------------------
    @Op
    def set_throttles(self, throttles: dict[str, tuple[str, int, int]]) -> Call[int]:
        """Replace the throttle table: queue -> (kind, limit, timeout); how many there are."""
        args: list[Any] = []
        for queue, (kind, limit, timeout) in throttles.items():
            args += (queue, f"{kind} {limit} {timeout}")
        return FF_REPLACE_HASH.call((), *args, lead=(keys.THROTTLES,))

    @paged(_sum_throttles)
    def throttle_usage(self, cursor: str) -> Call[tuple[str, list[Throttle]]]:
        """Every configured throttle with its use, by queue name."""
        return FF_THROTTLE_USAGE.call((), cursor, PAGE)

    @Op
    def throttle_lapsed(self, now: str, limit: int) -> Call[int]:
        """Wake the FETCHes waiting on queues whose throttle had a lock lapse by ``now`` (a
        time score), looking at ``limit`` lock sets at most; how many it looked at."""
        return FF_THROTTLE_LAPSED.call((), now, limit)

    @Op
    def unique_lock(self, jobtype: str, queue: str, args: Any) -> Call[UniqueLock]:
        """The unique lock a job of ``jobtype`` in ``queue`` with ``args`` (decoded) takes."""
        key = keys.unique_lock(unique_name(jobtype, queue, args))
        return Call(("FCALL", "ff_lock", 1, key), _lock_state(key))

    @Op
    def unique_sweep(self, cursor: str, count: int) -> Call[str]:
        """Forget the unique-lock records (jid -> lock name) of jobs whose lock is gone,
        about ``count`` of them from ``cursor`` on; the next cursor ('0': done)."""
        return FF_UNIQUE_SWEEP.call((), cursor, count)

    @Op
    def cron_push(self, entry: str, tick: int, claim_ttl: int, job: Prepared,
                  claim: bool = True) -> Call[bool | JobError]:
        """Push cron entry ``entry``'s job for ``tick`` unless some process or node already
        did (``claim`` False: push regardless, "enqueue now"). True if pushed here, False if
        it was pushed elsewhere, or the JobError that refused it."""
        claim_key = keys.cron_claim(entry, tick) if claim else ""
        item_keys = _queue_keys(job.queue, job.priority) + ((claim_key,) if claim_key else ())
        return FF_CRON_PUSH.call(item_keys, claim_key, claim_ttl, entry, tick, job.queue,
                                 job.priority, job.payload, job.at_score, _hooks(job))

    @Op
    def set_cron_entries(self, entries: Sequence[Any]) -> Call[int]:
        """Replace the cron table (``cron.CronEntry`` objects) the web UI shows."""
        args: list[Any] = []
        for e in entries:
            args += (e.id, orjson.dumps({"schedule": e.schedule, "job": e.job,
                                         "source": e.source}))
        return FF_REPLACE_HASH.call((), *args, lead=(keys.CRON_ENTRIES,))

    @Op
    def mark_tables(self, mark: str) -> Call[str]:
        """Record ``mark`` ("<node> <digest>") as the writer of the throttle and cron tables;
        the mark it replaced ('' if none)."""
        return Call(("SET", keys.TABLES_BY, mark, "GET"), lambda v: "" if v is None else _text(v))

    @Op
    def cron_entries(self) -> Call[dict[str, dict[str, Any]]]:
        """The cron table as the master published it: entry id -> {schedule, job, source}."""
        def decode(reply: Any) -> dict[str, dict[str, Any]]:
            return {_text(k): orjson.loads(v) for k, v in _pairs(reply)}
        return Call(("HGETALL", keys.CRON_ENTRIES), decode)

    @Op
    def cron_seen(self, now: int) -> Call[str]:
        """Move the cluster-wide cron watermark forward to ``now``; the previous one ('' if
        none)."""
        return FF_CRON_SEEN.call((), now)

    @Op
    def cron_last(self) -> Call[dict[str, tuple[int, str]]]:
        """Each cron entry's last push: entry id -> (tick, jid)."""
        def decode(reply: Any) -> dict[str, tuple[int, str]]:
            out = {}
            for k, v in _pairs(reply):
                tick, _, jid = _text(v).partition(" ")
                out[_text(k)] = (int(tick), jid)
            return out
        return Call(("HGETALL", keys.CRON_LAST), decode)

    # -- workers and processes -------------------------------------------------------------
    @Op
    def hello(self, proc_id: str, max_conns: int, wid: str, hostname: str, pid: int,
              labels: bytes, v: int, now: str, addr: str = "") -> Call[int | None]:
        """Count an identified connection of server process ``proc_id`` (and register worker
        ``wid``): None, or the connection count that would pass ``max_conns`` (then nothing
        is counted). ``addr``: the client's address (shown on the Busy page)."""
        return FF_HELLO.call((keys.worker(wid),), proc_id, max_conns, wid, hostname, pid, labels, v,
                             now, addr)

    @Op
    def bye(self, proc_id: str, wid: str) -> Call[None]:
        """An identified connection closed; its worker goes with its last one."""
        return FF_BYE.call((keys.worker(wid),), proc_id, wid)

    @Op
    def beat(self, wid: str, now: str, state: str, rss_kb: int | None) -> Call[str | None]:
        """The worker's state after this heartbeat, or None for an unknown wid."""
        return FF_BEAT.call((keys.worker(wid),), wid, now, state, "" if rss_kb is None else rss_kb)

    @paged(sum)
    def signal_workers(self, cursor: str, state: str, wids: Sequence[str]
                       ) -> Call[tuple[str, int]]:
        """Quiet or terminate workers (``*`` = all); how many."""
        return FF_SIGNAL.call([keys.worker(w) for w in wids if w != "*"], state, cursor, PAGE,
                              *wids)

    @paged(sum)
    def reap_workers(self, more: str, cutoff: str) -> Call[tuple[str, int]]:
        """Forget workers whose last heartbeat is older than ``cutoff`` (PAGE a call); how
        many."""
        def reaped(reply: Any) -> tuple[str, int]:
            return ("1" if reply == PAGE else "0"), reply
        return Call(FF_REAP_WORKERS.args((), (cutoff, PAGE)), reaped)

    @paged(_concat)
    def workers(self, cursor: str) -> Call[tuple[str, list[dict[str, str]]]]:
        """Every registered worker as a dict of its fields."""
        return FF_WORKERS.call((), cursor, PAGE)

    @Op
    def count_commands(self, proc_id: str, n: int) -> Call[None]:
        return Call(("HINCRBY", keys.COMMANDS, proc_id, n), _none)

    @Op
    def registered_processes(self) -> Call[list[str]]:
        """Ids of the server processes counted in the connection registry."""
        def ids(reply: Any) -> list[str]:
            return [_text(i) for i in reply]
        return Call(("HKEYS", keys.CONNECTIONS), ids)

    @Op
    def process_gone(self, proc_id: str) -> Call[None]:
        return FF_PROCESS_GONE.call((), proc_id)

    @Op
    def set_task_stats(self, fields: dict[str, float]) -> Call[None]:
        args: list[Any] = []
        for k, v in fields.items():
            args += (k, repr(float(v)) if isinstance(v, float) else v)
        return Call(("HSET", keys.TASKS, *args), _none)

    # -- web UI ----------------------------------------------------------------------------------
    @Op
    def set_page(self, zset: str, offset: int,
                 count: int) -> Call[tuple[int, list[tuple[bytes, str]]]]:
        """(size of ``zset``, [(member, score), ...]) for one page in score order."""
        return FF_WEB_SET_PAGE.call((), offset, count, lead=(zset,))

    @Op
    def set_entries(self, zset: str, entries: Sequence[tuple[str, str, str]]
                    ) -> Call[tuple[list[tuple[bytes, str]], list[tuple[str, str, str]]]]:
        """The entries named by (score, jid, from: '' the first time) that still exist, reading
        about WEB_SAME_SCORE members of those scores: ([(member, score), ...], the entries to
        ask for again, with their next ``from``)."""
        return FF_WEB_SET_GET.call((), WEB_SAME_SCORE, *(x for entry in entries for x in entry),
                                   lead=(zset,))

    @Op
    def set_remove(self, zset: str, entries: Sequence[tuple[str, str, str]], kill_score: str = ""
                   ) -> Call[tuple[int, list[tuple[str, str, str]]]]:
        """Delete entries named by (score, jid, from), as ``set_entries`` finds them; with
        ``kill_score`` move them to ``dead``: (how many, the entries to ask for again)."""
        action = "kill" if kill_score else "delete"
        return FF_WEB_SET_REMOVE.call((), action, kill_score, WEB_SAME_SCORE,
                                      *(x for entry in entries for x in entry), lead=(zset,))

    @Op
    def set_filter(self, zset: str, cursor: str, scan_cap: int, want: int, jobtype: str,
                   queue: str, text: str) -> Call[tuple[str, int, list[tuple[bytes, str]]]]:
        """Scan ``zset`` from ``cursor`` for up to ``want`` matching entries, stopping after
        about ``scan_cap`` entries, or WEB_SET_SCAN if fewer (call again from the cursor).

        Returns (next cursor, '0' when the scan is complete; entries scanned; [(member, score)]).
        ``text`` matches case-insensitively.
        """
        return FF_WEB_SET_FILTER.call((), cursor, min(scan_cap, WEB_SET_SCAN), want, jobtype,
                                      queue, text.lower(), lead=(zset,))

    @Op
    def queue_page(self, name: str, offset: int,
                   count: int) -> Call[tuple[int, list[tuple[int, bytes]]]]:
        """(size, [(priority, job), ...]) of one page of a queue, in the order FETCH takes them."""
        return FF_WEB_QUEUE_PAGE.call((keys.queue(name),), name, offset, count)

    @Op
    def queue_delete(self, name: str, priority: int, job: bytes, position: int,
                     half: str = "") -> Call[tuple[bool, tuple[int, str] | None]]:
        """Remove one occurrence of ``job`` from the queue's list of ``priority``, seen at
        ``position`` in fetch order, walking at most about half the list: (removed, None), or
        (False, (position, half)) to call again with."""
        return FF_WEB_QUEUE_DELETE.call((keys.queue_list(name, priority),), name, priority, job,
                                        position, half)

    @paged(_concat)
    def queue_list(self, cursor: str) -> Call[tuple[str, list[tuple[str, int, bool, list[bytes]]]]]:
        """Every queue as (name, size, paused, [oldest job of each priority list])."""
        return FF_WEB_QUEUES.call((), cursor, PAGE // 4)  # ~20 Redis calls a queue

    @Op
    def daily_counts(self, days: Sequence[str]) -> Call[list[tuple[int, int]]]:
        """[(processed, failures), ...] for each ``YYYY-MM-DD`` in ``days``."""
        def decode(reply: Any) -> list[tuple[int, int]]:
            values = [int(v or 0) for v in reply]
            return list(zip(values[0::2], values[1::2]))
        names = [keys.daily(c, d) for d in days for c in (keys.PROCESSED, keys.FAILURES)]
        return Call(("MGET", *names), decode)

    @Op
    def redis_info(self) -> Call[dict[str, str]]:
        """Redis's full INFO as a dict of field -> text value."""
        def decode(reply: Any) -> dict[str, str]:
            out = {}
            for line in _text(reply).splitlines():
                if line and not line.startswith("#") and ":" in line:
                    k, v = line.split(":", 1)
                    out[k] = v.strip()
            return out
        return Call(("INFO",), decode)

    @Op
    def redis_info_sections(self) -> Call[list[tuple[str, dict[str, str]]]]:
        """Redis's full INFO as [(section, {field: text value}), ...], in Redis's order."""
        def decode(reply: Any) -> list[tuple[str, dict[str, str]]]:
            sections: list[tuple[str, dict[str, str]]] = []
            for line in _text(reply).splitlines():
                if line.startswith("# "):
                    sections.append((line[2:].strip(), {}))
                elif ":" in line and sections:
                    k, v = line.split(":", 1)
                    sections[-1][1][k] = v.strip()
            return sections
        return Call(("INFO",), decode)

    @Op
    def ping(self) -> Call[None]:
        """One bare round trip, timed by the web UI's debug page."""
        return Call(("PING",), _none)

    @Op
    def server_processes(self) -> Call[int]:
        """How many server processes are in the connection registry (``ff:conns``)."""
        return Call(("HLEN", keys.CONNECTIONS), _int)


def _batch_keys(bid: str) -> tuple[str, str, str]:
    return keys.batch(bid), keys.batch_jobs(bid), keys.batch_kids(bid)


# -- the two stores --------------------------------------------------------------------------------

class AsyncStore(Operations):
    """The server's store, over an ``redis_client.RedisConnection``: operations return awaitables.
    With the connection's ``wait_replicas`` set, pushes are answered once replicated."""

    def __init__(self, conn: RedisConnection) -> None:
        self.conn = conn
        self._execute = conn.execute
        self._send_cb = conn.send_cb
        self._execute_push: Callable[..., Awaitable[Any]]
        self._push_cb: Callable[[Callable[[Any], None], bytes], None]
        if conn.wait_replicas:
            self._execute_push = conn.execute_replicated
            self._push_cb = conn.send_cb_replicated
        else:
            self._execute_push = conn.execute
            self._push_cb = conn.send_cb
        self._push_parts: Packed = {}
        self._push_to_parts: Packed = {}
        self._fetch_parts: Packed = {}
        self._ack_parts: Packed = {}
        # Group commit: the PUSHes and ACKs of one turn of the loop, sent as one call each as
        # the turn's writes leave (conn.gather). Each caller still gets its own answer.
        self._pushes: list[tuple[Prepared, Callable[[int | Exception], None]]] = []
        self._acks: list[tuple[str, str, bool, Callable[[Outcome | Exception], None]]] = []
        self._fetches: list[tuple[str, str, str, int, Sequence[str],
                                  Callable[[Reserved | Fetched | Exception], None]]] = []
        self._gathering = False  # something is gathered: the connection was woken
        conn.gather(self._send_gathered)

    async def run(self, call: Call[T]) -> T:
        """The decoded reply of ``call`` (a ReplyError is raised)."""
        execute = self._execute_push if call.replicated else self._execute
        return call.decode(await execute(*call.args))

    # The hot path: the decoded reply (or the exception) goes to ``then`` from the Redis reply
    # handler, without a task or a future.
    def push_then(self, job: Prepared, then: Callable[[int | Exception], None]) -> None:
        """``push`` of one job: ``then`` gets 1 (stored), or the JobError that refused it
        (or the connection's error). Sent with the turn's other pushes (group commit)."""
        if not self._gathering:
            self._gathering = True
            self.conn.wake()
        self._pushes.append((job, then))

    def _send_gathered(self) -> None:
        """Send the turn's gathered PUSHes, ACKs and FETCHes, in that order (a FETCH then
        finds a job pushed in the same turn): one call for each GROUP_MAX of a kind (ACKs: of
        a day; FETCHes: of a server process and default reservation), a lone one as itself."""
        if not self._gathering:
            return
        self._gathering = False
        pushes, acks, fetches = self._pushes, self._acks, self._fetches
        if pushes:
            self._pushes = []
            for part in _parts(pushes):
                try:
                    if len(part) == 1:
                        self._push_one(*part[0])
                    else:
                        self._push_cb(_split_pushes(part), pack_command(*_push_args(
                            [job for job, _ in part])))
                except Exception as exc:  # RedisClosed: the connection went
                    for _, then in part:
                        then(exc)
        if acks:
            self._acks = []
            by_day: dict[str, list[tuple[str, bool, Callable[[Outcome | Exception], None]]]] = {}
            for jid, day, plain, answer in acks:
                by_day.setdefault(day, []).append((jid, plain, answer))
            for day, same in by_day.items():
                for ack_part in _parts(same):
                    try:
                        if len(ack_part) == 1:
                            self._ack_one(ack_part[0][0], day, ack_part[0][1], ack_part[0][2])
                        else:
                            self._send_cb(_split_acks(ack_part), pack_command(*_ack_args(
                                [(jid, plain) for jid, plain, _ in ack_part], day)))
                    except Exception as exc:
                        for _, _, answer in ack_part:
                            answer(exc)
        if fetches:
            self._fetches = []
            groups: dict[tuple[str, int], list[tuple[str, str, Sequence[str], Callable[
                [Reserved | Fetched | Exception], None]]]] = {}
            for wid, proc_id, now, default_reserve, queues, found_to in fetches:
                groups.setdefault((proc_id, default_reserve), []).append((wid, now, queues, found_to))
            for (proc_id, default_reserve), group in groups.items():
                for fetch_part in _parts(group):
                    try:
                        if len(fetch_part) == 1:
                            wid, now, queues, found_to = fetch_part[0]
                            self._fetch_one(wid, proc_id, now, default_reserve, queues, found_to)
                        else:
                            self._send_cb(_split_fetches(fetch_part), pack_command(
                                *_fetch_args(proc_id, fetch_part[-1][1], default_reserve,
                                             [(wid, qs) for wid, _, qs, _ in fetch_part])))
                    except Exception as exc:  # RedisClosed: the connection went
                        for _, _, _, found_to in fetch_part:
                            found_to(exc)

    def _push_one(self, job: Prepared, then: Callable[[int | Exception], None]) -> None:
        def decoded(reply: Any) -> None:
            then(JobError.from_line(reply[0]) if type(reply) is list else reply)
        if job.unique:
            self._push_cb(decoded, pack_command(*_push_args((job,))))
            return
        key = (job.queue, job.priority, job.plain)
        parts = self._push_parts.get(key)
        if parts is None:  # ff_push's arguments end with the job, its time and its hooks
            args = _push_args((job,))
            parts = _pack_parts(self._push_parts, key, args, len(args) - 3, 2)
        self._push_cb(decoded, parts[0] + _bulks(job.payload, job.at_score) + parts[1])

    def push_to_then(self, job: Prepared, wid: str, now: str, default_reserve: int,
                     then: Callable[[Reserved | Fetched | Exception], None]) -> None:
        """``push_to``: ``then`` gets its answer."""
        def decoded(reply: Any) -> None:
            then(reply if isinstance(reply, Exception) else _fetched(reply))
        key = (job.queue, wid, job.reserve_for, default_reserve)
        parts = self._push_to_parts.get(key)
        if parts is None:  # ff_push_to's arguments end with the job, its jid and the time
            args = _push_to_args(job, wid, now, default_reserve)
            parts = _pack_parts(self._push_to_parts, key, args, len(args) - 3, 3)
        self._push_cb(decoded, parts[0] + _bulks(job.payload, job.jid, now))

    def fetch_then(self, wid: str, proc_id: str, now: str, default_reserve: int,
                   queues: Sequence[str],
                   then: Callable[[Reserved | Fetched | Exception], None]) -> None:
        """``fetch``: ``then`` gets what it found. Sent with the turn's other FETCHes (group
        commit), in the order they came."""
        if not self._gathering:
            self._gathering = True
            self.conn.wake()
        self._fetches.append((wid, proc_id, now, default_reserve, queues, then))

    def _fetch_one(self, wid: str, proc_id: str, now: str, default_reserve: int,
                   queues: Sequence[str],
                   then: Callable[[Reserved | Fetched | Exception], None]) -> None:
        def decoded(reply: Any) -> None:
            then(reply if isinstance(reply, Exception) else _first_fetched(reply))
        key = (wid, proc_id, default_reserve, *queues)
        parts = self._fetch_parts.get(key)
        if parts is None:  # all but the time: cached (FCALL, name, numkeys, keys..., proc_id, now)
            args = _fetch_args(proc_id, now, default_reserve, [(wid, queues)])
            parts = _pack_parts(self._fetch_parts, key, args, 4 + args[2], 1)
        self._send_cb(decoded, parts[0] + _bulks(now) + parts[1])

    def ack_then(self, jid: str, day: str, plain: bool,
                 then: Callable[[Outcome | Exception], None]) -> None:
        """``ack``: ``then`` gets the outcome. Sent with the turn's other ACKs (group
        commit)."""
        if not self._gathering:
            self._gathering = True
            self.conn.wake()
        self._acks.append((jid, day, plain, then))

    def _ack_one(self, jid: str, day: str, plain: bool,
                 then: Callable[[Outcome | Exception], None]) -> None:
        def decoded(reply: Any) -> None:
            then(reply if isinstance(reply, Exception) else _OUTCOMES[reply[0]])
        key = (day, plain)
        parts = self._ack_parts.get(key)
        if parts is None:  # ff_ack's arguments end with the jid and the plain flag
            args = _ack_args([("", plain)], day)
            parts = _pack_parts(self._ack_parts, key, args, len(args) - 2, 1)
        self._send_cb(decoded, parts[0] + _bulks(jid) + parts[1])


def _split_pushes(pushes: Sequence[tuple[Prepared, Callable[[int | Exception], None]]]
                  ) -> Callable[[Any], None]:
    """The reply of one ff_push of several jobs, handed to each job's caller: 1, or the
    JobError of a job an Enterprise hook refused (or everyone's error)."""
    def split(reply: Any) -> None:
        if isinstance(reply, Exception) or type(reply) is not list:
            for _, then in pushes:
                then(reply if isinstance(reply, Exception) else 1)
            return
        for (_, then), refusal in zip(pushes, reply):
            then(JobError.from_line(refusal) if refusal else 1)
    return split


def _parts(items: list[T]) -> list[list[T]]:
    """``items`` in parts of at most GROUP_MAX: the commands one grouped call carries."""
    if len(items) <= GROUP_MAX:
        return [items]
    return [items[i:i + GROUP_MAX] for i in range(0, len(items), GROUP_MAX)]


def _split_fetches(group: Sequence[tuple[str, str, Sequence[str],
                                         Callable[[Reserved | Fetched | Exception], None]]]
                   ) -> Callable[[Any], None]:
    """The reply of one ff_fetch of several FETCHes, each one's answer handed to its caller."""
    def split(reply: Any) -> None:
        if isinstance(reply, Exception):
            for _, _, _, answer in group:
                answer(reply)
            return
        for (_, _, _, answer), found in zip(group, reply):
            answer(_fetched(found))
    return split


def _split_acks(acks: Sequence[tuple[str, bool, Callable[[Outcome | Exception], None]]]
                ) -> Callable[[Any], None]:
    """The reply of one ff_ack of several jobs, handed to each ACK's caller."""
    def split(reply: Any) -> None:
        if isinstance(reply, Exception):
            for _, _, then in acks:
                then(reply)
            return
        for (_, _, then), outcome in zip(acks, reply):
            then(_OUTCOMES[outcome])
    return split


class SyncStore(Operations):
    """The web UI's store, over a redis-py client of its own: operations return values.

    RESP2 and no reply post-processing, so both stores see the same raw replies.
    """

    def __init__(self, client: redis.Redis) -> None:
        client.response_callbacks.clear()
        self.client = client
        self._execute = client.execute_command

    @classmethod
    def connect(cls, url: str) -> SyncStore:
        """A store with a client of its own for the Redis at ``url`` (``redis+sentinel://``:
        whichever primary the Sentinels name)."""
        import redis

        target = parse_redis_url(url)
        common = {"db": target["db"], "password": target["password"], "protocol": 2}
        if "path" in target:
            client = redis.Redis(unix_socket_path=target["path"], **common)
        elif "sentinels" in target:
            # The pool asks the Sentinels for the primary whenever it opens a connection, and
            # drops a connection to a primary that became a replica (READONLY).
            from faktory_fast.storage.redis_client import sentinels

            client = sentinels(target).master_for(target["service"], socket_connect_timeout=5.0,
                                                  **common)
        else:
            client = redis.Redis(host=target["host"], port=target["port"],
                                 ssl=target.get("ssl", False), **common)
        return cls(client)

    def run(self, call: Call[T]) -> T:
        """The decoded reply of ``call`` (redis-py's ResponseError is raised)."""
        return call.decode(self._execute(*call.args))

    def run_all(self, calls: Sequence[Call[T]]) -> list[T]:
        """The decoded replies of ``calls``, sent in one round trip (a pipeline, not a
        transaction). Build each with the operation's ``Op``, e.g.
        ``Operations.track_get.build(store, jid)``."""
        pipe = self.client.pipeline(transaction=False)
        for call in calls:
            pipe.execute_command(*call.args)
        return [call.decode(reply) for call, reply in zip(calls, pipe.execute())]


async def ensure_library(conn: RedisConnection) -> None:
    """Load our function library into the Redis behind ``conn`` (an ``aredis`` connection)
    if it lacks it (``redis_client.connect``'s ``ready`` hook on a reconnection): a Redis restarted
    without its data, or a replica promoted before it had synchronised, does."""
    store = AsyncStore(conn)
    if not await store.library_loaded():
        await store.load_library()
        log.warning("Redis at %s had no faktory_fast function library: loaded it", conn.address)


def process_id() -> str:
    """A name for this server process, unique across restarts and hosts."""
    return f"{os.uname().nodename}:{os.getpid()}:{os.urandom(3).hex()}"
