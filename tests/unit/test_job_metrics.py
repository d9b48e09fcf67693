"""Job metrics: the per-process collector (job_metrics.JobMetrics), what ff_metrics keeps in
Redis (minute and hour buckets, lifetime totals, the bound on pairs) and the rows read back."""
from __future__ import annotations

import asyncio

import orjson
import redis as redislib

from faktory_fast import job_metrics
from faktory_fast.job_metrics import Counts, JobMetrics, Row, add, pack, summarize, unpack
from faktory_fast.master.redis_child import RedisChild
from faktory_fast.storage import keys, redis_client
from faktory_fast.storage.store import AsyncStore, SyncStore

T0 = 1_800_000_000.0  # the start of a minute and of an hour


def job(jobtype: str = "Mail", queue: str = "default") -> bytes:
    return orjson.dumps({"jid": "j1", "jobtype": jobtype, "queue": queue, "args": []})


def test_counts_by_minute_queue_and_jobtype() -> None:
    now = [T0 + 10]
    m = JobMetrics(clock=lambda: now[0])
    m.finished(job(), True, T0 + 10 - 0.015)  # 15 ms: bucket 0 (under 20 ms)
    m.finished(job(), False, T0 + 10 - 0.040)  # 40 ms: bucket 2 (30 to 45 ms)
    m.finished(job("Mail", "other"), True, None)  # not timed
    now[0] = T0 + 61  # the next minute
    m.finished(orjson.loads(job("Report")), False, None)  # an expired one: decoded, untimed
    counts = m.take()
    minute = int(T0 // 60)
    assert counts == {
        minute + 0: {"default|Mail": "2 1 55000 0:1 2:1", "other|Mail": "1 0 0"},
        minute + 1: {"default|Report": "1 1 0"},
    }
    assert m.take() == {}


def test_a_record_from_another_process_is_timed_from_its_reservation() -> None:
    m = JobMetrics(clock=lambda: T0 + 2)
    record = orjson.dumps({"rid": 7, "wid": "w", "reserved_at": T0, "expires_at": T0 + 1800,
                           "job": orjson.loads(job("Sync", "q2"))})
    m.finished_record(record, True)
    m.finished_record(b"not json", True)  # nothing to count
    # 2 s: bucket 12 (1,600 ms to 2,500 ms)
    assert list(m.take().values()) == [{"q2|Sync": "1 0 2000000 12:1"}]


def test_packed_counts_round_trip_and_add() -> None:
    c = Counts()
    c.executions, c.failures, c.us, c.buckets = 5, 1, 999, {3: 2, 0: 1}
    assert pack(c) == "5 1 999 0:1 3:2"
    back = unpack(pack(c))
    assert (back.executions, back.failures, back.us, back.buckets) == (5, 1, 999, {0: 1, 3: 2})
    assert unpack("garbage").executions == 0
    summed = {"q|A": "1 0 10 0:1"}
    add(summed, {"q|A": "2 1 20 0:1 5:1", "q|B": "1 1 0"})
    assert summed == {"q|A": "3 1 30 0:2 5:1", "q|B": "1 1 0"}


def test_rows_and_percentiles_from_the_buckets() -> None:
    rows = summarize({"default|Mail": "10 2 1000000 0:8 4:1 25:1", "default|": "3 0 0"})
    mail = rows[("default", "Mail")]
    assert (mail.executions, mail.failures, mail.timed) == (10, 2, 10)
    assert mail.seconds == 1.0 and mail.mean == 0.1
    assert mail.percentile(0.5) == 0.020  # within the first bucket: under 20 ms
    assert mail.percentile(0.9) == 0.100  # the 9th of 10: 65 to 100 ms
    assert mail.percentile(0.99) == 335.0  # the open bucket: reported at its lower bound
    other = rows[("default", "")]
    assert other.executions == 3 and other.mean is None and other.percentile(0.5) is None
    assert Row("q", "t").percentile(0.5) is None


def test_ff_metrics_adds_to_minutes_hours_and_totals(store: SyncStore, r: redislib.Redis,
                                                     redis_child: RedisChild) -> None:
    minute = int(T0 // 60)
    a = {minute: {"default|Mail": "2 0 30000 0:1 3:1"}}
    b = {minute: {"default|Mail": "1 0 0"}, minute + 1: {"default|Mail": "4 1 5 3:1 25:1"}}
    assert store.add_job_metrics(a, 600, 7200, 10) == 1
    assert store.add_job_metrics(b, 600, 7200, 10) == 1
    assert store.job_metrics_bucket(keys.metrics_minute(minute)) == {
        "default|Mail": "3 0 30000 0:1 3:1"}
    assert store.job_metrics_bucket(keys.metrics_minute(minute + 1)) == {
        "default|Mail": "4 1 5 3:1 25:1"}
    assert store.job_metrics_bucket(keys.metrics_hour(minute // 60)) == store.job_metrics_total()
    assert store.job_metrics_total() == {"default|Mail": "7 1 30005 0:1 3:2 25:1"}
    assert 0 < r.ttl(keys.metrics_minute(minute)) <= 600
    assert 600 < r.ttl(keys.metrics_hour(minute // 60)) <= 7200

    # Through the server's own client, as a process flushes.
    m = JobMetrics(clock=lambda: T0 + 5)
    m.finished(job(), True, T0 + 4.8)  # 200 ms: bucket 6 (150 to 225 ms)

    async def flush() -> None:
        conn = await redis_client.connect(redis_child.url)
        await m.flush(AsyncStore(conn))
        conn.close()
        await conn.closed

    asyncio.run(flush())
    assert store.job_metrics_total()["default|Mail"] == "8 1 230005 0:1 3:2 6:1 25:1"
    assert r.ttl(keys.metrics_minute(minute)) > 600  # the process's TTL: MINUTES_KEPT
    assert m.take() == {}


def test_the_totals_hold_a_bounded_number_of_pairs(store: SyncStore, r: redislib.Redis) -> None:
    minute = int(T0 // 60)
    store.add_job_metrics({minute: {f"q|Type{i}": "1 0 0" for i in range(5)}}, 600, 7200, 3)
    store.add_job_metrics({minute: {"q|Type0": "1 0 0", "q|Type9": "2 1 0"}}, 600, 7200, 3)
    assert r.scard(keys.METRICS_PAIRS) == 3
    assert store.job_metrics_total() == {"q|Type0": "2 0 0", "q|Type1": "1 0 0",
                                         "q|Type2": "1 0 0", "q|": "4 1 0"}
    assert job_metrics.OTHER == ""


def test_a_flush_is_split_into_short_calls() -> None:
    counts = {1: {f"q|T{i}": "1 0 0" for i in range(5)}, 2: {"q|T0": "2 0 0"}}
    parts = job_metrics.chunks(counts, 2)
    assert parts == [{1: {"q|T0": "1 0 0", "q|T1": "1 0 0"}}, {1: {"q|T2": "1 0 0", "q|T3": "1 0 0"}},
                     {1: {"q|T4": "1 0 0"}, 2: {"q|T0": "2 0 0"}}]
    assert job_metrics.chunks({}, 2) == []
