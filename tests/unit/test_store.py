"""The Redis function library (lua/) through Store, on a real child Redis."""
from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import orjson
import pytest
import redis as redislib

from faktory_fast import jobs
from faktory_fast.master.redis_child import RedisChild
from faktory_fast.storage import keys, redis_client
from faktory_fast.storage.fcall import Call, Outcome, as_none
from faktory_fast.storage.ops.jobs import ACK_HOOKS, ACK_PLAIN, ACK_RECORD, Fetched, Reserved
from faktory_fast.storage.ops.queues import MUTATE_PAGE
from faktory_fast.storage.store import AsyncStore, Operations, SyncStore
from faktory_fast.web import bounded
from tests.support import slow_redis_calls

NOW = "1767225600.000000000"
LATER = "1767229200.000000000"


def push(store: SyncStore, queue: str = "default", priority: int = 5, at: str = "", **fields: object) -> str:
    job = {"jid": os.urandom(8).hex(), "jobtype": "T", "args": [], "queue": queue, **fields}
    if priority != 5:
        job["priority"] = priority
    p = jobs.prepare(job, 1_767_225_600_000_000_000)
    if at:
        p.at_score = at
    store.push([p])
    return p.jid


def fetch(store: SyncStore, *queues: str, wid: str = "") -> object:
    return store.fetch(wid, "proc1", NOW, 1800, queues or ("default",))


def jid_of(res: object) -> str:
    assert isinstance(res, Reserved), res
    return orjson.loads(res[0])["jid"]


def test_redis_has_no_tcp_port_and_socket_is_private(redis_child: RedisChild, r: redislib.Redis) -> None:
    assert r.config_get("port")["port"] == "0"
    assert r.config_get("appendonly")["appendonly"] == "yes"
    assert r.config_get("appendfsync")["appendfsync"] == "everysec"
    assert oct(os.stat(redis_child.socket_path).st_mode & 0o777) == "0o700"


def test_push_fetch_reserves(store: SyncStore, r: redislib.Redis) -> None:
    jid = push(store)
    assert r.smembers(keys.QUEUES) == {b"default"}
    res = fetch(store)
    assert jid_of(res) == jid and res[2] == jid.encode()
    assert r.zscore(keys.WORKING, jid) == pytest.approx(float(NOW) + 1800)
    record = orjson.loads(r.hget(keys.RESERVATIONS, jid))
    assert record["rid"] == res[1] and record["job"]["jid"] == jid
    assert fetch(store) is Fetched.EMPTY
    assert r.smembers(keys.waiters("default")) == {b"proc1"}


def test_reserve_for_is_clamped(store: SyncStore, r: redislib.Redis) -> None:
    a = push(store, reserve_for=5)
    b = push(store, reserve_for=7200)
    fetch(store), fetch(store)
    assert r.zscore(keys.WORKING, a) == pytest.approx(float(NOW) + 60)
    assert r.zscore(keys.WORKING, b) == pytest.approx(float(NOW) + 7200)


def test_strict_queue_order_and_fifo(store: SyncStore) -> None:
    low1, low2 = push(store, "low"), push(store, "low")
    high = push(store, "high")
    assert jid_of(fetch(store, "high", "low")) == high
    assert jid_of(fetch(store, "high", "low")) == low1
    assert jid_of(fetch(store, "high", "low")) == low2


def test_priorities_within_a_queue(store: SyncStore, r: redislib.Redis) -> None:
    normal = push(store)
    low = push(store, priority=1)
    urgent = push(store, priority=9)
    urgent2 = push(store, priority=9)
    assert r.llen("q:default:p9") == 2 and r.llen("q:default") == 1
    assert store.info()["queues"] == {"default": 4}
    order = [jid_of(fetch(store)) for _ in range(4)]
    assert order == [urgent, urgent2, normal, low]
    assert not r.sismember(keys.PRIORITY_QUEUES, "default") or fetch(store) is Fetched.EMPTY


def test_paused_and_quiet(store: SyncStore, r: redislib.Redis) -> None:
    push(store, "a")
    store.queue_op("PAUSE", ["a", "never-seen"])
    assert r.smembers(keys.PAUSED) == {b"a"}
    assert fetch(store, "a") is Fetched.ALL_PAUSED
    assert fetch(store, "a", "b") is Fetched.SOME_PAUSED
    store.queue_op("RESUME", ["*"])
    store.hello("p", 100, "w1", "host", 1, b"[]", 2, NOW)
    store.signal_workers("quiet", ["w1"])
    assert fetch(store, "a", wid="w1") is Fetched.QUIET
    assert isinstance(fetch(store, "a", wid="w2"), Reserved)
    # A quiet worker stays quiet across FLUSH (FETCH's fast path looks at ff:quiet first).
    store.flush()
    push(store, "a")
    assert r.smembers(keys.QUIET_WORKERS) == {b"w1"}
    assert fetch(store, "a", wid="w1") is Fetched.QUIET
    assert isinstance(fetch(store, "a", wid="w2"), Reserved)


def test_ack_and_counters(store: SyncStore, r: redislib.Redis, redis_child: RedisChild) -> None:
    jid = push(store)
    fetch(store)
    assert store.ack(jid, "2026-01-01") is Outcome.DONE
    assert store.ack(jid, "2026-01-01") is Outcome.GONE
    second = push(store)
    fetch(store)
    replies: list = []

    async def ack_then() -> None:  # the callback form, as the server uses
        conn = await redis_client.connect(redis_child.url)
        # plain: the server fetched the job itself and saw no custom object (no read first)
        AsyncStore(conn).ack_then(second, "2026-01-01", ACK_PLAIN, replies.append)
        AsyncStore(conn).ack_then(second, "2026-01-01", ACK_PLAIN, replies.append)
        AsyncStore(conn).ack_then(jid, "2026-01-01", ACK_HOOKS, replies.append)
        await conn.execute("PING")  # answered after the ACKs: their replies are in
        conn.close()
        await conn.closed

    asyncio.run(ack_then())
    assert replies == [Outcome.DONE, Outcome.GONE, Outcome.GONE]
    assert r.get(keys.PROCESSED) == b"2" and r.get("processed:2026-01-01") == b"2"
    assert r.zcard(keys.WORKING) == 0 and r.hlen(keys.RESERVATIONS) == 0


def test_an_ack_of_a_job_reserved_elsewhere_returns_its_record(
        store: SyncStore, r: redislib.Redis, redis_child: RedisChild) -> None:
    """ACK_RECORD (the job was reserved by another process): the reservation's record comes
    back in place of DONE, alone and in a group; GONE is still GONE."""
    jids = [push(store) for _ in range(3)]
    for _ in jids:
        fetch(store, wid="w1")
    records = {j: r.hget(keys.RESERVATIONS, j) for j in jids}
    replies: list = []

    async def acks() -> None:
        conn = await redis_client.connect(redis_child.url)
        s = AsyncStore(conn)
        s.ack_then(jids[0], "2026-01-01", ACK_RECORD, replies.append)
        await conn.execute("PING")  # the first ACK alone in its turn
        s.ack_then(jids[1], "2026-01-01", ACK_RECORD, replies.append)
        s.ack_then(jids[2], "2026-01-01", ACK_PLAIN, replies.append)
        s.ack_then(jids[1], "2026-01-01", ACK_RECORD, replies.append)  # gone by then
        await conn.execute("PING")
        conn.close()
        await conn.closed

    asyncio.run(acks())
    assert replies == [records[jids[0]], records[jids[1]], Outcome.DONE, Outcome.GONE]
    assert orjson.loads(replies[0])["job"]["jid"] == jids[0]
    assert r.get(keys.PROCESSED) == b"3" and r.hlen(keys.RESERVATIONS) == 0


def test_one_ff_ack_of_many_counts_each_reservation_once(store: SyncStore,
                                                          r: redislib.Redis) -> None:
    """ff_ack deletes its plain ACKs' reservations together: an unknown jid among them is
    GONE, a jid ACKed twice in one call (plain both times, or plain and then not) is DONE
    once, and the counters count each reservation once."""
    jids = [push(store) for _ in range(4)]
    for _ in jids:
        fetch(store)
    acks = [(jids[0], True), ("nosuchjid", True), (jids[0], True), (jids[1], True),
            (jids[1], False), (jids[2], False), (jids[2], True), (jids[3], True)]
    out = store.ack_all(acks, "2026-01-01")
    assert out[:5] + out[7:] == [Outcome.DONE, Outcome.GONE, Outcome.GONE, Outcome.DONE,
                                 Outcome.GONE, Outcome.DONE]
    assert {out[5], out[6]} == {Outcome.DONE, Outcome.GONE}  # (the plain ones go first)
    assert r.get(keys.PROCESSED) == b"4" and r.get("processed:2026-01-01") == b"4"
    assert r.zcard(keys.WORKING) == 0 and r.hlen(keys.RESERVATIONS) == 0
    # All found: the quick way (one HDEL) answers each DONE
    jids = [push(store) for _ in range(3)]
    for _ in jids:
        fetch(store)
    assert store.ack_all([(j, True) for j in jids], "2026-01-01") == [Outcome.DONE] * 3
    assert r.get(keys.PROCESSED) == b"7" and r.zcard(keys.WORKING) == 0


def test_fail_needs_the_current_token(store: SyncStore, r: redislib.Redis) -> None:
    jid = push(store)
    res = fetch(store)
    rid = res[1]
    stale = store.fail(jid, rid + 1000, "2026-01-01", "retry", b"{}", LATER)
    assert stale.outcome is Outcome.CHANGED and orjson.loads(stale.record)["rid"] == rid
    assert store.fail(jid, None, "2026-01-01", "", b"", "").outcome is Outcome.CHANGED
    assert store.fail(jid, rid, "2026-01-01", "retry", b'{"x":1}', LATER).outcome is Outcome.DONE
    assert r.zrange(keys.RETRIES, 0, -1, withscores=True) == [(b'{"x":1}', float(LATER))]
    assert r.get(keys.FAILURES) == b"1" and r.get(keys.PROCESSED) == b"1"
    assert store.fail(jid, rid, "2026-01-01", "retry", b"{}", LATER).outcome is Outcome.GONE


def test_expired_and_enqueue_from(store: SyncStore, r: redislib.Redis) -> None:
    jid = push(store, reserve_for=60)
    fetch(store)
    assert store.expired(NOW, 10) == []
    records = store.expired("1767225661", 10)
    assert [(j.decode(), orjson.loads(x)["job"]["jid"]) for j, x in records] == [(jid, jid)]
    member = r.zrange(keys.SCHEDULED, 0, -1)
    assert member == []
    push(store, at=NOW)
    due = store.due(keys.SCHEDULED, LATER, 10)
    assert len(due) == 1
    moves = [(due[0], "default", 5, b'{"jid":"moved"}')]
    assert store.enqueue_from(keys.SCHEDULED, moves) == 1
    assert store.enqueue_from(keys.SCHEDULED, moves) == 0  # never twice
    assert r.lrange("q:default", 0, -1) == [b'{"jid":"moved"}']


def test_push_wakes_registered_processes(store: SyncStore, r: redislib.Redis) -> None:
    assert fetch(store, "wq") is Fetched.EMPTY
    pubsub = r.pubsub()
    pubsub.subscribe(keys.wake_channel("proc1"))
    assert pubsub.get_message(timeout=2)["type"] == "subscribe"
    push(store, "wq")
    msg = pubsub.get_message(timeout=2)
    assert msg["data"] == b"wq"
    assert not r.exists(keys.waiters("wq"))
    pubsub.close()


def test_workers_hello_beat_bye_reap(store: SyncStore, r: redislib.Redis) -> None:
    assert store.hello("p1", 3, "w1", "host", 42, b'["x"]', 2, NOW) is None
    assert store.hello("p2", 3, "w1", "other", 43, b"[]", 2, NOW) is None
    assert store.hello("p2", 3, "", "", 0, b"[]", 2, NOW) is None
    assert store.hello("p2", 3, "w2", "", 0, b"[]", 2, NOW) == 4  # over the cap
    w = store.workers()
    assert len(w) == 1 and w[0]["hostname"] == "host" and w[0]["conns"] == "2"
    assert store.beat("w1", LATER, "", 100) == "running"
    assert store.beat("w1", LATER, "terminate", None) == "terminate"
    assert store.beat("w1", LATER, "quiet", None) == "terminate"  # never backwards
    assert store.beat("nobody", LATER, "", None) is None
    store.bye("p1", "w1")
    assert store.beat("w1", LATER, "", None) == "terminate"
    assert r.smembers(keys.QUIET_WORKERS) == {b"w1"}
    store.bye("p2", "w1")
    assert store.beat("w1", LATER, "", None) is None
    assert not r.exists(keys.QUIET_WORKERS)  # gone with the worker
    store.hello("p1", 10, "w3", "h", 1, b"[]", 2, NOW)
    store.signal_workers("terminate", ["*"])
    assert r.smembers(keys.QUIET_WORKERS) == {b"w3"}
    assert store.reap_workers(LATER) == 1 and store.workers() == []
    assert not r.exists(keys.QUIET_WORKERS)


def test_flush_keeps_the_live_registry(store: SyncStore, r: redislib.Redis) -> None:
    store.hello("p1", 10, "w1", "h", 1, b"[]", 2, NOW)
    push(store)
    store.flush()
    assert r.llen("q:default") == 0 and not r.exists(keys.QUEUES)
    assert store.beat("w1", LATER, "", None) == "running"
    assert store.info()["connections"] == 1


def test_queue_remove_and_heads(store: SyncStore, r: redislib.Redis) -> None:
    push(store, "x")
    push(store, "x", priority=2)
    heads = store.queue_heads(["x", "nope"])
    assert len(heads[0]) == 2 and heads[1] == []
    store.queue_op("REMOVE", ["x"])
    assert store.info()["queues"] == {} and r.keys("q:*") == []


def test_mutate_filters_and_commands(store: SyncStore, r: redislib.Redis) -> None:
    j1 = push(store, at=LATER)
    j2 = push(store, at=LATER)
    r.zadd(keys.SCHEDULED, {orjson.dumps({"jid": "other123", "jobtype": "Other", "queue": "q2", "args": []}): 1})
    assert store.mutate("kill", keys.SCHEDULED, LATER, "jids", "", [j1, "nosuchjid"]) == ("0", 1)
    assert [orjson.loads(m)["jid"] for m in r.zrange(keys.DEAD, 0, -1)] == [j1]
    # requeue: the entries ff_mutate_select finds, moved by jobs.requeue's rule
    cursor, selected = store.mutate_select(keys.SCHEDULED, "glob", '*"jobtype":"Other"*', [])
    assert cursor == "0"  # a small set: one page
    moves, refused = jobs.requeue_moves(selected, 1_767_225_600_000_000_000)
    assert store.enqueue_from(keys.SCHEDULED, moves) == 1 and refused == []
    assert r.llen("q:q2") == 1 and r.zcard(keys.SCHEDULED) == 1
    store.mutate("discard", keys.SCHEDULED, LATER, "glob", "*", ['"jobtype":"Nope"'])
    assert r.zcard(keys.SCHEDULED) == 1
    store.mutate("discard", keys.SCHEDULED, LATER, "glob", "*", ['"jobtype":"T"'])
    assert r.zcard(keys.SCHEDULED) == 0
    store.mutate("clear", keys.DEAD, LATER, "all", "", [])
    assert r.zcard(keys.DEAD) == 0 and j2


def test_mutate_works_a_page_a_call(store: SyncStore, r: redislib.Redis) -> None:
    """A big set is looked at a page (ops.queues.MUTATE_PAGE entries) a call, the caller following
    the cursor; a jids filter costs one look-up per entry, however many jids it names."""
    members = {orjson.dumps({"jid": f"j{i:05d}", "jobtype": "T", "queue": "q", "args": [i]}): i
               for i in range(3 * MUTATE_PAGE)}
    r.zadd(keys.RETRIES, members)
    wanted = [f"j{i:05d}" for i in range(0, len(members), 2)] + [f"x{i}" for i in range(5000)]
    cursor, calls, killed = "0", 0, 0
    while True:
        cursor, n = store.mutate("kill", keys.RETRIES, LATER, "jids", "", wanted, cursor)
        calls, killed = calls + 1, killed + n
        if cursor == "0":
            break
    assert calls >= 3 and killed == len(members) // 2 == r.zcard(keys.DEAD)
    assert sorted(orjson.loads(m)["jid"] for m in r.zrange(keys.DEAD, 0, -1)) == sorted(
        j for j in wanted if j.startswith("j"))


def test_a_turns_pushes_and_acks_go_as_one_call_each(store: SyncStore, r: redislib.Redis,
                                                      redis_child: RedisChild) -> None:
    """Group commit: the PUSHes a server process has in one turn of its loop go to Redis as one
    ff_push, its FETCHes as one ff_fetch, its ACKs as one ff_ack per day; each caller gets
    its own answer (a refused duplicate its NOTUNIQUE, a FETCH of an empty queue EMPTY, an
    unknown jid GONE); jobs keep their order in the queue and FETCHes theirs."""
    def prepared(i: int, **fields: object) -> jobs.Prepared:
        return jobs.prepare({"jid": f"group{i:03d}", "jobtype": "T", "args": [i], **fields},
                            1_767_225_600_000_000_000)
    batch = [prepared(i) for i in range(5)]
    batch += [prepared(5, custom={"unique_for": 60}),
              prepared(6, args=[5], custom={"unique_for": 60})]  # a duplicate of the one before
    pushed: list = []
    acked: list = []

    def fcalls() -> int:
        return r.info("commandstats").get("cmdstat_fcall", {}).get("calls", 0)

    async def turn(send: Callable[[AsyncStore], None]) -> int:
        conn = await redis_client.connect(redis_child.url)
        async_store = AsyncStore(conn)
        before = fcalls()
        send(async_store)
        await conn.execute("PING")  # answered after the turn's calls
        conn.close()
        await conn.closed
        return fcalls() - before

    def push_all(s: AsyncStore) -> None:
        for p in batch:
            s.push_then(p, pushed.append)

    assert asyncio.run(turn(push_all)) == 1
    assert pushed[:6] == [1] * 6 and str(pushed[6]) == "Job not unique"
    assert [orjson.loads(j)["jid"] for j in r.lrange(keys.queue("default"), 0, -1)][::-1] == [
        p.jid for p in batch[:6]]
    found: list = []

    def fetch_all(s: AsyncStore) -> None:  # in order: the first FETCHes get the oldest jobs
        for i in range(6):
            s.fetch_then(f"w{i}", "proc1", NOW, 1800, ["empty", "default"], found.append)
        s.fetch_then("w6", "proc1", NOW, 1800, ["empty"], found.append)

    assert asyncio.run(turn(fetch_all)) == 1
    assert [f[2].decode() for f in found[:6]] == [p.jid for p in batch[:6]]
    # each reservation is its own worker's, with its own token (one call wrote them all)
    records = [orjson.loads(r.hget(keys.RESERVATIONS, p.jid)) for p in batch[:6]]
    assert [rec["wid"] for rec in records] == [f"w{i}" for i in range(6)]
    assert [rec["rid"] for rec in records] == [f[1] for f in found[:6]] == sorted(
        {f[1] for f in found[:6]})
    assert found[6] is Fetched.EMPTY and r.smembers(keys.waiters("empty")) == {b"proc1"}

    def ack_all(s: AsyncStore) -> None:
        for p in batch[:6]:
            s.ack_then(p.jid, "2026-01-01", ACK_PLAIN if p.plain else ACK_HOOKS, acked.append)
        s.ack_then("nosuchjid", "2026-01-01", ACK_PLAIN, acked.append)
        s.ack_then(batch[0].jid, "2026-01-02", ACK_PLAIN, acked.append)  # another day: its own call

    assert asyncio.run(turn(ack_all)) == 2
    assert acked == [Outcome.DONE] * 6 + [Outcome.GONE, Outcome.GONE]
    assert r.get(keys.PROCESSED) == b"6" and r.get("processed:2026-01-01") == b"6"
    assert r.zcard(keys.WORKING) == 0 and r.hlen(keys.RESERVATIONS) == 0
    assert r.hlen(keys.UNIQUE_NAMES) == 0  # the unique job's lock went with its ACK


def test_a_command_gathered_while_the_gatherers_send_leaves_in_the_next_write(
        redis_child: RedisChild) -> None:
    """A gatherer that holds a command again while the gatherers send (an error answered at
    once can bring the next command) gets another flush: nothing waits for an unrelated
    command to leave."""
    async def run() -> list[object]:
        conn = await redis_client.connect(redis_child.url)
        held: list[int] = [1]  # commands the gatherer holds
        replies: list[object] = []
        second = asyncio.get_running_loop().create_future()

        def gatherer() -> None:
            while held:
                n = held.pop()
                conn.send_cb(lambda reply, n=n: (replies.append((n, reply)),
                                                 n == 2 and second.set_result(None)),
                             b"*1\r\n$4\r\nPING\r\n")
                if n == 1:  # while sending: hold another one, and say so
                    held.append(2)
                    conn.wake()
                    break

        conn.gather(gatherer)
        conn.wake()
        await asyncio.wait_for(second, 5)
        conn.close()
        await conn.closed
        return replies

    assert asyncio.run(run()) == [(1, b"PONG"), (2, b"PONG")]


def test_ten_thousand_workers_are_read_a_page_a_call(store: SyncStore,
                                                      r: redislib.Redis) -> None:
    """The workers, "quiet all" and the worker reaper look at a page of the registry per
    Redis call: 10,000 workers never hold Redis for 50 ms (ff_workers alone took ~100 ms)."""
    n = 10_000
    store.run_all([Operations.hello.build(store, "p1", 100_000, f"w{i:05d}", "host", i, b"[]",
                                          2, NOW) for i in range(n)])
    with slow_redis_calls(r, 50) as slow:
        listed = store.workers()
        quieted = store.signal_workers("quiet", ["*"])
        reaped = store.reap_workers(jobs.score(2_000_000_000 * 10**9))
    assert slow == []
    assert sorted(w["wid"] for w in listed) == [f"w{i:05d}" for i in range(n)]
    assert quieted == n and reaped == n and r.zcard(keys.WORKER_BEATS) == 0


def test_queue_commands_over_ten_thousand_queues_hold_redis_briefly(store: SyncStore,
                                                                     r: redislib.Redis) -> None:
    """INFO, the web UI's queue list, QUEUE PAUSE/RESUME/REMOVE * and QUEUE LATENCY of every
    queue look at a page of queues per Redis call (ff_info took ~120 ms with 10,000 queues,
    the queue list ~280 ms)."""
    names = [f"q{i:05d}" for i in range(10_000)]
    store.push([jobs.prepare({"jid": f"job{i:05d}", "jobtype": "T", "args": [], "queue": q},
                             1_767_225_600_000_000_000) for i, q in enumerate(names)])
    with slow_redis_calls(r, 50) as slow:
        info = store.info()
        listed = store.queue_list()
        assert store.queue_op("PAUSE", ["*"]) == len(names)
        paused = r.scard(keys.PAUSED)
        heads = store.queue_heads(names)
        assert store.queue_op("REMOVE", ["*"]) == len(names)
    assert slow == []
    assert info["queues"] == dict.fromkeys(names, 1)
    assert sorted(q[0] for q in listed) == names and paused == len(names)
    assert [len(h) for h in heads] == [1] * len(names)
    assert r.scard(keys.QUEUES) == 0 and r.keys("q:*") == []


def test_throttle_usage_reads_the_lock_sets_a_page_a_call(store: SyncStore,
                                                          r: redislib.Redis) -> None:
    """A per-worker throttle's use is summed over pages of the lock sets (20,000 workers each
    holding a lock: one call counting them all held Redis for tens of ms)."""
    r.hset(keys.THROTTLES, mapping={"tq": "worker 2 60", "cq": "concurrency 5 60"})
    lapse = 4_000_000_000
    pipe = r.pipeline(transaction=False)
    for i in range(20_000):
        pipe.zadd(keys.throttle_lock("tq", f"w{i}"), {f"job{i}": lapse})
        pipe.zadd(keys.THROTTLE_LAPSES, {keys.throttle_lock("tq", f"w{i}"): lapse})
    pipe.zadd(keys.throttle_lock("cq"), {"a": lapse, "b": lapse})
    pipe.execute()
    push(store, "tq")
    with slow_redis_calls(r, 50) as slow:
        usage = {t.queue: t for t in store.throttle_usage()}
    assert slow == []
    assert usage["tq"][4:] == (20_000, 20_000, 1) and usage["cq"][4:] == (2, 0, 0)


def test_migrates_faktory_reservations(store: SyncStore, r: redislib.Redis) -> None:
    job = {"jid": "legacy01", "jobtype": "T", "args": [], "queue": "default"}
    member = orjson.dumps({"job": job, "reserved_at": "x", "expires_at": "y", "wid": "w"})
    r.zadd(keys.WORKING, {member: 1767225600.5})
    legacy = store.legacy_reservations()
    assert legacy == [(member, 1767225600.5)]
    store.migrate_reservation(member, "legacy01", b'{"rid":0,"job":{}}', 1767225600.5)
    assert r.zrange(keys.WORKING, 0, -1) == [b"legacy01"]
    assert store.legacy_reservations() == []


@pytest.mark.parametrize("fields", [
    {"jid": 'with"quote\\s'},  # escaped characters: the fast path must not guess
    {"jid": "plainjid1", "custom": {"jid": "decoy"}},  # a custom "jid" is not the job's
    {"jid": "plainjid2", "args": [{"reserve_for": 5}]},  # a nested reserve_for is not the job's
])
def test_fetch_finds_the_real_jid(store: SyncStore, r: redislib.Redis, fields: dict) -> None:
    job = {"jobtype": "T", "args": [], "queue": "default", **fields}
    store.push([jobs.prepare(job, 1_767_225_600_000_000_000)])
    res = fetch(store)
    assert res[2].decode() == fields["jid"]
    assert r.zscore(keys.WORKING, fields["jid"]) == pytest.approx(float(NOW) + 1800)


def test_declared_keys_let_an_acl_refuse_before_any_write(redis_child: RedisChild,
                                                           store: SyncStore,
                                                           r: redislib.Redis) -> None:
    """Every FCALL declares the keys it touches: a Redis user whose ACL key patterns leave out
    one of them (here the dead set) is refused before the function runs, so nothing is half
    done (undeclared, the function would run until it reached that key)."""
    jid = push(store)
    reserved = fetch(store)
    assert isinstance(reserved, Reserved)
    patterns = ["~q:*", "~ff:*", "~queues", "~paused", "~scheduled", "~retries", "~working",
                "~processed*", "~failures*"]
    r.acl_setuser("limited", enabled=True, passwords=["+pw"], keys=patterns,
                  commands=["+@all"])
    try:
        limited = SyncStore(redislib.Redis(unix_socket_path=redis_child.socket_path,
                                           username="limited", password="pw"))
        with pytest.raises(redislib.exceptions.NoPermissionError):
            limited.fail(jid, reserved.token, "2026-01-01", "dead", b'{"x":1}', LATER)
        assert r.hexists(keys.RESERVATIONS, jid) and r.zscore(keys.WORKING, jid) is not None
        assert r.get(keys.FAILURES) is None and r.zcard(keys.DEAD) == 0
        assert limited.ack(jid, "2026-01-01") is Outcome.DONE  # what the patterns allow works
        limited.client.close()
    finally:
        r.acl_deluser("limited")


def test_push_to_a_parked_fetch(store: SyncStore, r: redislib.Redis) -> None:
    """ff_push_to reserves the job for the waiting worker when its queue is empty, and
    enqueues it as a PUSH would when the queue has jobs, is paused or the worker is quiet."""
    def prepared(queue: str = "hq", **fields: object) -> jobs.Prepared:
        return jobs.prepare({"jid": os.urandom(8).hex(), "jobtype": "T", "args": [], "queue": queue,
                             **fields}, 1_767_225_600_000_000_000)

    p = prepared(reserve_for=120)
    res = store.push_to(p, "w1", NOW, 1800)
    assert isinstance(res, Reserved) and res.jid == p.jid.encode() and res.job == p.payload
    record = orjson.loads(r.hget(keys.RESERVATIONS, p.jid))
    assert record["wid"] == "w1" and record["rid"] == res.token
    assert r.zscore(keys.WORKING, p.jid) == float(NOW) + 120  # the job's own reserve_for
    assert r.sismember(keys.QUEUES, "hq") and r.llen(keys.queue("hq")) == 0
    assert store.ack(p.jid, "2026-01-01") is Outcome.DONE

    # The queue has a job meanwhile: FIFO wins, the new job is enqueued behind it.
    first = push(store, "hq")
    second = prepared()
    assert store.push_to(second, "w1", NOW, 1800) is Fetched.EMPTY
    assert jid_of(fetch(store, "hq")) == first and jid_of(fetch(store, "hq")) == second.jid

    store.queue_op("PAUSE", ["hq"])
    paused = prepared()
    assert store.push_to(paused, "w1", NOW, 1800) is Fetched.EMPTY
    assert r.llen(keys.queue("hq")) == 1
    store.queue_op("RESUME", ["hq"])
    assert jid_of(fetch(store, "hq")) == paused.jid

    assert store.hello("proc1", 100, "w2", "host", 1, b"[]", 2, NOW) is None
    store.signal_workers("quiet", ["w2"])
    quiet = prepared()
    assert store.push_to(quiet, "w2", NOW, 1800) is Fetched.EMPTY
    assert jid_of(fetch(store, "hq")) == quiet.jid


def test_a_cron_push_is_a_push_with_the_enterprise_hooks(store: SyncStore, r: redislib.Redis) -> None:
    """ff_cron_push stores its job as ff_push does: a job of a batch is counted in it, a
    unique job's duplicate is refused (and the tick's last run is not recorded)."""
    callback = jobs.prepare({"jid": "cb-000001", "jobtype": "Done", "args": []}, 1_767_225_600_000_000_000)
    assert store.batch_new("b-cron", 1_767_225_600_000_000_000, "cron batch", "",
                           [("complete", callback.payload, "default", 5, callback.jid)]) == ""

    def cron_job(**custom: object) -> jobs.Prepared:
        return jobs.prepare({"jid": os.urandom(8).hex(), "jobtype": "Tick", "args": [1],
                             "queue": "cronq", "custom": custom}, 1_767_225_600_000_000_000)

    assert store.cron_push("e1", 1, 120, cron_job(bid="b-cron")) is True
    assert store.batch_status("b-cron")["total"] == "1"
    assert r.llen(keys.queue("cronq")) == 1

    assert store.cron_push("e2", 1, 120, cron_job(unique_for=60)) is True
    refused = store.cron_push("e2", 2, 120, cron_job(unique_for=60))
    assert isinstance(refused, jobs.JobError) and refused.code == "NOTUNIQUE"
    assert r.llen(keys.queue("cronq")) == 2
    assert r.hget(keys.CRON_LAST, "e2").startswith(b"1 ")


def test_track_reserve_until_extends_a_throttle_lock(store: SyncStore, r: redislib.Redis) -> None:
    """TRACK SET's reserve_until lengthens the reservation and the throttle lock it holds (the
    lock's timeout would otherwise free it while the job still runs); never shortens either."""
    store.set_throttles({"tq": ("concurrency", 1, 60)})
    jid = push(store, "tq", custom={"track": 1})
    assert jid_of(fetch(store, "tq", wid="w1")) == jid
    lock = keys.THROTTLE_PREFIX + "tq"
    assert r.zscore(lock, jid) == float(NOW) + 60
    store.track_set(jid, 50, None, str(float(NOW) + 3600))
    assert r.zscore(keys.WORKING, jid) == float(NOW) + 3600
    assert r.zscore(lock, jid) == float(NOW) + 3600
    store.track_set(jid, 60, None, str(float(NOW) + 120))  # earlier: nothing moves back
    assert r.zscore(lock, jid) == float(NOW) + 3600


def test_throttle_lapsed_wakes_in_steps_and_keeps_the_next_lapse(store: SyncStore,
                                                                r: redislib.Redis) -> None:
    """ff_throttle_lapsed looks at `limit` lock sets a call; a set's lapsed locks go, its next
    lapse is kept for a later round, a set left empty is forgotten; waiters are woken."""
    now = float(NOW)
    for n in range(150):
        lock = keys.throttle_lock("tq", f"w{n}")
        r.zadd(lock, {f"old{n}": now - 1} | ({f"new{n}": now + 30} if n < 10 else {}))
        r.zadd(keys.THROTTLE_LAPSES, {lock: now - 1})
    r.sadd(keys.waiters("tq"), "proc-1")
    assert [store.throttle_lapsed(NOW, 100) for _ in range(3)] == [100, 50, 0]
    assert not r.exists(keys.waiters("tq"))  # woken (and told through its wake channel)
    assert r.zcard(keys.THROTTLE_LAPSES) == 10  # the sets still holding a lock
    assert r.zscore(keys.THROTTLE_LAPSES, keys.throttle_lock("tq", "w3")) == now + 30
    assert r.zrange(keys.throttle_lock("tq", "w3"), 0, -1) == [b"new3"]
    assert not r.exists(keys.throttle_lock("tq", "w42"))


def test_unique_lock_names_keep_digits_and_ignore_member_order(store: SyncStore) -> None:
    """The name of a unique lock whose args hold big numbers is read from their JSON text:
    object members in any order name one lock, a last digit changed names another."""
    big = 1234567890123456789

    def name(args: object) -> str:
        return store.unique_lock("Job", "q", args).key

    args = [{"id": big, "tags": ["x", {"b": 1, "a": [2.5, None, True]}], "s": "{\"]"}, big]
    reordered = [{"s": "{\"]", "tags": ["x", {"a": [2.5, None, True], "b": 1}], "id": big}, big]
    assert name(args) == name(reordered)
    assert name(args) != name([{**args[0], "id": big + 1}, big])  # type: ignore[dict-item]
    assert name([big]) != name([big + 1]) != name([big - 1])
    assert name([1, "x"]) == name([1, "x"])  # small numbers: cjson's name, as before


# -- the web UI's functions: a bounded part a call, the result of one unbounded call ----------

def fcall(r: redislib.Redis, fn: str, keys_: list[str], *args: object) -> object:
    return r.execute_command("FCALL", fn, len(keys_), *keys_, *args)


def test_named_entries_of_one_score_a_page_a_call(store: SyncStore, r: redislib.Redis) -> None:
    """ff_web_set_get/_remove find an entry among members of one score by a binary search
    (its jid first, as jobs are written) or, failing that, by reading them a page a call for
    the jid anywhere (as before: the whole score's members in one call), the caller going on
    from the offset each call returns."""
    def job(jid: str, **more: object) -> bytes:
        return orjson.dumps({"jid": jid, "jobtype": "T", "args": [], **more})

    members = [job(f"j{i:04d}") for i in range(300)]
    odd = orjson.dumps({"jobtype": "T", "jid": "odd", "args": []})  # jid not first
    twin = job("j0150", args=[2])  # two entries of one jid at one score
    r.zadd(keys.RETRIES, {m: 7 for m in (*members, odd, twin)})
    r.zadd(keys.RETRIES, {job("j0150", at="other score"): 8})
    named = [("7", "j0150", ""), ("7", "odd", ""), ("7", "none", ""), ("7", "j0299", "")]
    found, again = fcall(r, "ff_web_set_get", [keys.RETRIES], 20, *(x for e in named for x in e))
    # the first two named: j0150's two by the binary search, then odd's first page of 20
    assert sorted(found[0::2]) == sorted([members[150], twin]) and set(found[1::2]) == {b"7"}
    assert again == [b"7", b"odd", b"1", b"7", b"none", b"", b"7", b"j0299", b""]
    got = bounded.set_entries(store, keys.RETRIES, [(s, j) for s, j, _ in named])
    assert sorted(got) == sorted([(members[150], "7"), (twin, "7"), (odd, "7"),
                                  (members[299], "7")])
    assert bounded.set_remove(store, keys.RETRIES, [("7", "odd"), ("7", "j0001"), ("8", "j0150"),
                                                    ("7", "none")], "99") == 3
    assert r.zcard(keys.RETRIES) == 300 + 2 - 2
    assert sorted(r.zrange(keys.DEAD, 0, -1)) == sorted([odd, members[1],
                                                         job("j0150", at="other score")])


def test_web_filters_and_batch_pages_match_one_unbounded_call(store: SyncStore,
                                                              r: redislib.Redis) -> None:
    """The web UI follows set_filter, batch_page and batch_detail call after call to what one
    call without a per-call bound (the functions' old form) answers; a set's filter, whose
    calls also stop after about 256 KB, to what scanning the set in its ZSCAN order finds."""
    r.zadd(keys.DEAD, {orjson.dumps({"jid": f"d{i:05d}", "jobtype": "T" if i % 3 else "U",
                                     "queue": "q", "args": ["Needle" if i % 997 == 0 else i]}): i
                       for i in range(9000)})
    # ZSCAN's order does not depend on COUNT (it only says how many buckets a call visits)
    order = [(m, repr(float(sc))) for m, sc in r.zscan_iter(keys.DEAD, count=1000)]
    assert len(order) == 9000

    def matches(m: bytes) -> bool:
        return b'"jobtype":"T"' in m and b'"queue":"q"' in m and b"needle" in m.lower()
    for cap, want in ((500, 5), (4000, 5), (20_000, 5), (20_000, 100)):
        cursor, scanned, found = bounded.set_filter(store, keys.DEAD, "0", cap, want, "T", "q",
                                                    "Needle")
        expected = [m for m, _ in order[:scanned] if matches(m)]
        assert [m for m, _ in found] == expected, cap
        assert all(float(sc) == float(orjson.loads(m)["jid"][1:]) for m, sc in found)
        assert (cursor == "0") == (scanned == 9000)
        # it stops at the cap or at `want` matches, not before
        assert scanned >= min(cap, 9000) or len(found) >= want, cap
    assert len(expected) == 6 and scanned == 9000 and cursor == "0"  # all of them, at last
    now = 1_767_225_600_000_000_000
    bids = [f"b-{i:05d}" for i in range(3000)]
    store.run_all([Operations.batch_new.build(store, bid, now + i, f"Import {i}", "", [])
                   for i, bid in enumerate(bids)])
    r.delete(*(keys.batch(bid) for bid in bids[::7]))  # expired: they leave the list
    for offset, count, text, cap in ((0, 26, "", 3000), (2900, 26, "", 5000),
                                     (40, 26, "import 1", 2500), (0, 26, "nothing", 20_000)):
        ended, rows = bounded.batch_page(store, offset, count, text, cap)
        one = fcall(r, "ff_batch_page", [keys.BATCHES, keys.BATCHES_OPEN], 0, offset, count,
                    text, cap, 10**9)
        assert (ended, rows) == (bool(one[2]), [{k.decode(): v.decode() for k, v in zip(
            f[0::2], f[1::2])} for f in one[3]]), (offset, text)
    assert r.zcard(keys.BATCHES) == 3000 - len(bids[::7])
    bid = bids[1]
    r.hset(keys.batch_jobs(bid), mapping={f"j{i:05d}": "dead" if i % 1500 == 0 else "pending"
                                          for i in range(12_000)})
    detail = bounded.batch_detail(store, bid, "0", 100, "dead", 10**9)
    one = fcall(r, "ff_batch_detail", keys_of_batch(bid), bid, "0", 100, "dead", 10**9, 1)
    assert detail is not None and detail.cursor == one[1].decode() == "0"
    assert detail.jobs == {f"j{i:05d}": "dead" for i in range(0, 12_000, 1500)}
    assert detail.jobs == {k.decode(): v.decode() for k, v in zip(one[2][0::2], one[2][1::2])}


def keys_of_batch(bid: str) -> list[str]:
    return [keys.batch(bid), keys.batch_jobs(bid), keys.batch_kids(bid)]


def test_a_redis_without_the_library_gets_it_from_the_web_store(
        store: SyncStore, r: redislib.Redis, caplog: pytest.LogCaptureFixture) -> None:
    """A Redis restarted empty, or a replica promoted before it had synchronised, has no
    library: the web UI's store loads it and sends the call again."""
    push(store, queue="q1")
    r.function_delete("faktory_fast")
    assert store.info()["queues"] == {"q1": 1}
    assert r.function_list() and "had no faktory_fast function library" in caplog.text
    # Any other error is the caller's, as before.
    with pytest.raises(redislib.ResponseError, match="wrong number"):
        store.run(Call(("LPUSH",), as_none))
