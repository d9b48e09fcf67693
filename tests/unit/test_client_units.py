"""The client package's pure parts: URLs and the environment, the password hash (the
reference's test vectors), reply lines, job encoding."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from faktory_fast_client import Job, ServerError
from faktory_fast_client.commands import mutate, push, track_set
from faktory_fast_client.protocol import Bulk, hello, parse_line, pwdhash
from faktory_fast_client.url import parse_url


def test_urls_and_environment() -> None:
    a = parse_url(None, {})
    assert (a.host, a.port, a.tls, a.password) == ("localhost", 7419, False, None)
    a = parse_url("tcp+tls://user:p%40ss@faktory.example:7500", {})
    assert (a.host, a.port, a.tls, a.password, a.username) == \
        ("faktory.example", 7500, True, "p@ss", "user")
    assert a.url == "tcp+tls://faktory.example:7500"  # no credentials
    env = {"FAKTORY_PROVIDER": "FK", "FK": "tcp://h:1", "FAKTORY_URL": "tcp://other:2",
           "FAKTORY_PASSWORD": "envpw"}
    a = parse_url(None, env)
    assert (a.host, a.port, a.password) == ("h", 1, "envpw")
    assert parse_url(None, {"FAKTORY_URL": "localhost:7000"}).port == 7000
    with pytest.raises(ValueError, match="names an environment variable"):
        parse_url(None, {"FAKTORY_PROVIDER": "tcp://x:1"})
    with pytest.raises(ValueError, match="not set"):
        parse_url(None, {"FAKTORY_PROVIDER": "NOPE"})
    with pytest.raises(ValueError, match="scheme"):
        parse_url("redis://x", {})


def test_password_hash_vectors_and_hello() -> None:
    assert pwdhash("foobar", "55104dc76695721d", 1545) == \
        "6d877f8e5544b1f2598768f817413ab8a357afffa924dedae99eb91472d4ec30"
    assert pwdhash("foobar", "123456789abc", 1) == \
        "d30ae2acf55b9e6896725c3b4a2c1d26554ad2e1111c1b29056aa909f8260e39"
    line = hello('HI {"v":2,"i":1735,"s":"123456789abc"}', password="foobar", wid="w1",
                 labels=["x"], hostname="h", pid=7)
    assert line.startswith(b"HELLO {") and line.endswith(b"\r\n") and b" " not in line[6:]
    payload = json.loads(line[6:])
    assert payload == {"v": 2, "hostname": "h", "pid": 7, "labels": ["x"], "wid": "w1",
                       "pwdhash": "a5a2b31ef99fae2524b571d238bab3bc1c437bdecddd3550335fdf17997e7f3f"}


def test_reply_lines() -> None:
    assert parse_line(b"+OK\r\n") == "OK"
    assert parse_line(b"$12\r\n") == 12 and isinstance(parse_line(b"$12"), Bulk)
    assert parse_line(b"$-1\r\n") is None
    assert parse_line(b":5\r\n") == 5
    with pytest.raises(ServerError) as err:
        parse_line(b"-NOTUNIQUE Job not unique\r\n")
    assert (err.value.code, err.value.message, str(err.value)) == \
        ("NOTUNIQUE", "Job not unique", "NOTUNIQUE Job not unique")


def test_job_encoding() -> None:
    at = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    job = Job("T", [1], at=at, retry=0, reserve_for=90, priority=5).set_custom("a", "é")
    sent = json.loads(push(job).line[5:])
    assert sent == {"jid": job.jid, "jobtype": "T", "args": [1], "queue": "default",
                    "at": "2030-01-02T01:04:05Z", "retry": 0, "reserve_for": 90, "priority": 5,
                    "custom": {"a": "é"}}
    assert Job.from_dict({**sent, "unknown": 1, "failure": {"retry_count": 1}}).failure == \
        {"retry_count": 1}
    assert b" " not in mutate("kill", "retries", jids=["a", "b"], regexp="*x*").line[7:]
    past = datetime.now(UTC) - timedelta(seconds=1)
    assert b"reserve_until" not in track_set("j", 1, reserve_until=past).line  # as Go
