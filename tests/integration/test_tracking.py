"""Job tracking (Faktory Enterprise's TRACK command), over the wire: custom.track = 1, the
states a job goes through, TRACK SET's progress and reserve_until (which the reaper honours),
expiry. docs/enterprise.md describes the rules tested here."""
from __future__ import annotations

import json
import re
import time

import pytest

from faktory_fast import jobs
from faktory_fast.storage import keys
from tests.deployments import on_each_deployment
from tests.ent_client import Ent
from tests.support import Client, FaktoryServer, ReplyError, job, wait_for

# The protocol of this module, on a single Redis and on a Redis Cluster.
server = on_each_deployment()


def tracked(**fields: object) -> dict:
    j = job(**fields)
    j.setdefault("custom", {})["track"] = 1
    return j


def test_states_of_a_tracked_job(srv: FaktoryServer, client: Client) -> None:
    e = Ent(client)
    # As Faktory Enterprise answers (seen by the Rust client's tests).
    client.send("TRACK GET no-such-jid")
    assert client.read_reply() == '{"jid":"no-such-jid","state":"unknown","updated_at":""}'
    j = tracked(queue="tq")
    client.push(j)
    got = e.track_get(j["jid"])
    assert got["state"] == "enqueued" and got["updated_at"].endswith("Z")
    assert "percent" not in got and "desc" not in got  # omitted until set (Go's omitempty)
    client.fetch("tq")
    assert e.track_get(j["jid"])["state"] == "working"
    client.fail(j["jid"])
    assert e.track_get(j["jid"])["state"] == "failed"
    requeue = {"cmd": "requeue", "target": "retries", "filter": {"jids": [j["jid"]]}}
    client.call("MUTATE " + json.dumps(requeue, separators=(",", ":")))
    client.fetch("tq")
    assert e.track_get(j["jid"])["state"] == "working"  # its retry runs
    client.ack(j["jid"])
    assert e.track_get(j["jid"])["state"] == "success"
    r = srv.redis()
    try:
        assert 1700 < r.ttl(keys.tracking(j["jid"])) <= 1800  # kept 30 minutes after finishing
    finally:
        r.close()
    # A job that is not tracked has no tracking data.
    plain = job(queue="tq")
    client.push(plain)
    assert e.track_get(plain["jid"])["state"] == "unknown"


def test_dead_job(srv: FaktoryServer, client: Client) -> None:
    e = Ent(client)
    j = tracked(queue="tq", retry=0)
    client.push(j)
    client.fetch("tq")
    client.fail(j["jid"])
    assert e.track_get(j["jid"])["state"] == "dead"


def test_track_set_progress(client: Client) -> None:
    e = Ent(client)
    j = tracked(queue="tq")
    client.push(j)
    client.fetch("tq")
    before = e.track_get(j["jid"])["updated_at"]
    assert e.track_set(j["jid"], percent=40, desc="halfway there") == "OK"
    got = e.track_get(j["jid"])
    assert (got["percent"], got["desc"], got["state"]) == (40, "halfway there", "working")
    assert got["updated_at"] >= before
    assert e.track_set(j["jid"], percent=60) == "OK"  # desc kept
    got = e.track_get(j["jid"])
    assert (got["percent"], got["desc"]) == (60, "halfway there")


@pytest.mark.parametrize("line, message", [
    ("TRACK SET " + json.dumps({"jid": "never-pushed", "percent": 5}),
     "ERR Job never-pushed is not tracked: push it with custom.track = 1"),
    ("TRACK SET {oops", "ERR "),
    ("TRACK SET []", "ERR TRACK SET needs a JSON object"),
    ("TRACK SET " + json.dumps({"percent": 5}), "ERR TRACK SET needs a jid"),
    ("TRACK SET " + json.dumps({"jid": "x", "percent": 101}), "ERR TRACK SET: percent must be"),
    ("TRACK SET " + json.dumps({"jid": "x", "percent": "5"}), "ERR TRACK SET: percent must be"),
    ("TRACK SET " + json.dumps({"jid": "x", "desc": 5}), "ERR TRACK SET: desc must be a string"),
    ("TRACK SET " + json.dumps({"jid": "x", "reserve_until": "soon"}),
     "ERR TRACK SET: invalid reserve_until"),
    ("TRACK GET", "ERR TRACK GET needs one jid"),
    ("TRACK", "ERR TRACK needs a subcommand"),
    ("TRACK PUT x", "ERR Unknown TRACK subcommand: PUT"),
])
def test_bad_track_lines_leave_the_connection_usable(client: Client, line: str,
                                                     message: str) -> None:
    with pytest.raises(ReplyError) as err:
        client.call(line)
    assert str(err.value).startswith(message), str(err.value)
    assert client.push(job()) == "OK"


def reservation(srv: FaktoryServer, jid: str) -> tuple[float, float] | None:
    """(the record's expires_at, the ``working`` score) of a reservation, None if none."""
    r = srv.redis()
    try:
        record = r.hget(keys.RESERVATIONS, jid)
        if record is None:
            return None
        return json.loads(record)["expires_at"], r.zscore(keys.WORKING, jid)
    finally:
        r.close()


def test_reserve_until_only_extends_the_reservation(srv: FaktoryServer, client: Client) -> None:
    e = Ent(client)
    j = tracked(queue="tq", reserve_for=600)
    client.push(j)
    client.fetch("tq")
    expires, score = reservation(srv, j["jid"])
    assert expires == score
    later = jobs.rfc3339(int((expires + 3600) * 1e9))
    assert e.track_set(j["jid"], reserve_until=later) == "OK"
    assert reservation(srv, j["jid"]) == pytest.approx((expires + 3600, expires + 3600))
    sooner = jobs.rfc3339(int((expires - 300) * 1e9))
    assert e.track_set(j["jid"], reserve_until=sooner) == "OK"
    assert reservation(srv, j["jid"]) == pytest.approx((expires + 3600, expires + 3600))
    assert client.ack(j["jid"]) == "OK"  # the reservation is the same one: ACK finds it


def test_the_reaper_honours_reserve_until(srv: FaktoryServer, client: Client) -> None:
    """Two jobs whose reservations ran out (rewritten into the past, as if their time passed);
    one of them got a TRACK SET reserve_until in the future: the reaper takes only the other."""
    e = Ent(client)
    kept, control = tracked(queue="tq"), tracked(queue="tq")
    client.push(kept)
    client.push(control)
    client.fetch("tq")
    client.fetch("tq")
    r = srv.redis()
    try:
        past = time.time() - 5
        for jid in (kept["jid"], control["jid"]):
            raw = r.hget(keys.RESERVATIONS, jid).decode()
            r.hset(keys.RESERVATIONS, jid, re.sub(r'"expires_at":[\d.]+', f'"expires_at":{past}',
                                                  raw, count=1))
            r.zadd(keys.WORKING, {jid: past})
        until = jobs.rfc3339(time.time_ns() + 3600 * 10**9)
        assert e.track_set(kept["jid"], percent=10, reserve_until=until) == "OK"
        wait_for(lambda: not r.hexists(keys.RESERVATIONS, control["jid"]))  # a reaper round ran
        assert r.hexists(keys.RESERVATIONS, kept["jid"])
        assert e.track_get(control["jid"])["state"] == "failed"  # reaped: a failure
        assert e.track_get(kept["jid"])["state"] == "working"
        assert client.ack(kept["jid"]) == "OK"
    finally:
        r.close()


def test_tracked_job_in_a_batch(client: Client) -> None:
    e = Ent(client)
    bid = e.batch_new(success=job("S", queue="cb"))
    j = e.push(bid, queue="tq", custom={"track": 1})
    assert j["custom"] == {"track": 1, "bid": bid}
    e.commit(bid)
    client.fetch("tq")
    assert e.track_get(j["jid"])["state"] == "working"
    client.ack(j["jid"])
    assert e.track_get(j["jid"])["state"] == "success"
    assert e.status(bid)["success_st"] == "1"
