"""The storage interface: every Redis key the server touches is behind one table of operations.

Each operation is one Redis round trip: an FCALL of a function of our library (``lua/``, one
file per domain; each function is an ``fcall.Fn`` with the keys it always touches and the
decoder of its reply) or a plain command; the reply comes back decoded, with named results
(``Outcome``, ``Fetched``) rather than bare codes. An operation over a set that may be big
(``fcall.Paged``) is a round trip a page: no call holds the Redis every client shares for long.
The operations are written once, by domain (``ops/``, each module beside its Lua file), and
combined in ``Operations``; two thin stores run them:

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
from collections.abc import Awaitable, Callable, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeVar

from faktory_fast.codec.resp import pack_command
from faktory_fast.jobs import JobError, Prepared
from faktory_fast.storage import keys
from faktory_fast.storage.fcall import (
    AsyncRunner,
    Call,
    Op,
    Outcome,
    SyncRunner,
    as_none,
    as_text,
    with_tag,
)
from faktory_fast.storage.ops.batches import BatchOps
from faktory_fast.storage.ops.cron import CronOps
from faktory_fast.storage.ops.ent import EntOps
from faktory_fast.storage.ops.jobs import (
    Fetched,
    JobOps,
    Reserved,
    ack_args,
    ack_outcome,
    decode_fetched,
    decode_first_fetched,
    fetch_args,
    push_args,
    push_to_args,
)
from faktory_fast.storage.ops.metrics import MetricsOps
from faktory_fast.storage.ops.migrations import MigrationOps
from faktory_fast.storage.ops.queues import QueueOps
from faktory_fast.storage.ops.web import WebOps
from faktory_fast.storage.ops.workers import WorkerOps
from faktory_fast.storage.redis_url import parse_redis_url

if TYPE_CHECKING:
    import redis
    from redis.cluster import RedisCluster

    from faktory_fast.storage.redis_client import RedisConnection

LIBRARY_NAME = "faktory_fast"
HOT_CACHE = 10_000  # packed command parts AsyncStore keeps per hot command (see _pack_parts)
GROUP_MAX = 200  # commands of a kind one group-commit call carries (200 FETCHes: ~4 ms of Redis)
#: The files of ``lua/``, one per domain, in the order ``library_source`` joins them into the one
#: library: a file may use the local helpers of those before it (``common.lua``: everyone's; the
#: Enterprise hooks of ``ent.lua`` and ``batch.lua``: the core functions' of ``jobs.lua``;
#: ``jobs.lua``'s push_one: ``cron.lua``'s).
LUA_FILES = ("common.lua", "ent.lua", "batch.lua", "jobs.lua", "cron.lua", "workers.lua",
             "queues.lua", "web.lua", "migrations.lua", "metrics.lua")
#: The line of ``lua/common.lua`` that ``library_source`` replaces with the names from Python.
NAMES_MARK = "--@names from python"

log = logging.getLogger("faktory_fast")

T = TypeVar("T")


def library_source() -> str:
    """The Lua function library as Redis loads it: the files shipped in the package
    (``LUA_FILES``, in that order), with the names it takes from Python (``keys.LUA_NAMES``,
    ``Outcome``, ``Fetched``) filled in, and ``use_tag``, which puts the tag of a call's keys
    (``KEY_TAG``: none on a single Redis) on the key names of ``keys.LUA_KEY_NAMES``: one
    library serves every key layout."""
    lua = resources.files("faktory_fast.storage").joinpath("lua")
    text = "\n".join(lua.joinpath(name).read_text() for name in LUA_FILES)
    names = [f"local {name} = {json.dumps(value)}" for name, value in keys.LUA_NAMES.items()]
    names.append("local KEY_TAG = ''")
    names.append("local function use_tag(tag)")
    names.append("  KEY_TAG = tag")
    names += [f"  {name} = tag .. {json.dumps(keys.LUA_NAMES[name])}"
              for name in sorted(keys.LUA_KEY_NAMES)]
    names.append("end")
    for enum in (Outcome, Fetched):
        members = ", ".join(f"{m.name} = {m.value}" for m in enum)
        names.append(f"local {enum.__name__.upper()} = {{{members}}}")
    if text.count(NAMES_MARK) != 1:
        raise RuntimeError(f"lua/common.lua must have one line {NAMES_MARK!r}")
    return text.replace(NAMES_MARK, "\n".join(names))


class Operations(JobOps, WorkerOps, QueueOps, BatchOps, EntOps, CronOps, WebOps, MigrationOps,
                 MetricsOps):
    """Every store operation (``ops/``, by domain): one Redis round trip each (see the module
    docstring), except the ``Paged`` ones over sets that may be big: a round trip a page
    (``fcall.PAGE`` entries)."""

    @Op
    def load_library(self) -> Call[None]:
        """Install (or replace) our function library."""
        return Call(("FUNCTION", "LOAD", "REPLACE", library_source()), as_none)

    @Op
    def library_loaded(self) -> Call[bool]:
        """Whether Redis has our function library (a promoted replica may not)."""
        return Call(("FUNCTION", "LIST", "LIBRARYNAME", LIBRARY_NAME), bool)

    @Op
    def server_version(self) -> Call[str]:
        """Redis's INFO server section as text."""
        return Call(("INFO", "server"), as_text)


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


# -- the two stores --------------------------------------------------------------------------------

class AsyncStore(Operations, AsyncRunner):
    """The server's store, over an ``redis_client.RedisConnection``: operations return awaitables.
    With the connection's ``wait_replicas`` set, pushes are answered once replicated."""

    def __init__(self, conn: RedisConnection, tag: str = "") -> None:
        self.conn = conn
        self.tag = tag  # of the keys this store names (keys.layout_tag)
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
        self._acks: list[tuple[str, str, str, Callable[[Outcome | bytes | Exception], None]]] = []
        self._fetches: list[tuple[str, str, str, int, Sequence[str],
                                  Callable[[Reserved | Fetched | Exception], None]]] = []
        self._gathering = False  # something is gathered: the connection was woken
        conn.gather(self._send_gathered)

    async def run(self, call: Call[T]) -> T:
        """The decoded reply of ``call`` (a ReplyError is raised)."""
        execute = self._execute_push if call.replicated else self._execute
        return call.decode(await execute(*with_tag(call.args, self.tag, call.keyed)))

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
                        self._push_cb(_split_pushes(part), pack_command(*with_tag(push_args(
                            [job for job, _ in part]), self.tag)))
                except Exception as exc:  # RedisClosed: the connection went
                    for _, then in part:
                        then(exc)
        if acks:
            self._acks = []
            by_day: dict[str, list[tuple[str, str, Callable[[Outcome | bytes | Exception],
                                                            None]]]] = {}
            for jid, day, flag, answer in acks:
                by_day.setdefault(day, []).append((jid, flag, answer))
            for day, same in by_day.items():
                for ack_part in _parts(same):
                    try:
                        if len(ack_part) == 1:
                            self._ack_one(ack_part[0][0], day, ack_part[0][1], ack_part[0][2])
                        else:
                            self._send_cb(_split_acks(ack_part), pack_command(*with_tag(ack_args(
                                [(jid, flag) for jid, flag, _ in ack_part], day), self.tag)))
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
                            self._send_cb(_split_fetches(fetch_part), pack_command(*with_tag(
                                fetch_args(proc_id, fetch_part[-1][1], default_reserve,
                                           [(wid, qs) for wid, _, qs, _ in fetch_part]),
                                self.tag)))
                    except Exception as exc:  # RedisClosed: the connection went
                        for _, _, _, found_to in fetch_part:
                            found_to(exc)

    def _push_one(self, job: Prepared, then: Callable[[int | Exception], None]) -> None:
        def decoded(reply: Any) -> None:
            then(JobError.from_line(reply[0]) if type(reply) is list else reply)
        if job.unique:
            self._push_cb(decoded, pack_command(*with_tag(push_args((job,)), self.tag)))
            return
        key = (job.queue, job.priority, job.plain)
        parts = self._push_parts.get(key)
        if parts is None:  # ff_push's arguments end with the job, its time and its hooks
            args = with_tag(push_args((job,)), self.tag)
            parts = _pack_parts(self._push_parts, key, args, len(args) - 3, 2)
        self._push_cb(decoded, parts[0] + _bulks(job.payload, job.at_score) + parts[1])

    def push_to_then(self, job: Prepared, wid: str, now: str, default_reserve: int,
                     then: Callable[[Reserved | Fetched | Exception], None]) -> None:
        """``push_to``: ``then`` gets its answer."""
        def decoded(reply: Any) -> None:
            then(reply if isinstance(reply, Exception) else decode_fetched(reply))
        key = (job.queue, wid, job.reserve_for, default_reserve)
        parts = self._push_to_parts.get(key)
        if parts is None:  # ff_push_to's arguments end with the job, its jid and the time
            args = with_tag(push_to_args(job, wid, now, default_reserve), self.tag)
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
            then(reply if isinstance(reply, Exception) else decode_first_fetched(reply))
        key = (wid, proc_id, default_reserve, *queues)
        parts = self._fetch_parts.get(key)
        if parts is None:  # all but the time: cached (FCALL, name, numkeys, keys..., proc_id, now)
            args = with_tag(fetch_args(proc_id, now, default_reserve, [(wid, queues)]), self.tag)
            parts = _pack_parts(self._fetch_parts, key, args, 4 + args[2], 1)
        self._send_cb(decoded, parts[0] + _bulks(now) + parts[1])

    def ack_then(self, jid: str, day: str, flag: str,
                 then: Callable[[Outcome | bytes | Exception], None]) -> None:
        """``ack`` (``flag``: ``ops.jobs.ACK_PLAIN`` and so on): ``then`` gets the outcome, or
        the reservation's record for ACK_RECORD. Sent with the turn's other ACKs (group
        commit)."""
        if not self._gathering:
            self._gathering = True
            self.conn.wake()
        self._acks.append((jid, day, flag, then))

    def _ack_one(self, jid: str, day: str, flag: str,
                 then: Callable[[Outcome | bytes | Exception], None]) -> None:
        def decoded(reply: Any) -> None:
            then(reply if isinstance(reply, Exception) else ack_outcome(reply[0]))
        key = (day, flag)
        parts = self._ack_parts.get(key)
        if parts is None:  # ff_ack's arguments end with the jid and the flag
            args = with_tag(ack_args([("", flag)], day), self.tag)
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
            answer(decode_fetched(found))
    return split


def _split_acks(acks: Sequence[tuple[str, str, Callable[[Outcome | bytes | Exception], None]]]
                ) -> Callable[[Any], None]:
    """The reply of one ff_ack of several jobs, handed to each ACK's caller."""
    def split(reply: Any) -> None:
        if isinstance(reply, Exception):
            for _, _, then in acks:
                then(reply)
            return
        for (_, _, then), outcome in zip(acks, reply):
            then(ack_outcome(outcome))
    return split


class SyncStore(Operations, SyncRunner):
    """The web UI's store, over a redis-py client of its own: operations return values.

    RESP2 and no reply post-processing, so both stores see the same raw replies.
    """

    def __init__(self, client: redis.Redis | RedisCluster, tag: str = "") -> None:
        from redis.exceptions import ResponseError

        self.client = client
        self.tag = tag  # of the keys this store names (keys.layout_tag)
        self._execute = client.execute_command
        self._response_error = ResponseError
        if hasattr(client, "nodes_manager"):  # redis-py's RedisCluster: a client per node
            cluster: Any = client
            nodes = cluster.nodes_manager
            make = nodes.create_redis_node

            def raw_node(*args: Any, **kwargs: Any) -> Any:
                node = make(*args, **kwargs)
                node.response_callbacks.clear()
                return node
            nodes.create_redis_node = raw_node  # the nodes a failover brings, too
            for node in cluster.get_nodes():
                if node.redis_connection is not None:
                    node.redis_connection.response_callbacks.clear()
            self._execute = self._execute_on_cluster
        else:
            client.response_callbacks.clear()

    def _execute_on_cluster(self, *args: Any) -> Any:
        """A command on a cluster: our functions go where their keys are (one slot); the rest
        (FUNCTION LOAD, INFO...) go to the primary of that slot, the one Redis our keys use."""
        client: Any = self.client
        if args[0] == "FCALL":
            return client.execute_command(*args)
        return client.execute_command(*args, target_nodes=client.get_node_from_key(self.tag))

    @classmethod
    def connect(cls, url: str) -> SyncStore:
        """A store with a client of its own for the Redis at ``url`` (``redis+sentinel://``:
        whichever primary the Sentinels name; ``redis+cluster://``: the cluster's, our keys
        tagged)."""
        import redis

        target = parse_redis_url(url)
        tag = keys.layout_tag("cluster" in target)
        common = {"db": target["db"], "password": target["password"], "protocol": 2}
        if "cluster" in target:
            # redis-py's cluster client follows MOVED, ASK and failovers; every call of ours
            # names keys of one slot (keys.CLUSTER_TAG), so it goes to that slot's primary.
            from redis.cluster import ClusterNode, RedisCluster

            del common["db"]
            return cls(RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in target["cluster"]],
                                    ssl=target["ssl"], socket_connect_timeout=5.0, **common), tag)
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
        """The decoded reply of ``call`` (redis-py's ResponseError is raised). A Redis without
        our library (restarted empty, or a replica promoted before it had synchronised) gets it
        loaded, and the call is sent again, as the servers do on a reconnection."""
        args = with_tag(call.args, self.tag, call.keyed)
        try:
            return call.decode(self._execute(*args))
        except self._response_error as exc:
            if not str(exc).startswith("Function not found") or self.library_loaded():
                raise
        self.load_library()
        log.warning("Redis had no faktory_fast function library: loaded it")
        return call.decode(self._execute(*args))

    def run_all(self, calls: Sequence[Call[T]]) -> list[T]:
        """The decoded replies of ``calls``, sent in one round trip (a pipeline, not a
        transaction). Build each with the operation's ``Op``, e.g.
        ``Operations.track_get.build(store, jid)``."""
        pipe = self.client.pipeline(transaction=False)
        for call in calls:
            pipe.execute_command(*with_tag(call.args, self.tag, call.keyed))
        return [call.decode(reply) for call, reply in zip(calls, pipe.execute())]


async def ensure_library(conn: RedisConnection) -> None:
    """Load our function library into the Redis behind ``conn`` (a ``redis_client`` connection)
    if it lacks it (``redis_client.connect``'s ``ready`` hook on a reconnection): a Redis restarted
    without its data, or a replica promoted before it had synchronised, does."""
    store = AsyncStore(conn)
    if not await store.library_loaded():
        await store.load_library()
        log.warning("Redis at %s had no faktory_fast function library: loaded it", conn.address)


def process_id() -> str:
    """A name for this server process, unique across restarts and hosts."""
    return f"{os.uname().nodename}:{os.getpid()}:{os.urandom(3).hex()}"
