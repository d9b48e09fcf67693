"""Records the server cannot use, written into its Redis directly (as a hand edit, another tool or
an older server could), must never stop the background tasks: each is logged once and set aside
(into the dead set with a reason, or kept as it was in the ``ff:bad`` stream) and the good
records around it are processed in the same cycle. Real server, real child Redis.
"""
from __future__ import annotations

import json
import time
from typing import Any

from faktory_fast.storage import keys
from tests.support import Client, FaktoryServer, job, wait_for

SET_ASIDE = "Set aside a bad record"


def bad_stream(srv: FaktoryServer) -> list[dict[bytes, bytes]]:
    """The entries of ``ff:bad``, oldest first."""
    return [fields for _, fields in srv.redis().xrange(keys.BAD_RECORDS)]


def dead_by_jid(srv: FaktoryServer) -> dict[str, dict]:
    return {d["jid"]: d for d in (json.loads(m) for m in srv.redis().zrange("dead", 0, -1))}


def new_lines(srv: FaktoryServer, start: int) -> list[str]:
    return srv.lines[start:]


def next_cycle_of_the_scheduler(client: Client) -> None:
    """Returns once the scheduler has run again: a job scheduled for now has reached its queue."""
    at = time.time() + 0.3
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1e6):06d}Z"
    marker = job(queue="bd-marker", at=stamp)
    client.push(marker)
    assert client.fetch("bd-marker")["jid"] == marker["jid"]


def test_due_entries_that_are_not_jobs_are_set_aside(srv: FaktoryServer, client: Client) -> None:
    start = len(srv.lines)
    r = srv.redis()
    past = time.time() - 60
    good = [job(queue="bd"), job(queue="bd"), job(queue="bd", failure={"retry_count": 0})]
    bad_type = json.dumps({"jid": "bad-queue-type", "jobtype": "T", "args": [], "queue": 5})
    bad_name = json.dumps({"jid": "bad-queue-name", "jobtype": "T", "args": [], "queue": "a b"})
    bad_failure = json.dumps({"jid": "bad-failure", "jobtype": "T", "args": [], "queue": "bd",
                              "retry": 3, "failure": {"retry_count": "x", "remaining": 2}})
    # Oldest first: the bad ones sit between good ones in the order the scheduler reads them.
    r.zadd("scheduled", {json.dumps(good[0]): past, b"not json at all": past + 1,
                         bad_type: past + 2, bad_name: past + 3, json.dumps(good[1]): past + 4})
    r.zadd("retries", {bad_failure: past, json.dumps(good[2]): past + 1})

    got = {client.fetch("bd")["jid"] for _ in range(3)}  # each waits up to 2 s for the next
    assert got == {j["jid"] for j in good}
    assert r.zcard("scheduled") == 0 and r.zcard("retries") == 0

    dead = dead_by_jid(srv)
    assert set(dead) == {"bad-queue-name", "bad-failure"}
    f = dead["bad-queue-name"]["failure"]
    assert f["errtype"] == "InvalidJob" and f["message"] == (
        'cannot get "a b" queue: queue names must match \\A[a-zA-Z0-9._-]+\\z '
        "(found in the scheduled set)")
    f = dead["bad-failure"]["failure"]
    assert f["errtype"] == "InvalidJob" and f["retry_count"] == 0 and f["message"] == (
        "invalid JSON: json: cannot unmarshal string into Go struct field "
        "Failure.failure.retry_count of type int (found in the retry set)")
    assert dead["bad-failure"]["retry"] == 3
    # Not even a job with a jid: kept byte for byte beside a reason.
    aside = bad_stream(srv)
    assert [(e[b"source"], e[b"record"]) for e in aside] == [
        (b"scheduled", b"not json at all"), (b"scheduled", bad_type.encode())]
    assert aside[0][b"reason"].startswith(b"invalid JSON: ")
    assert aside[1][b"reason"] == (b"invalid JSON: json: cannot unmarshal number into Go struct "
                                   b"field Job.queue of type string")

    next_cycle_of_the_scheduler(client)
    lines = new_lines(srv, start)
    assert sum(SET_ASIDE in line for line in lines) == 4  # once each
    assert not any("Traceback" in line or "Background task" in line for line in lines)


def reservation(rid: int, job_doc: Any, expires: float) -> bytes:
    """An ``ff:res`` record as ``ff_fetch`` writes it."""
    head = b'{"rid":%d,"wid":"w","reserved_at":%f,"expires_at":%f,"job":' % (
        rid, expires - 60, expires)
    return head + json.dumps(job_doc).encode() + b"}"


def test_bad_reservations_are_set_aside_and_the_rest_expire(srv: FaktoryServer,
                                                            client: Client) -> None:
    start = len(srv.lines)
    r = srv.redis()
    good = job(reserve_for=60)
    client.push(good)
    assert client.fetch()["jid"] == good["jid"]
    past = time.time() - 30
    bad_failure = job(jid="res-bad-failure", failure={"retry_count": "x"})
    not_ours = job(jid="res-not-ours")
    faktory_member = json.dumps({"job": job(jid="res-faktory-format"), "wid": "w",
                                 "reserved_at": "2026-01-01T00:00:00Z",
                                 "expires_at": "2026-01-01T00:30:00Z"})
    too_deep = (b'{"rid":5,"job":{"jid":"res-too-deep","jobtype":"T","args":' + b"[" * 300
                + b"]" * 300 + b"}}")
    r.hset("ff:res", mapping={
        "res-garbage": b"\x00 garbage",
        "res-too-deep": too_deep,
        "res-bad-failure": reservation(3, bad_failure, past),
        "res-not-ours": json.dumps({"job": not_ours, "rid": 4}),
    })
    # The bad ones expire first, so the reaper meets them before the good one.
    r.zadd("working", {"res-garbage": past - 5, "res-too-deep": past - 4,
                       "res-bad-failure": past - 3, "res-not-ours": past - 2,
                       faktory_member: past - 1})
    r.zadd("working", {good["jid"]: past})

    member = wait_for(lambda: r.zrange("retries", 0, -1))[0]
    failure = json.loads(member)["failure"]
    assert json.loads(member)["jid"] == good["jid"] and failure["errtype"] == "ReservationExpired"
    assert r.zcard("working") == 0 and r.hlen("ff:res") == 0

    dead = dead_by_jid(srv)
    assert set(dead) == {"res-bad-failure", "res-not-ours", "res-faktory-format"}
    assert dead["res-bad-failure"]["failure"]["message"] == (
        "invalid JSON: json: cannot unmarshal string into Go struct field "
        "Failure.failure.retry_count of type int (found in the reservations)")
    assert dead["res-not-ours"]["failure"]["message"] == (
        "not a reservation record (found in the reservations)")
    assert dead["res-not-ours"]["args"] == not_ours["args"]
    assert dead["res-faktory-format"]["failure"]["message"] == (
        "a reservation without its record (found in the reservations)")
    aside = bad_stream(srv)  # not even a job we could store: kept as it was
    assert [(e[b"jid"], e[b"source"], e[b"record"]) for e in aside] == [
        (b"res-garbage", b"working", b"\x00 garbage"), (b"res-too-deep", b"working", too_deep)]
    assert aside[1][b"reason"] == b"jobs cannot nest more than 254 levels deep"

    # One more expiry is reaped (the reaper ran again): still one log line per bad record.
    again = job(reserve_for=60)
    client.push(again)
    client.fetch()
    r.zadd("working", {again["jid"]: time.time() - 1})
    wait_for(lambda: r.zcard("retries") == 2)
    lines = new_lines(srv, start)
    assert sum(SET_ASIDE in line for line in lines) == 5
    assert not any("Traceback" in line or "Background task" in line for line in lines)


def test_fail_of_a_bad_stored_job_sets_it_aside(srv: FaktoryServer, client: Client) -> None:
    start = len(srv.lines)
    r = srv.redis()
    bad = job(jid="fail-bad-failure", queue="bdfail", failure={"retry_count": "x"})
    r.lpush("q:bdfail", json.dumps(bad))
    r.sadd("queues", "bdfail")
    assert client.fetch("bdfail")["jid"] == bad["jid"]
    assert client.fail(bad["jid"]) == "OK"  # was: -ERR internal error, and again at expiry
    dead = dead_by_jid(srv)
    assert dead[bad["jid"]]["failure"]["errtype"] == "InvalidJob"
    assert r.zcard("working") == 0 and r.hlen("ff:res") == 0
    assert client.call("INFO")  # the connection is fine
    lines = new_lines(srv, start)
    assert sum(SET_ASIDE in line for line in lines) == 1
    assert not any("Traceback" in line or "Unexpected error" in line for line in lines)


def test_worker_reaper_survives_a_wid_that_is_not_utf8(srv: FaktoryServer) -> None:
    # The reaper tells every server process which worker it reaped; a wid the processes cannot
    # decode used to kill their Redis subscription and with it the process (every client cut).
    start = len(srv.lines)
    r = srv.redis()
    pids = srv.server_process_pids()
    stale = srv.client(wid="stale-worker-1")
    accented = srv.client(wid="w\u00f6rker-\u00fc")  # not ASCII, but UTF-8 as any wid from HELLO
    ghost = b"\xff\xfe-ghost"
    r.hset(b"ff:w:" + ghost, mapping={"wid": ghost, "state": "running"})
    # Their last heartbeats, long ago:
    r.zadd("ff:wids", {ghost: 1, "stale-worker-1": 2, "w\u00f6rker-\u00fc": 3})
    wait_for(lambda: r.zcard("ff:wids") == 0, timeout=30, interval=0.2)  # reaped every 15 s
    assert not r.exists(b"ff:w:" + ghost) and not r.exists("ff:w:stale-worker-1")
    # The reaps reached the processes serving them.
    assert stale.closed_by_server(timeout=5) and accented.closed_by_server(timeout=5)
    assert srv.server_process_pids() == pids
    assert srv.client().call("INFO")
    assert not any("Lost the connection" in line or "exited with status" in line
                   for line in new_lines(srv, start))
