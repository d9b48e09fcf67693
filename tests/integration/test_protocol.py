"""The wire protocol over real sockets against a real server (2 processes, child Redis)."""
from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from faktory_fast import PURE_ENV, hot_path
from tests.support import (
    Client,
    FaktoryServer,
    ReplyError,
    job,
    pwdhash,
    redis_commands,
    slow_redis_calls,
    wait_for,
)

# Where the hot path is built, these tests run against the compiled modules and their source.
IMPLEMENTATIONS = ["cython", "python"] if hot_path() == "cython" else ["python"]


@pytest.fixture(scope="module", params=[*IMPLEMENTATIONS, "cluster"])
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaktoryServer]:
    """This module's own server, one per implementation of the hot path; then two nodes on a
    Redis Cluster (``tests.deployments``)."""
    if request.param == "cluster":
        yield request.getfixturevalue("cluster_nodes")
        return
    env = {PURE_ENV: "1"} if request.param == "python" else {}
    srv = FaktoryServer(str(tmp_path_factory.mktemp("faktory")), processes=2, env=env).start()
    assert any(f"(hot path: {request.param})" in line for line in srv.lines), srv.lines
    yield srv
    srv.close_clients()
    srv.stop()


def raw(server: FaktoryServer) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return s


def test_greeting_without_password(server: FaktoryServer) -> None:
    c = server.client(hello=False)
    assert c.hi == 'HI {"v":2}'
    c.close()


def test_first_line_must_be_hello(server: FaktoryServer) -> None:
    c = server.client(hello=False)
    c.send("PUSH {}")
    assert c.closed_by_server() and c.buf == b""


def test_malformed_hello_closes_silently(server: FaktoryServer) -> None:
    c = server.client(hello=False)
    c.send('HELLO {"v":"two"}')
    assert c.closed_by_server() and c.buf == b""


def test_handshake_deadline(server: FaktoryServer) -> None:
    c = server.client(hello=False)
    t0 = time.monotonic()
    assert c.closed_by_server(timeout=5)
    assert 1.5 < time.monotonic() - t0 < 4


def test_hello_twice_is_unknown(client: Client) -> None:
    with pytest.raises(ReplyError, match="^ERR unknown command HELLO$"):
        client.call('HELLO {"v":2}')


def test_unknown_and_case_sensitive_verbs(client: Client) -> None:
    with pytest.raises(ReplyError, match="^ERR unknown command push$"):
        client.call('push {}')
    with pytest.raises(ReplyError, match="^ERR unknown command PING$"):
        client.call("PING")
    assert client.call("INFO")  # connection still usable


def test_push_fetch_ack(client: Client) -> None:
    j = job(args=[1, "two", {"three": 3}], custom={"k": "v"}, extra="dropped")
    assert client.push(j) == "OK"
    got = client.fetch("default")
    assert got["jid"] == j["jid"] and got["args"] == [1, "two", {"three": 3}]
    assert got["retry"] == 25 and got["queue"] == "default" and got["custom"] == {"k": "v"}
    assert "extra" not in got and "created_at" in got and "enqueued_at" in got
    assert list(got)[:2] == ["jid", "retry"]  # what Redis reads without decoding the job
    assert client.ack(j["jid"]) == "OK"
    assert client.ack(j["jid"]) == "OK"  # unknown jid: still OK
    info = client.info()
    assert info["faktory"]["total_processed"] == 1 and info["faktory"]["sets"]["working"] == 0


def test_retry_default_is_not_inherited(client: Client) -> None:
    client.push(job(retry=3))
    client.push(job())
    retries = sorted(client.fetch()["retry"] for _ in range(2))
    assert retries == [3, 25]


@pytest.mark.parametrize("payload,message", [
    ('{"jobtype":"T","args":[]}', "ERR jobs must have a reasonable jid parameter"),
    ('{"jid":"12345678","args":[]}', "ERR jobs must have a jobtype parameter"),
    ('{"jid":"12345678","jobtype":"T"}', "ERR jobs must have an args parameter"),
    ('{"jid":"12345678","jobtype":"T","args":[],"reserve_for":90000}',
     "ERR jobs cannot be reserved for more than one day"),
    ('{"jid":"12345678","jobtype":"T","args":[],"queue":"a b"}',
     'ERR cannot get "a b" queue: queue names must match \\A[a-zA-Z0-9._-]+\\z'),
    ('{"jid":"12345678","jobtype":"T","args":[],"at":"noon"}', "ERR invalid timestamp for 'at': \"noon\""),
    ('{"jid":', "ERR invalid JSON: "),
    ('{"jid":"12345678","jobtype":"T","args":[],"retry":"5"}', "ERR invalid JSON: json: cannot unmarshal"),
])
def test_push_errors(client: Client, payload: str, message: str) -> None:
    with pytest.raises(ReplyError) as exc:
        client.call("PUSH " + payload)
    assert str(exc.value).startswith(message)
    assert client.info()["faktory"]["total_enqueued"] == 0


def test_redis_refusing_a_command_is_an_internal_error(srv: FaktoryServer, client: Client) -> None:
    # PUSH, FETCH and ACK are answered from their Redis reply callback: a Redis error there
    # must become -ERR on that connection and leave it (and the stored jobs) usable.
    held = job()
    client.push(held)
    assert client.fetch("default")["jid"] == held["jid"]
    r = srv.redis()
    r.config_set("maxmemory", 1)  # every writing FCALL now gets -OOM
    try:
        for line in ("PUSH " + json.dumps(job()), "FETCH default", "ACK " + json.dumps({"jid": held["jid"]})):
            with pytest.raises(ReplyError, match="^ERR internal error$"):
                client.call(line)
    finally:
        r.config_set("maxmemory", 0)
    assert r.hexists("ff:res", held["jid"])  # the refused ACK changed nothing
    assert client.ack(held["jid"]) == "OK"
    again = job()
    assert client.push(again) == "OK" and client.fetch("default")["jid"] == again["jid"]


@pytest.mark.parametrize("line", ["PUSH", "PUSHB", "ACK", "FAIL", "BEAT", "QUEUE", "QUEUE PAUSE",
                                  "MUTATE", "FETCH", "PUSH  ", "ACK []", "BEAT []", "FAIL 1"])
def test_bare_and_malformed_commands_get_errors(client: Client, line: str) -> None:
    client.push(job(jid="survivor1"))
    with pytest.raises(ReplyError, match="^ERR "):
        client.call(line)
    assert client.fetch()["jid"] == "survivor1"  # connection and data intact


def test_json_with_spaces_and_lf_only_lines(server: FaktoryServer, client: Client) -> None:
    s = raw(server)
    s.recv(100)
    s.sendall(b'HELLO {"v": 2}\nPUSH {"jid": "spaces01", "jobtype": "T", "args": [1, 2]}\n')
    buf = b""
    while buf.count(b"\r\n") < 2:
        buf += s.recv(100)
    assert buf == b"+OK\r\n+OK\r\n"
    s.close()
    assert client.fetch()["args"] == [1, 2]


def test_pipelined_commands_keep_reply_order(client: Client) -> None:
    jobs_ = [job() for _ in range(50)]
    lines = b"".join(b"PUSH " + json.dumps(j).encode() + b"\r\n" for j in jobs_)
    lines += b"INFO\r\n" + b"FETCH default\r\n" * 50
    client.sock.sendall(lines)
    assert [client.read_reply() for _ in range(50)] == ["OK"] * 50
    assert json.loads(client.read_reply())["faktory"]["queues"]["default"] == 50
    fetched = [json.loads(client.read_reply())["jid"] for _ in range(50)]
    assert fetched == [j["jid"] for j in jobs_]  # FIFO


def test_pushb(client: Client) -> None:
    good = [job() for _ in range(3)]
    assert client.call("PUSHB " + json.dumps(good)) == "{}"
    bad = job(jid="badjob01")
    del bad["jobtype"]
    reply = json.loads(client.call("PUSHB " + json.dumps([job(), bad])))
    assert reply == {"badjob01": "jobs must have a jobtype parameter"}
    assert client.info()["faktory"]["queues"]["default"] == 4
    with pytest.raises(ReplyError, match="^ERR invalid JSON"):
        client.call("PUSHB {nope")


def test_a_big_pushb_is_stored_a_part_at_a_time(client: Client, server: FaktoryServer) -> None:
    """50,000 jobs in one PUSHB are stored a thousand per Redis call (no call holds the shared
    Redis for the whole line); refusals in any part keep their jids."""
    jobs_ = [job(args=[i]) for i in range(50_000)]
    for i in (10, 1_500, 49_999):
        jobs_[i]["custom"] = {"bid": "nosuchbatch"}
    r = server.redis()
    with slow_redis_calls(r, 50) as slow:
        reply = json.loads(client.call("PUSHB " + json.dumps(jobs_)))
    assert slow == []
    assert reply == {jobs_[i]["jid"]: "No such batch nosuchbatch" for i in (10, 1_500, 49_999)}
    assert client.info()["faktory"]["queues"]["default"] == 49_997
    r.close()


def nested(depth: int) -> str:
    """A job whose JSON nests ``depth`` levels deep, the job object being level 1."""
    return ('{"jid":"deep0001","jobtype":"Deep","args":' + "[" * (depth - 1) + "]" * (depth - 1)
            + "}")


def test_push_refuses_types_the_server_reads_back(server: FaktoryServer, client: Client) -> None:
    # Accepted until now, a failure like this one broke the FAIL, and the reservation reaper for
    # good, when read back: refused at PUSH in the words of Go's decoder, as Faktory's.
    start = len(server.lines)
    prefix = "ERR invalid JSON: json: cannot unmarshal "
    field = " into Go struct field Failure.failure."
    for failure, message in [
        ({"retry_count": "x"}, f"string{field}retry_count of type int"),
        ({"remaining": 1.5}, f"number 1.5{field}remaining of type int"),
        ({"failed_at": 5}, f"number{field}failed_at of type string"),
        ({"backtrace": "line"}, f"string{field}backtrace of type []string"),
        ({"backtrace": ["a", 1]}, f"number{field}backtrace of type string"),
        ({"errtype": True}, f"bool{field}errtype of type string"),
    ]:
        payload = json.dumps({"jid": "p1234567", "jobtype": "P", "args": [], "queue": "q",
                              "failure": failure})
        with pytest.raises(ReplyError) as exc:
            client.call("PUSH " + payload)
        assert str(exc.value) == prefix + message
        with pytest.raises(ReplyError) as exc:  # PUSHB: Go decodes the whole array first
            client.call("PUSHB [" + payload + "]")
        assert str(exc.value) == prefix + message
    good = {"retry_count": 2, "remaining": 3, "failed_at": "2026-01-01T00:00:00Z", "next_at": "",
            "message": "m", "errtype": "E", "backtrace": ["a"]}
    assert client.push(job(queue="q", failure=good)) == "OK"
    assert client.info()["faktory"]["total_enqueued"] == 1
    assert not any("Traceback" in line for line in server.lines[start:])


def test_deep_nesting_is_refused_naming_the_limit(server: FaktoryServer, client: Client) -> None:
    start = len(server.lines)
    too_deep = "ERR jobs cannot nest more than 254 levels deep"
    for depth in (255, 500, 2000):
        with pytest.raises(ReplyError) as exc:
            client.call("PUSH " + nested(depth))
        assert str(exc.value) == too_deep
    # PUSHB: one job too deep is refused in the answer's map, the others are stored.
    ok = job()
    reply = json.loads(client.call("PUSHB [" + nested(500) + "," + json.dumps(ok) + "]"))
    assert reply == {"deep0001": too_deep[4:]}
    assert client.fetch()["jid"] == ok["jid"]
    assert client.push(json.loads(nested(254))) == "OK"  # the limit itself is fine
    got = client.fetch()
    assert got["jid"] == "deep0001" and client.fail("deep0001") == "OK"
    assert not any("Traceback" in line or "Unexpected error" in line
                   for line in server.lines[start:])


def test_fetch_empty_waits_two_seconds(client: Client) -> None:
    t0 = time.monotonic()
    assert client.fetch("nothing-here") is None
    assert 1.8 < time.monotonic() - t0 < 3.5


def test_fetch_needs_a_queue(client: Client) -> None:
    with pytest.raises(ReplyError, match="^ERR must call fetch with at least one queue$"):
        client.call("FETCH")


def test_waiting_fetch_wakes_on_push(server: FaktoryServer, client: Client) -> None:
    results: list = []
    t = threading.Thread(target=lambda: results.append((client.fetch("wakeq"), time.monotonic())))
    t.start()
    wait_for(lambda: server.redis().exists("ff:wait:wakeq"))  # the FETCH is parked
    other = server.client()
    j = job(queue="wakeq")
    pushed = time.monotonic()
    other.push(j)
    t.join(5)
    assert results[0][0]["jid"] == j["jid"]
    assert results[0][1] - pushed < 0.5
    other.close()


def test_fetch_strict_order_and_priority(client: Client) -> None:
    client.push(job(jid="low00001", queue="low"))
    client.push(job(jid="high0001", queue="high"))
    client.push(job(jid="high0002", queue="high", priority=9))
    assert [client.fetch("high", "low")["jid"] for _ in range(3)] == ["high0002", "high0001", "low00001"]


def test_fail_goes_to_retries(client: Client, server: FaktoryServer) -> None:
    j = job()
    client.push(j)
    client.fetch()
    before = time.time()
    assert client.fail(j["jid"], "IOError", "  disk full  ", ["a.py:1", "b.py:2"]) == "OK"
    after = time.time()
    r = server.redis()
    [(member, score)] = r.zrange("retries", 0, -1, withscores=True)
    failed = json.loads(member)
    assert failed["failure"]["message"] == "disk full" and failed["failure"]["retry_count"] == 0
    assert failed["failure"]["backtrace"] == ["a.py:1", "b.py:2"]
    assert before + 15 <= score <= after + 44  # count 0: 15 + R s, R in [0, 29]
    info = client.info()["faktory"]
    assert info["total_failures"] == 1 and info["total_processed"] == 1 and info["sets"]["retries"] == 1
    with pytest.raises(ReplyError, match=f"^ERR Job not found {j['jid']}$"):
        client.fail(j["jid"])
    with pytest.raises(ReplyError, match="^ERR missing JID$"):
        client.call('FAIL {"message":"x"}')


def test_fail_from_another_connection(server: FaktoryServer, client: Client) -> None:
    j = job(retry=0)
    client.push(j)
    client.fetch()
    other = server.client()
    assert other.fail(j["jid"]) == "OK"  # no cached reservation there: two round trips
    info = other.info()["faktory"]
    assert info["sets"]["retries"] == 0 and info["sets"]["dead"] == 0  # retry 0: discarded
    assert info["total_failures"] == 1
    other.close()


def test_retry_then_dead(client: Client, server: FaktoryServer) -> None:
    j = job(retry=1)
    client.push(j)
    client.fetch()
    client.fail(j["jid"])
    r = server.redis()
    member = r.zrange("retries", 0, -1)[0]
    r.zadd("retries", {member: time.time() - 1})  # due now: the scheduler moves it
    again = client.fetch()  # waits for the scheduler's enqueue
    assert again["jid"] == j["jid"] and again["failure"]["retry_count"] == 0
    client.fail(j["jid"], message="second")
    dead = r.zrange("dead", 0, -1, withscores=True)
    assert len(dead) == 1
    body = json.loads(dead[0][0])
    assert body["failure"]["retry_count"] == 1 and body["failure"]["message"] == "second"
    assert dead[0][1] == pytest.approx(time.time() + 180 * 86400, abs=60)


def test_scheduled_job_enqueued_when_due(client: Client) -> None:
    at = time.time() + 1.0
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1e6):06d}Z"
    j = job(at=stamp, queue="later")
    client.push(j)
    assert client.info()["faktory"]["sets"]["scheduled"] == 1
    got = client.fetch("later") or client.fetch("later")
    assert got["jid"] == j["jid"] and got["at"] == stamp and "enqueued_at" in got
    assert time.time() - at < 1.0


def test_reservation_expiry_fails_the_job(client: Client, server: FaktoryServer) -> None:
    j = job(reserve_for=60)
    client.push(j)
    client.fetch()
    r = server.redis()
    assert r.zscore("working", j["jid"]) == pytest.approx(time.time() + 60, abs=5)
    r.zadd("working", {j["jid"]: time.time() - 1})  # as if 60 s had passed
    member = None
    deadline = time.monotonic() + 5
    while member is None and time.monotonic() < deadline:
        found = r.zrange("retries", 0, -1)
        member = found[0] if found else None
        if member is None:
            client.fetch("expiry-wait-q")  # a 2 s wait on the server's clock
    assert member is not None
    failure = json.loads(member)["failure"]
    assert failure["errtype"] == "ReservationExpired"
    assert failure["message"] == "Faktory job reservation expired"
    assert client.ack(j["jid"]) == "OK" and client.info()["faktory"]["sets"]["working"] == 0


def test_beat_and_worker_states(server: FaktoryServer, client: Client) -> None:
    with pytest.raises(ReplyError, match="^ERR unknown worker nobody$"):
        client.call('BEAT {"wid":"nobody"}')
    w1 = server.client(wid="worker-1")
    w2 = server.client(wid="worker-1")  # a second connection of the same worker
    assert w1.call('BEAT {"wid":"worker-1","rss_kb":1000}') == "OK"
    with pytest.raises(ReplyError, match="^ERR invalid BEAT"):
        w1.call('BEAT {"wid":"worker-1","rss_kb":"big"}')
    assert w1.call('BEAT {"wid":"worker-1","current_state":"quiet"}') == '{"state":"quiet"}'
    client.push(job(jid="quietjob"))
    t0 = time.monotonic()
    assert w2.fetch() is None  # quiet applies to every connection of the wid
    assert time.monotonic() - t0 > 1.5
    assert w2.call('BEAT {"wid":"worker-1","current_state":"terminate"}') == '{"state":"terminate"}'
    assert w1.call('BEAT {"wid":"worker-1"}') == '{"state":"terminate"}'
    assert client.fetch()["jid"] == "quietjob"
    w1.close()
    w2.close()


def test_info_shape(client: Client) -> None:
    client.push(job(queue="a"))
    info = client.info()
    assert list(info) == ["now", "server_utc_time", "faktory", "server"]
    f = info["faktory"]
    assert f["queues"] == {"a": 1} and f["total_queues"] == 1 and f["total_enqueued"] == 1
    assert set(f["tasks"]) == {"Busy", "Dead", "Retries", "Scheduled", "Workers"}
    assert f["tasks"]["Scheduled"]["cycles"] > 0
    s = info["server"]
    assert s["description"] == "Faktory" and s["faktory_version"] == "1.10.0"
    assert s["connections"] >= 1 and s["command_count"] >= 1 and isinstance(s["uptime"], int)
    assert re.fullmatch(r"\d\d:\d\d:\d\d UTC", info["server_utc_time"])


def test_flush_resets_everything(client: Client) -> None:
    client.push(job(queue="old"))
    client.call("QUEUE PAUSE old")
    assert client.call("FLUSH") == "OK"
    f = client.info()["faktory"]
    assert f["queues"] == {} and f["total_queues"] == 0


def test_queue_commands(client: Client) -> None:
    client.push(job(queue="qa"))
    client.push(job(queue="qb"))
    assert client.call("QUEUE PAUSE qa unknownq") == "OK"
    t0 = time.monotonic()
    assert client.fetch("qa") is None and time.monotonic() - t0 > 1.5
    assert client.call("QUEUE resume *") == "OK"  # the sub-verb is case-insensitive
    lat = json.loads(client.call("QUEUE LATENCY qa qb nope"))
    assert set(lat) == {"qa", "qb", "nope"} and lat["nope"] == 0 and 0 < lat["qa"] < 10
    with pytest.raises(ReplyError, match="^ERR QUEUE LATENCY does not support wildcards$"):
        client.call("QUEUE LATENCY *")
    with pytest.raises(ReplyError, match="^ERR no such QUEUE subcommand: FROB$"):
        client.call("QUEUE frob qa")
    assert client.call("QUEUE REMOVE qa") == "OK"
    assert client.info()["faktory"]["queues"] == {"qb": 1}


@pytest.mark.parametrize("sub", ["PAUSE", "RESUME", "REMOVE"])
def test_queue_commands_check_names_as_push_does(client: Client, server: FaktoryServer,
                                                 sub: str) -> None:
    # "x:p9" named queue x's list of priority-9 jobs: QUEUE REMOVE x:p9 used to delete them.
    j = job(queue="x", priority=9)
    client.push(j)
    for bad in ("x:p9", "a/b", "q\u00e9"):
        with pytest.raises(ReplyError) as exc:
            client.call(f"QUEUE {sub} qb {bad}")
        assert str(exc.value) == (f'ERR cannot get "{bad}" queue: queue names must match '
                                  "\\A[a-zA-Z0-9._-]+\\z")
    assert client.call(f"QUEUE {sub} x") == "OK"  # good names and * still work
    assert client.call(f"QUEUE {sub} *") == "OK"
    if sub != "REMOVE":
        assert client.call("QUEUE RESUME *") == "OK"
        assert client.fetch("x")["jid"] == j["jid"]
    assert server.redis().smembers("paused") == set()


def test_mutate(client: Client, server: FaktoryServer) -> None:
    future = "2099-01-01T00:00:00Z"
    a, b, c = job(at=future), job(at=future), job(jobtype="Other", at=future, queue="mq")
    for j in (a, b, c):
        client.push(j)
    with pytest.raises(ReplyError, match="^ERR invalid format$"):
        client.call('MUTATE {"cmd": "kill", "target": "scheduled"}')
    with pytest.raises(ReplyError, match="^ERR unknown mutate operation$"):
        client.call('MUTATE {"cmd":"explode","target":"scheduled"}')
    with pytest.raises(ReplyError, match="^ERR invalid target for mutation command$"):
        client.call('MUTATE {"cmd":"kill","target":"queues"}')
    op = {"cmd": "kill", "target": "scheduled", "filter": {"jids": [a["jid"]]}}
    assert client.call("MUTATE " + json.dumps(op, separators=(",", ":"))) == "OK"
    op = {"cmd": "requeue", "target": "scheduled", "filter": {"jobtype": "Other"}}
    assert client.call("MUTATE " + json.dumps(op, separators=(",", ":"))) == "OK"
    f = client.info()["faktory"]
    assert f["sets"] == {"dead": 1, "retries": 0, "scheduled": 1, "working": 0} and f["queues"] == {"mq": 1}
    assert client.call('MUTATE {"cmd":"clear","target":"scheduled"}') == "OK"
    assert client.info()["faktory"]["sets"]["scheduled"] == 0 and b


def test_mutate_of_many_jids_over_a_big_set_holds_redis_briefly(client: Client,
                                                                 server: FaktoryServer) -> None:
    """MUTATE naming 5,000 jids over 20,000 retries: each entry is looked up once (not once per
    jid: 10^8 substring searches in one call before), a page of the set per Redis call."""
    r = server.redis()
    r.zadd("retries", {json.dumps({"jid": f"r{i:06d}", "jobtype": "T", "queue": "q", "args": [i],
                                   "retry": 25}, separators=(",", ":")): 4e9 + i  # not due
                       for i in range(20_000)})
    jids = [f"r{i:06d}" for i in range(0, 20_000, 4)]
    op = {"cmd": "kill", "target": "retries", "filter": {"jids": jids}}
    with slow_redis_calls(r, 50) as slow:
        assert client.call("MUTATE " + json.dumps(op, separators=(",", ":"))) == "OK"
    assert slow == []
    assert r.zcard("dead") == 5_000 and r.zcard("retries") == 15_000
    r.close()


def test_mutate_requeue_follows_the_requeue_rule(client: Client, server: FaktoryServer) -> None:
    """MUTATE requeue moves a job as the scheduler and the web UI do (jobs.requeue): priority
    clamped to 1-9 (a list FETCH reads), a fresh enqueued_at, and an entry whose queue name is
    not one PUSH accepts stays where it is."""
    stale = "2020-01-01T00:00:00Z"
    high = job(queue="mq", priority=12, enqueued_at=stale)
    bad = job(queue="no:such", enqueued_at=stale)
    r = server.redis()
    # Not due (MUTATE requeues them anyway): else the scheduler may move them first.
    r.zadd("retries", {json.dumps(high): 4e9, json.dumps(bad): 4e9 + 1})
    op = {"cmd": "requeue", "target": "retries", "filter": {}}
    assert client.call("MUTATE " + json.dumps(op, separators=(",", ":"))) == "OK"
    got = client.fetch("mq")
    assert got["jid"] == high["jid"] and got["priority"] == 9 and got["enqueued_at"] != stale
    assert [json.loads(m)["jid"] for m in r.zrange("retries", 0, -1)] == [bad["jid"]]
    assert not r.exists("q:no:such")
    r.close()


def test_end_closes_without_reply(server: FaktoryServer) -> None:
    c = server.client()
    c.send("END")
    assert c.closed_by_server() and c.buf == b""


# -- a server with a password and small limits -------------------------------------------

@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory):
    srv = FaktoryServer(str(tmp_path_factory.mktemp("strict")), processes=1, password="sekrit",
                        args=["--max-line", "4096", "--max-connections", "3"]).start()
    yield srv
    srv.stop()


def test_password_handshake(strict: FaktoryServer) -> None:
    c = strict.client(hello=False)
    hi = json.loads(c.hi[3:])
    assert list(hi) == ["v", "i", "s"] and 4000 <= hi["i"] <= 8095 and re.fullmatch(r"[0-9a-f]{1,16}", hi["s"])
    c.send('HELLO {"v":2,"pwdhash":"%s"}' % pwdhash("wrong", hi["s"], hi["i"]))
    with pytest.raises(ReplyError, match="^ERR Invalid password$"):
        c.read_reply()
    assert c.closed_by_server()
    ok = strict.client()  # right password, i iterations
    assert ok.call("INFO")
    ok.close()
    v1 = strict.client(v=None)  # no "v": one SHA-256 round (the Python `faktory` client)
    assert v1.call("INFO")
    v1.close()


def test_line_too_long(strict: FaktoryServer) -> None:
    c = strict.client()
    c.sock.sendall(b"INFO\r\nPUSH " + b"x" * 5000 + b"\r\n")
    assert c.read_reply().startswith("{")  # the command before it is answered
    with pytest.raises(ReplyError, match="^ERR line too long"):
        c.read_reply()
    assert c.closed_by_server()


def test_too_many_connections(strict: FaktoryServer) -> None:
    r = strict.redis()
    wait_for(lambda: sum(int(v) for v in r.hvals("ff:conns")) == 0)  # earlier tests' closes
    clients = [strict.client() for _ in range(3)]
    with pytest.raises(ReplyError, match="^handshake failed|^ERR too many connections: 4$"):
        strict.client()
    clients.pop().close()
    deadline = time.monotonic() + 5
    while True:  # the freed slot is released when the server sees the close
        try:
            extra = strict.client()
            break
        except ReplyError:
            assert time.monotonic() < deadline
    extra.close()
    for c in clients:
        c.close()


def test_job_fetched_for_a_departed_client_goes_back(server: FaktoryServer, client: Client) -> None:
    r = server.redis()
    conns = lambda: sum(int(v) for v in r.hvals("ff:conns"))  # noqa: E731
    gone = server.client()
    before = conns()
    gone.send("FETCH leftq")
    wait_for(lambda: r.exists("ff:wait:leftq"))  # parked in FETCH
    gone.close()
    wait_for(lambda: conns() == before - 1)  # the server has seen the close
    j = job(queue="leftq")
    client.push(j)
    got = client.fetch("leftq")
    assert got is not None and got["jid"] == j["jid"]
    assert client.info()["faktory"]["sets"]["working"] == 1


def test_idle_fetch_loop_does_not_poll_redis(server: FaktoryServer, client: Client) -> None:
    """A FETCH on a queue known to be empty waits for a wake-up instead of asking Redis."""
    with redis_commands(server) as seen:
        assert client.fetch("idleq") is None
        assert client.fetch("idleq") is None
        assert client.fetch("idleq") is None
    fetches = [c for c in seen if "ff_fetch" in c and "idleq" in c]
    assert len(fetches) == 1, fetches
    j = job(queue="idleq")
    client.push(j)
    assert client.fetch("idleq")["jid"] == j["jid"]  # and a push still wakes it


def test_one_push_wakes_one_parked_fetcher(server: FaktoryServer, client: Client) -> None:
    """No thundering herd: a job for ten parked FETCHes costs one successful Redis fetch and at
    most one more that finds the queue empty, not one per fetcher."""
    r = server.redis()
    parked = [server.client() for _ in range(10)]
    for c in parked:
        c.send("FETCH herdq")
    wait_for(lambda: r.exists("ff:wait:herdq"))
    with redis_commands(server) as seen:
        client.push(job(queue="herdq"))
        replies = [c.read_reply() for c in parked]  # each answers within its 2 s wait
    assert sum(1 for x in replies if x) == 1
    fetches = [c for c in seen if "ff_fetch" in c and "herdq" in c]
    handed = [c for c in seen if "ff_push_to" in c]  # the pushing process had one parked
    assert len(handed) <= 1 and 1 <= len(fetches) + len(handed), seen
    assert len(fetches) <= 2 * 2, fetches  # two server processes: each may look once more


def test_a_push_for_a_parked_fetch_is_one_redis_call(tmp_path) -> None:
    """A PUSH that finds a FETCH of its own process waiting on the queue reserves the job for
    it in the same Redis call: no wake-up, no FETCH of Redis. (One server process, so the
    two connections share it.)"""
    srv = FaktoryServer(str(tmp_path), processes=1).start()
    try:
        r = srv.redis()
        producer, consumer = srv.client(), srv.client()
        consumer.send("FETCH other handq")
        wait_for(lambda: r.exists("ff:wait:handq"))
        pushed = job(queue="handq", reserve_for=300)
        with redis_commands(srv) as seen:
            producer.push(pushed)
            got = consumer.read_reply()
        assert json.loads(got)["jid"] == pushed["jid"]
        calls = [c for c in seen if c.startswith("FCALL")]
        assert len(calls) == 1 and calls[0].startswith("FCALL ff_push_to "), seen
        assert not any("PUBLISH" in c for c in seen), seen
        assert r.zscore("working", pushed["jid"]) is not None
        assert consumer.ack(pushed["jid"]) == "OK"
        assert r.hlen("ff:res") == 0 and r.get("processed") == b"1"
        # A job of another priority (or scheduled, or with custom) goes the usual way.
        consumer.send("FETCH handq")
        wait_for(lambda: r.exists("ff:wait:handq"))
        urgent = job(queue="handq", priority=9)
        with redis_commands(srv) as seen:
            producer.push(urgent)
            assert json.loads(consumer.read_reply())["jid"] == urgent["jid"]
        assert not any("ff_push_to" in c for c in seen) and any("ff_fetch" in c for c in seen)
    finally:
        srv.stop()
