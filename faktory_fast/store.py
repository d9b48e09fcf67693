"""The storage interface: every Redis key the server touches is behind these methods.

Each method is exactly one Redis round trip (a command or an FCALL of our function library in
``lua/faktory.lua``). The same Store serves the asyncio server (``Store.for_async`` over an
``aredis.RedisConnection``) and the synchronous web UI (``Store.for_sync`` over a redis-py
client): a method returns the reply, or an awaitable of it, depending on the executor. The
server's hot-path methods (push, fetch, ack) also take ``then``: the reply is then passed to
that callback instead (with the asyncio executor, straight from the Redis reply handler).
"""
from __future__ import annotations

import logging
import os
from importlib import resources
from typing import Any, Awaitable, Callable, Iterable, Sequence

from faktory_fast import keys
from faktory_fast.aredis import Then
from faktory_fast.config import parse_redis_url

LIBRARY_NAME = "faktory_fast"

log = logging.getLogger("faktory_fast")

Decode = Callable[[Any], Any] | None


def library_source() -> str:
    """The Lua function library, as shipped in the package."""
    return resources.files("faktory_fast").joinpath("lua/faktory.lua").read_text()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(flat: Sequence[Any]) -> list[tuple[Any, Any]]:
    return list(zip(flat[0::2], flat[1::2]))


def _info(reply: list) -> dict[str, Any]:
    (processed, failures, scheduled, retries, dead, working, workers, conns, cmds,
     tasks, queues) = reply
    return {
        "processed": processed, "failures": failures, "scheduled": scheduled,
        "retries": retries, "dead": dead, "working": working, "workers": workers,
        "connections": conns, "commands": cmds,
        "tasks": {_text(k): float(v) for k, v in _pairs(tasks)},
        "queues": {_text(k): v for k, v in _pairs(queues)},
    }


class Store:
    """Redis access for the server, the scheduler and the web UI."""

    def __init__(self, call: Callable[..., Any], call_then: Callable[..., None],
                 push_call: Callable[..., Any] | None = None,
                 push_then: Callable[..., None] | None = None) -> None:
        # call(decode, *command) -> reply or awaitable of reply;
        # call_then(then, *command): the reply (or the exception) goes to then
        self._call = call
        self._call_then = call_then
        # The same for PUSH, whose reply may have to wait for replicas (--redis-wait-replicas).
        self._push_call = push_call or call
        self._push_then = push_then or call_then

    @classmethod
    def for_async(cls, conn: Any) -> "Store":
        """Over an ``aredis.RedisConnection``: methods return awaitables. With the
        connection's ``wait_replicas`` set, pushes are answered once replicated."""
        execute = conn.execute

        async def decoded(fut: Awaitable[Any], decode: Callable[[Any], Any]) -> Any:
            return decode(await fut)

        def call(decode: Decode, *args: Any) -> Any:
            fut = execute(*args)
            return fut if decode is None else decoded(fut, decode)

        if not conn.wait_replicas:
            return cls(call, conn.execute_cb)
        execute_replicated = conn.execute_replicated

        def push_call(decode: Decode, *args: Any) -> Any:
            fut = execute_replicated(*args)
            return fut if decode is None else decoded(fut, decode)

        return cls(call, conn.execute_cb, push_call, conn.execute_cb_replicated)

    @classmethod
    def for_sync(cls, url: str) -> "Store":
        """Over a redis-py client of its own (for the web UI): methods return values.

        RESP2 and no reply post-processing, so both executors see the same raw values.
        """
        import redis

        target = parse_redis_url(url)
        common = {"db": target["db"], "password": target["password"], "protocol": 2}
        if "path" in target:
            client = redis.Redis(unix_socket_path=target["path"], **common)
        elif "sentinels" in target:
            # The pool asks the Sentinels for the primary whenever it opens a connection, and
            # drops a connection to a primary that became a replica (READONLY).
            from faktory_fast.aredis import sentinels

            client = sentinels(target).master_for(target["service"], socket_connect_timeout=5.0,
                                                  **common)
        else:
            client = redis.Redis(host=target["host"], port=target["port"],
                                 ssl=target.get("ssl", False), **common)
        client.response_callbacks.clear()
        execute = client.execute_command

        def call(decode: Decode, *args: Any) -> Any:
            reply = execute(*args)
            return reply if decode is None else decode(reply)

        def call_then(then: Then, *args: Any) -> None:
            try:
                reply = execute(*args)
            except redis.ResponseError as exc:
                reply = exc
            then(reply)

        return cls(call, call_then)

    def _fcall(self, decode: Decode, function: str, *args: Any, then: Then | None = None) -> Any:
        if then is not None:
            return self._call_then(then, "FCALL", function, 0, *args)
        return self._call(decode, "FCALL", function, 0, *args)

    # -- setup ---------------------------------------------------------------------------------
    def load_library(self) -> Any:
        """Install (or replace) our function library."""
        return self._call(None, "FUNCTION", "LOAD", "REPLACE", library_source())

    def library_loaded(self) -> Any:
        """Whether Redis has our function library (a promoted replica may not)."""
        return self._call(bool, "FUNCTION", "LIST", "LIBRARYNAME", LIBRARY_NAME)

    def server_version(self) -> Any:
        """Redis's INFO server section as text."""
        return self._call(_text, "INFO", "server")

    def legacy_reservations(self) -> Any:
        """Faktory-format ``working`` members (reservation JSON) with scores, for migration."""
        def pick(flat: list) -> list[tuple[bytes, float]]:
            return [(m, float(s)) for m, s in _pairs(flat) if m[:1] == b"{"]
        return self._call(pick, "ZRANGE", keys.WORKING, 0, -1, "WITHSCORES")

    def migrate_reservation(self, member: bytes, jid: str, record: bytes, score: float) -> Any:
        return self._fcall(None, "ff_migrate_reservation", member, jid, record, repr(score))

    def known_queues(self) -> Any:
        """The names in the ``queues`` set (sorted)."""
        return self._call(lambda names: sorted(_text(n) for n in names), "SMEMBERS", keys.QUEUES)

    def migrate_queue(self, name: str) -> Any:
        """Move Faktory 1.9's bare-named queue list to ``q:<name>``; the number of jobs moved."""
        return self._call(None, "FCALL", "ff_migrate_queue", 2, name, keys.queue(name))

    def data_version(self) -> Any:
        """Faktory's data-format version (the ``v`` key; 0 when absent)."""
        return self._call(int, "INCRBY", keys.DATA_VERSION, 0)

    def set_data_version(self, version: int) -> Any:
        return self._call(None, "SET", keys.DATA_VERSION, version)

    # -- jobs ----------------------------------------------------------------------------------
    def push(self, jobs: Iterable[Any], then: Then | None = None) -> Any:
        """Store prepared jobs (``jobs.Prepared``): enqueue now or schedule."""
        args: list[Any] = []
        for p in jobs:
            args += (p.queue, p.priority, p.payload, p.at_score)
        if then is not None:
            return self._push_then(then, "FCALL", "ff_push", 0, len(args) // 4, *args)
        return self._push_call(None, "FCALL", "ff_push", 0, len(args) // 4, *args)

    def fetch(self, wid: str, proc: str, now: str, default_reserve: int,
              queues: Sequence[Any], then: Then | None = None) -> Any:
        """Reserve the next job: [job, rid, jid], or 0 (empty; registered as a waiter),
        -1 (worker quiet), -2 (all paused), -3 (empty, some paused)."""
        return self._fcall(None, "ff_fetch", wid, proc, now, default_reserve, *queues, then=then)

    def ack(self, jid: Any, day: str, then: Then | None = None) -> Any:
        """1 if the reservation existed (and is now done), else 0."""
        return self._fcall(None, "ff_ack", jid, day, then=then)

    def fail(self, jid: str, rid: Any, day: str, outcome: str, payload: bytes, score: str) -> Any:
        """[1] done, [0] no such reservation, [2, record]: recompute from that record."""
        return self._fcall(None, "ff_fail", jid, rid, day, outcome, payload, score)

    def release(self, jid: str, queue: str, priority: int, job: bytes) -> Any:
        """Undo a reservation; the job goes back to the head of its queue. 1 if it existed."""
        return self._fcall(None, "ff_release", jid, queue, priority, job)

    def reservation(self, jid: str) -> Any:
        """The reservation record of ``jid`` or None."""
        return self._call(None, "HGET", keys.RESERVATIONS, jid)

    def reservations(self, limit: int = 1000) -> Any:
        """Up to ``limit`` reservation records (jobs in progress), soonest to expire first."""
        def records(reply: list) -> list:
            return [r for r in reply if r is not None]
        return self._fcall(records, "ff_reservations", limit)

    def expired(self, now: str, limit: int) -> Any:
        """[(jid, reservation record), ...] whose time is up; the record is b'' for a
        ``working`` entry that has none but may hold data (see ``ff_expired``)."""
        return self._fcall(_pairs, "ff_expired", now, limit)

    def due(self, zset: str, now: str, limit: int) -> Any:
        """Members of a sorted set whose score is ``<= now``, oldest first."""
        return self._call(None, "ZRANGEBYSCORE", zset, "-inf", now, "LIMIT", 0, limit)

    def enqueue_from(self, zset: str, moves: Sequence[tuple[bytes, str, int, bytes]]) -> Any:
        """Move (member, queue, priority, payload) entries from a sorted set to their queues."""
        args: list[Any] = []
        for move in moves:
            args += move
        return self._fcall(None, "ff_enqueue_from", zset, len(moves), *args)

    def set_aside(self, source: str, key: Any, record: bytes, dead_score: str, entry: bytes,
                  reason: str, now: str) -> Any:
        """Move a record the server cannot use from ``source`` (a sorted set, or ``working``
        with ``key`` a jid and ``record`` its reservation) to ``dead`` as ``entry``, or, with
        ``entry`` b'', as it is to ``keys.BAD_RECORDS``. 1 if moved, 0 if it had changed."""
        return self._fcall(None, "ff_set_aside", source, key, record, dead_score, entry, reason,
                           now)

    def purge_dead(self, now: str) -> Any:
        """Forget dead jobs past their retention."""
        return self._call(None, "ZREMRANGEBYSCORE", keys.DEAD, "-inf", now)

    def mutate(self, cmd: str, target: str, dead_score: str, mode: str, pattern: str,
               extra: Sequence[str]) -> Any:
        return self._fcall(None, "ff_mutate", cmd, target, dead_score, mode, pattern, *extra)

    # -- queues --------------------------------------------------------------------------------
    def queue_op(self, sub: str, names: Sequence[str]) -> Any:
        """QUEUE PAUSE | RESUME | REMOVE (``*`` = every queue)."""
        return self._fcall(None, "ff_queue", sub, *names)

    def queue_heads(self, names: Sequence[str]) -> Any:
        """Per queue, the next-to-run job of each of its priority lists."""
        return self._fcall(None, "ff_queue_heads", *names)

    def flush(self) -> Any:
        return self._fcall(None, "ff_flush")

    def info(self) -> Any:
        """Counters, set sizes, queue sizes, connections and task stats as a dict."""
        return self._fcall(_info, "ff_info")

    # -- workers and processes -------------------------------------------------------------
    def hello(self, proc: str, max_conns: int, wid: str, hostname: str, pid: Any,
              labels: bytes, v: Any, now: str, addr: str = "") -> Any:
        """0, or the connection count that would exceed ``max_conns``. ``addr``: the client's
        address (shown on the Busy page)."""
        return self._fcall(None, "ff_hello", proc, max_conns, wid, hostname, pid, labels, v, now,
                           addr)

    def bye(self, proc: str, wid: str) -> Any:
        return self._fcall(None, "ff_bye", proc, wid)

    def beat(self, wid: str, now: str, state: str, rss_kb: Any) -> Any:
        """The worker's state after this heartbeat, or None for an unknown wid."""
        return self._fcall(lambda r: _text(r) if r else None, "ff_beat", wid, now, state, rss_kb)

    def signal_workers(self, state: str, wids: Sequence[str]) -> Any:
        """Quiet or terminate workers (``*`` = all)."""
        return self._fcall(None, "ff_signal", state, *wids)

    def reap_workers(self, cutoff: str) -> Any:
        return self._fcall(None, "ff_reap_workers", cutoff)

    def workers(self) -> Any:
        """Every registered worker as a dict of its fields."""
        def decode(reply: list) -> list[dict[str, str]]:
            return [{_text(k): _text(v) for k, v in _pairs(h)} for h in reply if h]
        return self._fcall(decode, "ff_workers")

    def count_commands(self, proc: str, n: int) -> Any:
        return self._call(None, "HINCRBY", keys.COMMANDS, proc, n)

    def registered_processes(self) -> Any:
        """Ids of the server processes counted in the connection registry."""
        return self._call(lambda ids: [_text(i) for i in ids], "HKEYS", keys.CONNECTIONS)

    def process_gone(self, proc: str) -> Any:
        return self._fcall(None, "ff_process_gone", proc)

    def set_task_stats(self, fields: dict[str, float]) -> Any:
        args: list[Any] = []
        for k, v in fields.items():
            args += (k, repr(float(v)) if isinstance(v, float) else v)
        return self._call(None, "HSET", keys.TASKS, *args)

    # -- web UI ----------------------------------------------------------------------------------
    def set_page(self, zset: str, offset: int, count: int) -> Any:
        """(size of ``zset``, [(member, score), ...]) for one page in score order."""
        def decode(reply: list) -> tuple[int, list[tuple[bytes, str]]]:
            return reply[0], [(m, _text(sc)) for m, sc in _pairs(reply[1])]
        return self._fcall(decode, "ff_web_set_page", zset, offset, count)

    def set_entries(self, zset: str, entries: Sequence[tuple[str, str]]) -> Any:
        """[(member, score), ...] of the entries named by (score, jid) that still exist."""
        args = [x for entry in entries for x in entry]
        return self._fcall(lambda r: [(m, _text(sc)) for m, sc in _pairs(r)],
                           "ff_web_set_get", zset, *args)

    def set_remove(self, zset: str, entries: Sequence[tuple[str, str]], kill_score: str = "") -> Any:
        """Delete entries named by (score, jid); with ``kill_score`` move them to ``dead``."""
        args = [x for entry in entries for x in entry]
        action = "kill" if kill_score else "delete"
        return self._fcall(None, "ff_web_set_remove", zset, action, kill_score, *args)

    def set_filter(self, zset: str, cursor: str, scan_cap: int, want: int, jobtype: str,
                   queue: str, text: str) -> Any:
        """Scan ``zset`` from ``cursor`` for matching entries (bounded by ``scan_cap``).

        Returns (next cursor, '0' when the scan is complete; entries scanned; [(member, score)]).
        ``text`` matches case-insensitively.
        """
        def decode(reply: list) -> tuple[str, int, list[tuple[bytes, str]]]:
            return _text(reply[0]), reply[1], [(m, _text(sc)) for m, sc in _pairs(reply[2])]
        return self._fcall(decode, "ff_web_set_filter", zset, cursor, scan_cap, want, jobtype,
                           queue, text.lower())

    def queue_page(self, name: str, offset: int, count: int) -> Any:
        """(size, [(priority, job), ...]) of one page of a queue, in the order FETCH takes them."""
        def decode(reply: list) -> tuple[int, list[tuple[int, bytes]]]:
            return reply[0], [(int(p), j) for p, j in _pairs(reply[1])]
        return self._fcall(decode, "ff_web_queue_page", name, offset, count)

    def queue_delete(self, name: str, jobs: Sequence[tuple[int, bytes]]) -> Any:
        """Remove these (priority, job) entries from a queue; returns how many went."""
        args = [x for entry in jobs for x in entry]
        return self._fcall(None, "ff_web_queue_delete", name, *args)

    def queue_list(self) -> Any:
        """Every queue as (name, size, paused, [oldest job of each priority list])."""
        def decode(reply: list) -> list[tuple[str, int, bool, list[bytes]]]:
            return [(_text(n), size, bool(p), heads) for n, size, p, heads in reply]
        return self._fcall(decode, "ff_web_queues")

    def daily_counts(self, days: Sequence[str]) -> Any:
        """[(processed, failures), ...] for each ``YYYY-MM-DD`` in ``days``."""
        def decode(reply: list) -> list[tuple[int, int]]:
            values = [int(v or 0) for v in reply]
            return list(zip(values[0::2], values[1::2]))
        names = [keys.daily(c, d) for d in days for c in (keys.PROCESSED, keys.FAILURES)]
        return self._call(decode, "MGET", *names)

    def redis_info(self) -> Any:
        """Redis's full INFO as a dict of field -> text value."""
        def decode(reply: Any) -> dict[str, str]:
            out = {}
            for line in _text(reply).splitlines():
                if line and not line.startswith("#") and ":" in line:
                    k, v = line.split(":", 1)
                    out[k] = v.strip()
            return out
        return self._call(decode, "INFO")

    def redis_info_sections(self) -> Any:
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
        return self._call(decode, "INFO")

    def ping(self) -> Any:
        """PONG: one bare round trip, timed by the web UI's debug page."""
        return self._call(None, "PING")

    def server_processes(self) -> Any:
        """How many server processes are in the connection registry (``ff:conns``)."""
        return self._call(None, "HLEN", keys.CONNECTIONS)


async def ensure_library(conn: Any) -> None:
    """Load our function library into the Redis behind ``conn`` (an ``aredis`` connection)
    if it lacks it (``aredis.connect``'s ``ready`` hook on a reconnection): a Redis restarted
    without its data, or a replica promoted before it had synchronised, does."""
    store = Store.for_async(conn)
    if not await store.library_loaded():
        await store.load_library()
        log.warning("Redis at %s had no faktory_fast function library: loaded it", conn.address)


def process_id() -> str:
    """A name for this server process, unique across restarts and hosts."""
    return f"{os.uname().nodename}:{os.getpid()}:{os.urandom(3).hex()}"
