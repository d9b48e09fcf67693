"""Enterprise expiring jobs over the wire: custom.expires_at / expires_in (docs/enterprise.md)."""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from faktory_fast.jobs import parse_rfc3339, rfc3339
from tests.deployments import on_each_deployment
from tests.support import Client, FaktoryServer, ReplyError, job, redis_commands, wait_for

# The protocol of this module, on a single Redis and on a Redis Cluster.
server = on_each_deployment()


SECOND = 1_000_000_000


def expiring(at_offset: float, args: list[Any] | None = None, **fields: Any) -> dict:
    """A job that expires ``at_offset`` seconds from now (negative: already expired)."""
    at = rfc3339(time.time_ns() + int(at_offset * SECOND))
    custom = {"expires_at": at, **fields.pop("custom", {})}
    return job("Fleeting", args, custom=custom, **fields)


def test_expired_job_is_skipped_within_the_same_fetch(client: Client) -> None:
    gone = [expiring(-5, [i]) for i in range(3)]
    live = expiring(60)
    for j in (*gone, live):
        assert client.push(j) == "OK"
    before = client.info()["faktory"]["total_expired"]
    assert client.fetch()["jid"] == live["jid"]
    assert client.info()["faktory"]["total_expired"] == before + 3
    assert client.fetch() is None  # nothing left: the expired ones were discarded


def test_a_long_run_of_expired_jobs_is_discarded_in_steps(client: Client, srv: FaktoryServer) -> None:
    """One ff_fetch discards at most 100 expired jobs (a long run must not hold Redis); the
    FETCH goes on with another call until it finds a live job."""
    gone = [expiring(-5, [i]) for i in range(250)]
    live = expiring(60)
    assert client.call("PUSHB " + json.dumps(gone)) == "{}"
    assert client.push(live) == "OK"
    with redis_commands(srv) as seen:
        assert client.fetch()["jid"] == live["jid"]
    assert len([c for c in seen if c.startswith("FCALL ff_fetch ")]) == 3, seen
    assert client.info()["faktory"]["total_expired"] == 250


def test_fetch_moves_on_to_the_next_queue(client: Client) -> None:
    assert client.push(expiring(-1, queue="first")) == "OK"
    other = job(queue="second")
    assert client.push(other) == "OK"
    assert client.fetch("first", "second")["jid"] == other["jid"]
    assert client.info()["faktory"]["queues"].get("first", 0) == 0


def test_expires_in_becomes_expires_at_at_push(client: Client) -> None:
    t0 = time.time_ns()
    pushed = job(custom={"expires_in": 30})
    assert client.push(pushed) == "OK"
    fetched = client.fetch()
    at = parse_rfc3339(fetched["custom"]["expires_at"])
    assert t0 + 30 * SECOND <= at <= time.time_ns() + 30 * SECOND
    assert fetched["custom"]["expires_in"] == 30


def test_expires_in_runs_out(client: Client) -> None:
    assert client.push(job(custom={"expires_in": 0.5})) == "OK"
    time.sleep(0.6)  # the job's own clock: it must be past its time
    assert client.fetch() is None
    assert client.info()["faktory"]["total_expired"] == 1


def test_offset_and_fractional_times(client: Client) -> None:
    past = time.gmtime(time.time() - 3600)
    # One hour ago in UTC, written as the same instant at +02:00: expired.
    stamp = time.strftime("%Y-%m-%dT", past) + f"{(past.tm_hour + 2) % 24:02d}" + \
        time.strftime(":%M:%S.123+02:00", past)
    if past.tm_hour >= 22:  # the date would change too: keep the test simple
        stamp = rfc3339(time.time_ns() - 3600 * SECOND)
    live = job(custom={"expires_at": rfc3339(time.time_ns() + 3600 * SECOND)})
    assert client.push(job(custom={"expires_at": stamp})) == "OK"
    assert client.push(live) == "OK"
    assert client.fetch()["jid"] == live["jid"]


@pytest.mark.parametrize("custom", [{"expires_at": "tomorrow"}, {"expires_at": 5},
                                    {"expires_in": "soon"}, {"expires_in": 1e300}])
def test_bad_expiry_is_refused(client: Client, custom: dict) -> None:
    with pytest.raises(ReplyError, match=r"^ERR invalid custom\.expires_"):
        client.push(job(custom=custom))
    assert client.info()["faktory"]["total_enqueued"] == 0


def test_expired_unique_job_releases_its_lock(client: Client) -> None:
    first = expiring(-1, [7], custom={"unique_for": 600})
    assert client.push(first) == "OK"
    with pytest.raises(ReplyError, match="NOTUNIQUE"):
        client.push(expiring(-1, [7], custom={"unique_for": 600}))
    assert client.fetch() is None  # discarded: the lock goes with it
    assert client.push(expiring(60, [7], custom={"unique_for": 600})) == "OK"


def test_expired_retry_is_discarded_when_it_comes_back(client: Client) -> None:
    j = expiring(1.5, retry=3)
    assert client.push(j) == "OK"
    assert client.fetch()["jid"] == j["jid"]
    assert client.fail(j["jid"]) == "OK"
    time.sleep(1.6)  # the job's own clock: past its time when it is requeued
    assert client.call('MUTATE {"cmd":"requeue","target":"retries","filter":{}}') == "OK"
    assert client.fetch() is None
    assert client.info()["faktory"]["total_expired"] == 1


@pytest.fixture
def debug_server(tmp_path: Any) -> Iterator[FaktoryServer]:
    srv = FaktoryServer(str(tmp_path / "ff"), processes=1, args=["-l", "debug"]).start()
    yield srv
    srv.stop()


def test_each_expired_job_is_logged_once_at_debug(debug_server: FaktoryServer) -> None:
    client = debug_server.client()
    gone = expiring(-1)
    assert client.push(gone) == "OK"
    assert client.fetch() is None
    line = f"JID {gone['jid']}: Halt: job expired"
    wait_for(lambda: any(line in x for x in debug_server.lines))
    assert client.fetch() is None
    assert sum(line in x for x in debug_server.lines) == 1
