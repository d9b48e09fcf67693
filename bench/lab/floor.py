"""The floor server: the least a Faktory server in this stack (Python + uvloop + a child Redis)
can do per command while keeping the durability rule, to measure how far faktory_fast is from it.

It speaks just enough of the protocol for the side-by-side scenarios (faktory-load, fwgo-drain,
bench's own push): ``HELLO`` (no password), ``FLUSH``, ``PUSH``, ``FETCH``, ``ACK``, ``FAIL``,
``BEAT``, ``END``; every command is answered after its one Redis command (an acknowledged PUSH is
in the AOF buffer before ``+OK``, as in faktory_fast and Faktory). What it leaves out is
everything else a real server does: no job validation beyond reading the queue and jid, no
``enqueued_at``, priorities, scheduled jobs, retries, batches, pause, quiet workers, statistics
or worker registry, and an empty FETCH polls Redis every 2 ms instead of waiting for a wake-up.

Per job: PUSH = ``LPUSH``, FETCH = one script (pop the first job of the queues, record its
reservation in a hash and its deadline in a sorted set), ACK/FAIL = one script (drop the
reservation, count it). Its Redis is faktory_fast's child Redis (``RedisChild``: same config,
AOF ``everysec``, unix socket).

``--prefetch N`` measures a design that goes below that floor: a FETCH that finds none of a
queue's jobs held in the process takes up to N of them at once (all reserved by one script)
and the next FETCHes of the queue are answered from them, without a Redis round trip.

``--functions`` splits the distance between the floor and faktory_fast: PUSH, FETCH and ACK
go through faktory_fast's own ``jobs.prepare`` and ``AsyncStore`` (its Redis functions
``ff_push``, ``ff_fetch``, ``ff_ack``: the data model a complete server keeps), while the
wire layer stays the floor's (no parking, worker registry, flow control or command table).

    python -m bench.lab.floor -b 127.0.0.1:7419 -d /tmp/floor [--prefetch 20 | --functions]
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import signal
import time
from typing import Any

import orjson
import uvloop

from faktory_fast import jobs
from faktory_fast.codec import wire
from faktory_fast.codec.resp import pack_command
from faktory_fast.master.redis_child import RedisChild
from faktory_fast.storage import redis_client
from faktory_fast.storage.ops.jobs import ACK_PLAIN, Reserved
from faktory_fast.storage.store import AsyncStore

# KEYS: the reservation hash, the deadlines zset, then the queues' lists. ARGV: the deadline.
FETCH_LUA = """
for i = 3, #KEYS do
  local job = redis.call('RPOP', KEYS[i])
  if job then
    local jid = string.match(job, '"jid":"([^"]*)"') or ''
    redis.call('HSET', KEYS[1], jid, job)
    redis.call('ZADD', KEYS[2], ARGV[1], jid)
    return job
  end
end
return false
"""
# --prefetch: KEYS: the reservation hash, the deadlines zset, one queue. ARGV: how many, the
# deadline. Pops up to that many jobs and reserves them all (for this process to hand out).
HOLD_LUA = """
local jobs = redis.call('RPOP', KEYS[3], ARGV[1])
if not jobs then return {} end
for _, job in ipairs(jobs) do
  local jid = string.match(job, '"jid":"([^"]*)"') or ''
  redis.call('HSET', KEYS[1], jid, job)
  redis.call('ZADD', KEYS[2], ARGV[2], jid)
end
return jobs
"""
# KEYS: the reservation hash, the deadlines zset, the counter. ARGV: the jid.
DONE_LUA = """
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('INCR', KEYS[3])
"""
EMPTY_POLL = 0.002  # seconds between looks of an empty FETCH
EMPTY_AFTER = 2.0  # seconds an empty FETCH waits before answering nil, as Faktory
RESERVE = 1800  # seconds
RES, WORKING = "res", "working"  # the floor's reservation hash and deadlines zset (KEYS 1, 2)

class Client(asyncio.Protocol):
    """One client connection: a line in, one Redis command, its answer out."""

    redis: redis_client.RedisConnection  # pipelined: the commands of a loop iteration leave in one write
    fetch_sha = ""
    done_sha = ""
    hold_sha = ""
    prefetch = 0  # --prefetch: jobs a FETCH takes from a queue at once, held here (0: off)
    held: dict[str, collections.deque[bytes]] = {}  # queue key -> jobs reserved, not handed out
    store: AsyncStore | None = None  # --functions: faktory_fast's store and Redis functions

    def __init__(self) -> None:
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.reply(b'+HI {"v":2}\r\n')

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            line, sep, rest = self.buf.partition(b"\n")
            if not sep:
                return
            self.buf = rest
            self.command(line.rstrip(b"\r"))

    def reply(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def redis_call(self, then: Any, *args: Any) -> None:
        self.redis.send_cb(then, pack_command(*args))

    def ok(self, reply: Any) -> None:
        self.reply(wire.error(str(reply)) if isinstance(reply, Exception) else wire.OK)

    def command(self, line: bytes) -> None:
        verb, _, arg = line.partition(b" ")
        if self.store is not None and verb in (b"PUSH", b"FETCH", b"ACK"):
            self.functions(verb, arg)
        elif verb == b"PUSH":
            job = orjson.loads(arg)
            self.redis_call(self.ok, "LPUSH", "q:" + job.get("queue", "default"), arg)
        elif verb == b"FETCH":
            queues = ["q:" + q for q in arg.decode().split()] or ["q:default"]
            if self.prefetch:
                self.fetch_held(queues, 0, time.monotonic() + EMPTY_AFTER)
            else:
                self.fetch(queues, time.monotonic() + EMPTY_AFTER)
        elif verb in (b"ACK", b"FAIL"):
            jid = orjson.loads(arg)["jid"]
            counter = "processed" if verb == b"ACK" else "failures"
            self.redis_call(self.ok, "EVALSHA", self.done_sha, 3, RES, WORKING, counter, jid)
        elif verb == b"FLUSH":
            self.held.clear()
            self.redis_call(self.ok, "FLUSHDB")
        elif verb in (b"HELLO", b"BEAT"):
            self.reply(wire.OK)
        elif verb == b"END":
            if self.transport is not None:
                self.transport.close()
        else:
            self.reply(wire.error("unknown command"))

    def functions(self, verb: bytes, arg: bytes) -> None:
        """--functions: the command through faktory_fast's store (one FCALL each)."""
        store = self.store
        assert store is not None
        if verb == b"PUSH":
            try:
                job = jobs.prepare(orjson.loads(arg), time.time_ns())
            except jobs.JobError as exc:
                self.reply(wire.error(str(exc)))
                return
            store.push_then(job, self.ok)
        elif verb == b"ACK":  # plain: the scenarios' jobs have no custom object
            store.ack_then(orjson.loads(arg)["jid"], jobs.today(), ACK_PLAIN, self.ok)
        else:
            self.fetch_functions(arg.decode().split() or ["default"],
                                 time.monotonic() + EMPTY_AFTER)

    def fetch_functions(self, queues: list[str], until: float) -> None:
        def then(found: Any) -> None:
            self.answer_fetch(found.job if type(found) is Reserved else found,
                              self.fetch_functions, queues, until)

        assert self.store is not None
        self.store.fetch_then("", "floor", jobs.now_score(), RESERVE, queues, then)

    def answer_fetch(self, job: Any, again: Any, *args: Any) -> None:
        """A FETCH's answer from Redis: the job (bytes), an error, or no job yet (``empty``,
        which calls ``again(*args)`` while the FETCH may still wait)."""
        if isinstance(job, bytes):
            self.reply(wire.bulk(job))
        elif isinstance(job, Exception):
            self.reply(wire.error(str(job)))
        else:
            self.empty(again, *args)

    def empty(self, again: Any, *args: Any) -> None:
        """No job for a FETCH: nil once its wait (``args[-1]``, the deadline) is over, else
        ``again(*args)`` after EMPTY_POLL."""
        if time.monotonic() >= args[-1]:
            self.reply(wire.NIL)
        else:
            asyncio.get_running_loop().call_later(EMPTY_POLL, again, *args)

    def fetch(self, queues: list[str], until: float) -> None:
        def then(job: Any) -> None:
            self.answer_fetch(job, self.fetch, queues, until)

        self.redis_call(then, "EVALSHA", self.fetch_sha, 2 + len(queues), RES, WORKING, *queues,
                        int(time.time()) + RESERVE)

    def fetch_held(self, queues: list[str], first: int, until: float) -> None:
        """--prefetch: the first queue (from ``queues[first]`` on) with a job held here gives
        it; a queue with none held takes up to ``prefetch`` of its jobs from Redis first (one
        call, all reserved at once), so most FETCHes answer without a Redis round trip."""
        for i in range(first, len(queues)):
            held = self.held.get(queues[i])
            if held:
                self.reply(wire.bulk(held.popleft()))
                return

            def then(jobs: Any, i: int = i) -> None:
                if isinstance(jobs, Exception):
                    self.reply(wire.error(str(jobs)))
                elif jobs:
                    self.held.setdefault(queues[i], collections.deque()).extend(jobs)
                    self.fetch_held(queues, i, until)
                else:
                    self.fetch_held(queues, i + 1, until)
            self.redis_call(then, "EVALSHA", self.hold_sha, 3, RES, WORKING, queues[i],
                            self.prefetch, int(time.time()) + RESERVE)
            return
        self.empty(self.fetch_held, queues, 0, until)


async def serve(bind: str, data_dir: str, prefetch: int = 0, functions: bool = False) -> None:
    """Start the child Redis, load the scripts, serve ``bind`` until SIGTERM/SIGINT."""
    child = RedisChild(data_dir)
    child.start()
    try:
        loop = asyncio.get_running_loop()
        redis = await redis_client.connect(child.url)
        for name, lua in (("fetch_sha", FETCH_LUA), ("done_sha", DONE_LUA), ("hold_sha", HOLD_LUA)):
            sha = (await redis.execute("SCRIPT", "LOAD", lua)).decode()
            assert sha == hashlib.sha1(lua.encode()).hexdigest()
            setattr(Client, name, sha)
        Client.redis = redis
        Client.prefetch = prefetch
        if functions:
            Client.store = AsyncStore(redis)
            await Client.store.load_library()
        host, _, port = bind.rpartition(":")
        server = await loop.create_server(Client, host or "127.0.0.1", int(port))
        stop = loop.create_future()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set_result, None)
        await stop
        server.close()
    finally:
        child.stop()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.lab.floor", description=__doc__.split("\n\n")[0])
    p.add_argument("-b", "--bind", default="127.0.0.1:7419", help="host:port (default 127.0.0.1:7419)")
    p.add_argument("-d", "--data", required=True, help="directory of its child Redis")
    p.add_argument("--prefetch", type=int, default=0, metavar="N",
                   help="a FETCH takes up to N jobs of a queue at once, all reserved, and the "
                        "next FETCHes are answered from them (default 0: one Redis call a FETCH)")
    p.add_argument("--functions", action="store_true",
                   help="PUSH, FETCH and ACK through faktory_fast's jobs.prepare and Redis "
                        "functions (its data model behind the floor's wire layer)")
    args = p.parse_args()
    if args.functions and args.prefetch:
        p.error("--functions and --prefetch measure different things: give one")
    uvloop.run(serve(args.bind, args.data, args.prefetch, args.functions))


if __name__ == "__main__":
    main()
