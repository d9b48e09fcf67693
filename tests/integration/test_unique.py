"""Enterprise unique jobs over the wire: custom.unique_for / unique_until (docs/enterprise.md)."""
from __future__ import annotations

import hashlib
import json
import random
import threading
import time
import uuid
from collections import Counter
from typing import Any

import orjson
import pytest

from faktory_fast.jobs import rfc3339
from tests.deployments import on_each_deployment
from tests.support import (
    Client,
    FaktoryServer,
    ReplyError,
    clients_on_distinct_processes,
    job,
    two_nodes,
    wait_for,
)

# The protocol of this module, on a single Redis and on a Redis Cluster.
server = on_each_deployment()


NOT_UNIQUE = "NOTUNIQUE Job not unique"


def unique(args: list[Any] | None = None, unique_for: Any = 60, **custom: Any) -> dict:
    return job("Lonely", args if args is not None else [1, "x"],
               custom={"unique_for": unique_for, **custom})


def refused(client: Client, payload: dict) -> str:
    with pytest.raises(ReplyError) as info:
        client.push(payload)
    return str(info.value)


def lock_of(srv: FaktoryServer, payload: dict) -> Any:
    store = srv.store()
    return store.unique_lock(payload["jobtype"], payload.get("queue", "default"), payload["args"])


def test_duplicate_push_is_refused_with_notunique(client: Client) -> None:
    first = unique()
    assert client.push(first) == "OK"
    assert refused(client, unique()) == NOT_UNIQUE
    assert client.info()["faktory"]["total_enqueued"] == 1  # the connection stays usable
    # (jobtype, args, queue) is the key: any of them different is another job.
    assert client.push(unique([2, "x"])) == "OK"
    assert client.push({**unique(), "queue": "other"}) == "OK"
    assert client.push({**unique(), "jobtype": "Other"}) == "OK"
    assert client.info()["faktory"]["queues"] == {"default": 3, "other": 1}


@pytest.mark.parametrize("value", [1e300, "1e300", 10 * 365 * 86400 + 1])
def test_a_lock_longer_than_ten_years_is_refused(client: Client, value: object) -> None:
    with pytest.raises(ReplyError, match=r"^ERR invalid custom\.unique_for"):
        client.push(unique(unique_for=value))
    assert client.push(unique(unique_for=10 * 365 * 86400)) == "OK"  # the longest there is
    assert client.info()["faktory"]["total_enqueued"] == 1


def test_object_key_order_does_not_matter(client: Client) -> None:
    assert client.push(unique([{"a": 1, "b": [1, {"c": 2, "d": 3}]}])) == "OK"
    assert refused(client, unique([{"b": [1, {"d": 3, "c": 2}], "a": 1}])) == NOT_UNIQUE


def test_numbers_keep_every_digit(srv: FaktoryServer, client: Client) -> None:
    """Two ids that differ past a double's 15-16 digits are two jobs (the lock is named after
    the args as written, not as Lua's numbers); the ACK releases the lock under that name."""
    big = 1234567890123456789
    first = unique([big, 1.5])
    assert client.push(first) == "OK"
    assert client.push(unique([big + 1, 1.5])) == "OK"
    assert client.push(unique([123456789012345, 1.5])) == "OK"
    assert client.push(unique([123456789012346, 1.5])) == "OK"  # cjson's 14 digits: same key
    assert refused(client, unique([big, 1.5])) == NOT_UNIQUE
    assert lock_of(srv, unique([big, 1.5])).holder == first["jid"]
    got = client.fetch("default")
    assert got["args"] == [big, 1.5]
    assert client.ack(got["jid"]) == "OK"
    assert lock_of(srv, unique([big, 1.5])).holder == ""
    assert client.push(unique([big, 1.5])) == "OK"


# A unique job as servers before this one stored it: their field order ("custom" before "jid"),
# which Redis reads by decoding the job.
OLD_FORMAT = ('{"retry":25,"custom":{"unique_for":60},"jid":"%s","queue":"default",'
              '"jobtype":"Lonely","created_at":"2026-01-01T00:00:00Z",'
              '"enqueued_at":"2026-01-01T00:00:00Z","args":%s}')


def random_args(rng: random.Random, depth: int = 0) -> Any:
    """JSON values of the kinds args hold: cjson's escapes, empty arrays and objects, numbers
    of every size, nesting."""
    kind = rng.randrange(10 if depth < 3 else 6)
    if kind == 0:
        return rng.choice(["", "a/b", 'q"uote', "back\\slash", "\x01\x1f\x7f", "é€😀", "{x}",
                           "[]", "100.0", "1e-07", "end\\"])
    if kind == 1:
        return rng.choice([0, -1, 7, 2**53, 10**15, 123456789012345678, -(2**63), 2**64 - 1])
    if kind == 2:
        return rng.choice([0.1, 1.5, -2.5e-7, 1e15, 1e300, 0.30000000000000004, 1 / 3])
    if kind == 3:
        return rng.choice([True, False, None])
    if kind in (4, 5):
        return []
    if kind in (6, 7):
        return [random_args(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice("abcAB_/é"): random_args(rng, depth + 1) for _ in range(rng.randrange(4))}


def test_jobs_stored_before_the_upgrade_release_their_locks(srv: FaktoryServer,
                                                             client: Client) -> None:
    """Locks taken by older servers are released when their jobs finish: the name PUSH gives
    args now (jobs.unique_name) is the one those servers computed in Redis, which Redis still
    computes for a job stored in their format. 300 random args, each job acknowledged."""
    rng = random.Random(22)
    r = srv.redis()
    held = {}
    for i in range(300):
        args = [random_args(rng) for _ in range(rng.randrange(1, 4))]
        jid = f"old-{i:04d}"
        r.lpush("q:default", OLD_FORMAT % (jid, orjson.dumps(args).decode()))
        key = lock_of(srv, {"jobtype": "Lonely", "args": args}).key
        r.set(key, jid)
        held[jid] = key
    r.sadd("queues", "default")
    for _ in range(300):
        got = client.fetch("default")
        assert got["jid"] in held
        assert client.ack(got["jid"]) == "OK"
    assert [jid for jid, key in held.items() if r.exists(key)] == []


def test_a_lock_named_by_the_oldest_servers_is_released(srv: FaktoryServer,
                                                        client: Client) -> None:
    """Servers before those named every lock after cjson's encoding of the decoded args (14
    digits): the ACK of a job they stored releases a lock under that name too."""
    big = 1234567890123456789
    r = srv.redis()
    r.lpush("q:default", OLD_FORMAT % ("oldest-1", f"[{big}]"))
    r.sadd("queues", "default")
    old_key = "ff:uniq:" + hashlib.sha1(b"Lonely\0default\0[%s]" % (b"%.14g" % big)).hexdigest()
    assert old_key != lock_of(srv, unique([big])).key
    r.set(old_key, "oldest-1")
    assert client.ack(client.fetch("default")["jid"]) == "OK"
    assert not r.exists(old_key)


def test_a_deeply_nested_unique_job_holds_redis_briefly(srv: FaktoryServer,
                                                         client: Client) -> None:
    """Redis is every client's: a unique job whose 1 MB of args nest 250 levels around 166,000
    items and a 17-digit number costs Redis milliseconds to push, fetch and ACK (its lock's
    name is computed in the server process; Redis reads the job without decoding it), not the
    seconds a canonical form rescanning each level's subtree took. (bench bigjob measures it.)"""
    inner: list[Any] = [[[i % 10] for i in range(166_000)], 12345678901234567]
    for _ in range(248):
        inner = [inner]
    r = srv.redis()

    def fcall_ms() -> float:
        return r.info("commandstats").get("cmdstat_fcall", {}).get("usec", 0) / 1000

    before = fcall_ms()
    payload = unique(inner)
    assert client.push(payload) == "OK"
    assert refused(client, unique(inner)) == NOT_UNIQUE
    got = client.fetch("default")
    assert got["jid"] == payload["jid"] and got["args"] == inner
    assert client.ack(got["jid"]) == "OK"
    assert lock_of(srv, payload).holder == ""
    assert fcall_ms() - before < 100  # ~7 ms here; 0.7 s and more before


def test_a_removed_jobs_lock_record_is_swept(srv: FaktoryServer, client: Client) -> None:
    """The record of which lock a job took (jid -> name) goes when the job finishes; one whose
    job was removed without finishing goes once its lock is gone (the master's sweep, run
    here directly)."""
    r = srv.redis()
    done, removed = unique([1]), unique([2])
    assert client.push(done) == "OK" and client.push(removed) == "OK"
    assert set(r.hkeys("ff:uniq-names")) == {done["jid"].encode(), removed["jid"].encode()}
    assert client.ack(client.fetch()["jid"]) == "OK"
    assert r.hkeys("ff:uniq-names") == [removed["jid"].encode()]
    assert client.call("QUEUE REMOVE default") == "OK"
    store = srv.store()
    assert store.unique_sweep("0", 100) == "0"
    assert r.hkeys("ff:uniq-names") == [removed["jid"].encode()]  # its lock still holds
    r.delete(lock_of(srv, removed).key)  # as when it lapses
    assert store.unique_sweep("0", 100) == "0"
    assert r.hkeys("ff:uniq-names") == []


def test_plain_jobs_with_custom_are_not_unique(client: Client) -> None:
    for custom in ({"other": 1}, {"unique_for": 0}, {"unique_for": "soon"}):
        for _ in range(2):
            assert client.push(job("Lonely", [1], custom=custom)) == "OK"
    assert client.push(unique(unique_for="600")) == "OK"  # Rails sends a numeric string
    assert refused(client, unique(unique_for="600")) == NOT_UNIQUE


def test_pushb_lists_duplicates_in_its_error_map(client: Client) -> None:
    a, b, c = unique([1]), unique([1]), unique([2])
    reply = json.loads(client.call("PUSHB " + json.dumps([a, b, c])))
    assert reply == {b["jid"]: NOT_UNIQUE}
    assert client.info()["faktory"]["queues"] == {"default": 2}


def test_ack_releases_the_lock(srv: FaktoryServer, client: Client) -> None:
    first = unique()
    assert client.push(first) == "OK"
    assert lock_of(srv, first).holder == first["jid"]
    fetched = client.fetch()
    assert fetched["jid"] == first["jid"]
    assert refused(client, unique()) == NOT_UNIQUE  # running: still locked (until success)
    assert client.ack(first["jid"]) == "OK"
    assert lock_of(srv, first).holder == ""
    assert client.push(unique()) == "OK"


def test_unique_until_start_releases_at_fetch(client: Client) -> None:
    assert client.push(unique(unique_until="start")) == "OK"
    assert refused(client, unique(unique_until="start")) == NOT_UNIQUE
    running = client.fetch()
    assert running["custom"]["unique_until"] == "start"
    again = unique(unique_until="start")
    assert client.push(again) == "OK"
    # The first one's ACK must not release the lock the second one holds now.
    assert client.ack(running["jid"]) == "OK"
    assert refused(client, unique(unique_until="start")) == NOT_UNIQUE


def test_retry_keeps_the_lock_and_death_releases_it(client: Client) -> None:
    first = {**unique(), "retry": 1}
    assert client.push(first) == "OK"
    client.fetch()
    assert client.fail(first["jid"]) == "OK"  # -> retries: still locked
    assert refused(client, unique()) == NOT_UNIQUE
    assert client.call('MUTATE {"cmd":"requeue","target":"retries","filter":{}}') == "OK"
    assert client.fetch()["jid"] == first["jid"]
    assert client.fail(first["jid"]) == "OK"  # retries used up: dead
    assert client.push(unique()) == "OK"


def test_discarded_job_releases_the_lock(client: Client) -> None:
    first = {**unique(), "retry": 0}
    assert client.push(first) == "OK"
    client.fetch()
    assert client.fail(first["jid"]) == "OK"  # retry 0: discarded
    assert client.push(unique()) == "OK"


def test_lock_lapses_after_unique_for(client: Client) -> None:
    assert client.push(unique(unique_for=1)) == "OK"
    assert refused(client, unique(unique_for=1)) == NOT_UNIQUE
    t0 = time.monotonic()

    def pushed() -> bool:
        try:
            return client.push(unique(unique_for=1)) == "OK"
        except ReplyError:
            return False
    wait_for(pushed, timeout=5, interval=0.1)
    assert time.monotonic() - t0 > 0.5


def test_scheduled_job_lock_lasts_delay_plus_unique_for(srv: FaktoryServer,
                                                        client: Client) -> None:
    at = rfc3339(time.time_ns() + 100 * 1_000_000_000)
    first = {**unique(unique_for=30), "at": at}
    assert client.push(first) == "OK"
    lock = lock_of(srv, first)
    assert lock.holder == first["jid"]
    assert 125 < lock.ttl <= 130
    assert refused(client, unique(unique_for=30)) == NOT_UNIQUE


def race(clients: list[Client], payload: dict) -> list[str]:
    """Every client PUSHes a copy of ``payload`` (its own jid) at once: the replies."""
    start = threading.Barrier(len(clients))
    results: list[str] = []

    def push(c: Client) -> None:
        copy = {**payload, "jid": uuid.uuid4().hex}
        start.wait()
        try:
            results.append(c.push(copy))
        except ReplyError as exc:
            results.append(str(exc))
    threads = [threading.Thread(target=push, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_one_push_wins_across_processes_and_nodes(tmp_path: Any) -> None:
    """Concurrent pushes of one unique job through 2 nodes x 2 processes: exactly one OK."""
    with two_nodes(str(tmp_path), processes=2) as (a, b):
        clients = [*clients_on_distinct_processes(a, 2), *clients_on_distinct_processes(b, 2)]
        clients += [node.client() for node in (a, b) for _ in range(4)]
        for round_ in range(20):
            results = race(clients, unique([round_]))
            assert Counter(results) == {"OK": 1, NOT_UNIQUE: len(clients) - 1}
        assert clients[0].info()["faktory"]["queues"] == {"default": 20}
