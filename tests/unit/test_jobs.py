"""Unit tests of job validation, encoding, timestamps and the failure rules (no I/O)."""
from __future__ import annotations

import hashlib
import random

import orjson
import pytest

from faktory_fast import jobs
from faktory_fast.jobs import JobError

NOW = 1_767_225_600_123_456_789  # 2026-01-01T00:00:00.123456789Z


def test_rfc3339_trims_trailing_zeros() -> None:
    assert jobs.rfc3339(NOW) == "2026-01-01T00:00:00.123456789Z"
    assert jobs.rfc3339(1_767_225_600_100_000_000) == "2026-01-01T00:00:00.1Z"
    assert jobs.rfc3339(1_767_225_600_000_000_000) == "2026-01-01T00:00:00Z"


@pytest.mark.parametrize("text,expected", [
    ("2026-01-01T00:00:00Z", 1_767_225_600_000_000_000),
    ("2026-01-01T00:00:00.5Z", 1_767_225_600_500_000_000),
    ("2026-01-01T01:00:00+01:00", 1_767_225_600_000_000_000),
    ("2025-12-31T19:00:00.123456789-05:00", 1_767_225_600_123_456_789),
])
def test_parse_rfc3339(text: str, expected: int) -> None:
    assert jobs.parse_rfc3339(text) == expected


@pytest.mark.parametrize("text", ["tomorrow", "2026-01-01", "2026-01-01 00:00:00Z",
                                  "2026-02-30T00:00:00Z", "2026-01-01T00:00:00"])
def test_parse_rfc3339_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        jobs.parse_rfc3339(text)


def test_prepare_defaults_and_order() -> None:
    p = jobs.prepare({"args": [1], "jobtype": "T", "jid": "abcdefgh", "extra": 1, "priority": 5}, NOW)
    assert p.queue == "default" and p.priority == 5 and p.at_score == ""
    doc = orjson.loads(p.payload)
    assert list(doc) == ["jid", "retry", "queue", "jobtype", "created_at", "enqueued_at", "args"]
    assert doc["retry"] == 25
    assert doc["created_at"] == doc["enqueued_at"] == jobs.rfc3339(NOW)


def test_encode_writes_what_redis_reads_first() -> None:
    """jid, retry, reserve_for and the custom object's hook keys (scalars only) lead, in that
    order, so that lua/jobs.lua's job_head reads them with anchored matches; a '"' in the
    jid or a hook key's string is \\u0022, so each ends at the next '"'."""
    job = {"args": [{"custom": 1}], "jobtype": "T", "jid": 'ab"cd\\efgh', "reserve_for": 90,
           "failure": {"retry_count": 1}, "retry": 3, "queue": "q",
           "custom": {"user": [1], "expires_at": "2030-01-01T00:00:00Z", "track": {"deep": 1},
                      "unique_for": 60, "bid": 'b"id', "_bid": None}}
    raw = jobs.encode(job)
    assert raw.startswith(b'{"jid":"ab\\u0022cd\\\\efgh","retry":3,"reserve_for":90,"custom":'
                          b'{"bid":"b\\u0022id","_bid":null,"unique_for":60,'
                          b'"expires_at":"2030-01-01T00:00:00Z","user":[1],"track":{"deep":1}},'
                          b'"failure":')
    decoded = orjson.loads(raw)
    assert decoded["jid"] == 'ab"cd\\efgh' and decoded["custom"] == job["custom"]
    assert decoded["args"] == job["args"] and "priority" not in decoded


def test_unique_name_is_the_cjson_canonical_form() -> None:
    """Object keys sorted, cjson's escapes and 14 digits ({} for an empty array); with a number
    14 digits would change, the JSON text with members sorted."""
    def name(args: object) -> str:
        return jobs.unique_name("T", "q", args)

    def sha(text: bytes) -> str:
        return hashlib.sha1(b"T\0q\0" + text).hexdigest()
    assert name([1, "a/b", [], 0.1, 1e15]) == sha(b'[1,"a\\/b",{},0.1,1e+15]')
    assert (name([{"b": 1, "a": [2, {"d": None, "c": True}]}])
            == name([{"a": [2, {"c": True, "d": None}], "b": 1}]))
    assert name([{"b": 1, "a": 2}]) == sha(b'[{"a":2,"b":1}]')
    assert name([12345678901234567, {"b": "x/y", "a": 1.5}]) == sha(
        b'[12345678901234567,{"a":1.5,"b":"x/y"}]')
    assert name([12345678901234567]) != name([12345678901234568])
    assert name([123456789012345]) != name([123456789012346])  # 15 digits: the text's


def test_prepare_keeps_retry_zero_and_null_means_default() -> None:
    assert orjson.loads(jobs.prepare({"jid": "abcdefgh", "jobtype": "T", "args": [], "retry": 0},
                                     NOW).payload)["retry"] == 0
    assert orjson.loads(jobs.prepare({"jid": "abcdefgh", "jobtype": "T", "args": [], "retry": None},
                                     NOW).payload)["retry"] == 25


@pytest.mark.parametrize("job,message", [
    ({"jid": "short", "jobtype": "T", "args": []}, "jobs must have a reasonable jid parameter"),
    ({"jobtype": "T", "args": []}, "jobs must have a reasonable jid parameter"),
    ({"jid": "abcdefgh", "args": []}, "jobs must have a jobtype parameter"),
    ({"jid": "abcdefgh", "jobtype": "T"}, "jobs must have an args parameter"),
    ({"jid": "abcdefgh", "jobtype": "T", "args": None}, "jobs must have an args parameter"),
    ({"jid": "abcdefgh", "jobtype": "T", "args": [], "reserve_for": 86401},
     "jobs cannot be reserved for more than one day"),
    ({"jid": "abcdefgh", "jobtype": "T", "args": [], "queue": "bad queue"},
     'cannot get "bad queue" queue: queue names must match \\A[a-zA-Z0-9._-]+\\z'),
])
def test_prepare_validation_messages(job: dict, message: str) -> None:
    with pytest.raises(JobError) as exc:
        jobs.prepare(job, NOW)
    assert str(exc.value) == message


@pytest.mark.parametrize("job", [
    {"jid": "abcdefgh", "jobtype": "T", "args": {}},
    {"jid": "abcdefgh", "jobtype": "T", "args": [], "retry": "5"},
    {"jid": "abcdefgh", "jobtype": "T", "args": [], "reserve_for": 60.5},
    {"jid": "abcdefgh", "jobtype": "T", "args": [], "custom": []},
    {"jid": "abcdefgh", "jobtype": "T", "args": [], "retry": True},
    ["not", "an", "object"],
])
def test_type_errors_are_invalid_json(job: object) -> None:
    with pytest.raises(JobError) as exc:
        jobs.prepare(job, NOW)
    assert str(exc.value).startswith("invalid JSON: json: cannot unmarshal")


def test_bad_at_timestamp() -> None:
    with pytest.raises(JobError) as exc:
        jobs.prepare({"jid": "abcdefgh", "jobtype": "T", "args": [], "at": "soon"}, NOW)
    assert str(exc.value).startswith("invalid timestamp for 'at': \"soon\": parsing time")


def test_future_at_is_scheduled_without_queue_check() -> None:
    p = jobs.prepare({"jid": "abcdefgh", "jobtype": "T", "args": [], "queue": "bad queue",
                      "at": "2099-01-01T00:00:00Z"}, NOW)
    assert p.at_score == "4070908800.000000000"
    assert "enqueued_at" not in orjson.loads(p.payload)


def test_past_at_enqueues_and_keeps_at() -> None:
    p = jobs.prepare({"jid": "abcdefgh", "jobtype": "T", "args": [], "at": "2000-01-01T00:00:00Z"}, NOW)
    doc = orjson.loads(p.payload)
    assert p.at_score == "" and doc["at"] == "2000-01-01T00:00:00Z" and "enqueued_at" in doc


def test_priority_is_clamped_and_kept_only_when_not_default() -> None:
    base = {"jid": "abcdefgh", "jobtype": "T", "args": []}
    assert jobs.prepare({**base, "priority": 9}, NOW).priority == 9
    assert jobs.prepare({**base, "priority": 42}, NOW).priority == 9
    assert jobs.prepare({**base, "priority": 0}, NOW).priority == 1
    assert jobs.prepare({**base, "priority": "high"}, NOW).priority == 5
    assert orjson.loads(jobs.prepare({**base, "priority": 2}, NOW).payload)["priority"] == 2


def test_backoff_formula_bounds() -> None:
    for count in (0, 1, 5, 24):
        values = {jobs.backoff(count, random.Random(seed)) for seed in range(200)}
        assert min(values) >= count**4 + 15
        assert max(values) <= count**4 + 15 + 29 * (count + 1)


def _job(**fields: object) -> bytes:
    return orjson.dumps({"retry": 25, "jid": "abcdefgh", "queue": "default", "jobtype": "T",
                         "args": [], **fields})


def test_first_failure_schedules_retry() -> None:
    info = jobs.FailInfo("E", "msg", ["a", "b"])
    outcome, payload, score = jobs.apply_failure(_job(), info, NOW, random.Random(1))
    doc = orjson.loads(payload)
    assert outcome == "retry"
    f = doc["failure"]
    assert list(f) == ["failed_at", "next_at", "message", "errtype", "backtrace", "retry_count",
                       "remaining"]
    assert f["retry_count"] == 0 and f["remaining"] == 25 and f["failed_at"] == jobs.rfc3339(NOW)
    delay = float(score) - NOW / 1e9
    assert 15 <= delay <= 44
    assert list(doc)[:3] == ["jid", "retry", "failure"]


def test_later_failure_counts_and_keeps_failed_at() -> None:
    first = {"failed_at": "2020-01-01T00:00:00Z", "retry_count": 3, "remaining": 22,
             "message": "old", "errtype": "Old"}
    outcome, payload, _ = jobs.apply_failure(_job(failure=first), jobs.FailInfo("E", "new", []), NOW)
    f = orjson.loads(payload)["failure"]
    assert outcome == "retry"
    assert (f["retry_count"], f["remaining"], f["failed_at"], f["message"]) == (4, 21, "2020-01-01T00:00:00Z", "new")
    assert "backtrace" not in f


def test_exhausted_retries_die_and_zero_discards_and_negative_dies() -> None:
    info = jobs.FailInfo("E", "m", [])
    done = {"failed_at": "x", "retry_count": 1, "remaining": 1}
    outcome, _, score = jobs.apply_failure(_job(retry=2, failure=done), info, NOW)
    assert outcome == "dead" and float(score) == pytest.approx(NOW / 1e9 + 180 * 86400)
    assert jobs.apply_failure(_job(retry=0), info, NOW)[0] == "discard"
    outcome, payload, _ = jobs.apply_failure(_job(retry=-1), info, NOW)
    assert outcome == "dead" and orjson.loads(payload)["failure"]["remaining"] == -1


def test_fail_info_cleansing() -> None:
    jid, info = jobs.fail_info(orjson.dumps({"jid": "j1", "errtype": "  ", "message": "x" * 2000,
                                             "backtrace": [str(i) for i in range(80)]}))
    assert jid == "j1" and info.errtype == "unknown" and len(info.message) == 1000
    assert len(info.backtrace) == 50
    with pytest.raises(JobError, match="missing JID"):
        jobs.fail_info(b'{"message":"m"}')
    with pytest.raises(JobError, match="invalid FAIL"):
        jobs.fail_info(b'{"jid":1}')


def test_requeue_refreshes_enqueued_at_and_refuses_what_push_would() -> None:
    queue, prio, payload = jobs.requeue(_job(enqueued_at="2000-01-01T00:00:00Z"), NOW)
    assert (queue, prio) == ("default", 5)
    assert orjson.loads(payload)["enqueued_at"] == jobs.rfc3339(NOW)
    for member, message in [
        (_job(queue="no way"), 'cannot get "no way" queue'),
        (_job(queue=5), "invalid JSON: json: cannot unmarshal number into Go struct field "
                        "Job.queue"),
        (b"not json", "invalid JSON: "),
        (b"[1]", "invalid JSON: json: cannot unmarshal array into Go value of type client.Job"),
        (_job(jid=""), "jobs must have a reasonable jid parameter"),
        (_job(failure={"retry_count": "x"}), "invalid JSON: json: cannot unmarshal string into "
                                             "Go struct field Failure.failure.retry_count"),
        (_deep_job(300), jobs.TOO_DEEP),
    ]:
        with pytest.raises(JobError) as exc:
            jobs.requeue(member, NOW)
        assert str(exc.value).startswith(message), member


def _deep(levels: int) -> list:
    """A list nesting ``levels`` levels deep (itself included)."""
    out: list = []
    for _ in range(levels - 1):
        out = [out]
    return out


def _deep_job(levels: int) -> bytes:
    """Stored JSON of a job nesting ``levels`` deep (orjson cannot write it)."""
    return (b'{"retry":25,"jid":"abcdefgh","queue":"default","jobtype":"T","args":'
            + b"[" * (levels - 1) + b"]" * (levels - 1) + b"}")


@pytest.mark.parametrize("failure,field,gotype", [
    ({"retry_count": "x"}, "retry_count", "int"),
    ({"retry_count": True}, "retry_count", "int"),
    ({"remaining": 2.5}, "remaining", "int"),
    ({"failed_at": 1}, "failed_at", "string"),
    ({"next_at": []}, "next_at", "string"),
    ({"message": {}}, "message", "string"),
    ({"errtype": 0}, "errtype", "string"),
    ({"backtrace": "x"}, "backtrace", "[]string"),
    ({"backtrace": ["ok", None]}, "backtrace", "string"),
])
def test_failure_fields_are_type_checked(failure: dict, field: str, gotype: str) -> None:
    # apply_failure reads these back at the next FAIL: a bad one made every FAIL of the job,
    # and the reaper when its reservation expired, raise.
    with pytest.raises(JobError) as exc:
        jobs.prepare({"jid": "abcdefgh", "jobtype": "T", "args": [], "failure": failure}, NOW)
    assert str(exc.value).startswith("invalid JSON: json: cannot unmarshal ")
    assert str(exc.value).endswith(
        f" into Go struct field Failure.failure.{field} of type {gotype}")
    with pytest.raises(JobError):
        jobs.apply_failure(_job(failure=failure), jobs.EXPIRED, NOW)


def test_valid_and_null_failure_fields_pass() -> None:
    full = {"failed_at": "2026-01-01T00:00:00Z", "next_at": "2026-01-02T00:00:00Z", "message": "m",
            "errtype": "E", "backtrace": ["a", "b"], "retry_count": 3, "remaining": 2}
    assert orjson.loads(jobs.prepare({"jid": "abcdefgh", "jobtype": "T", "args": [],
                                      "failure": full}, NOW).payload)["failure"] == full
    nulls = dict.fromkeys(full)
    jobs.prepare({"jid": "abcdefgh", "jobtype": "T", "args": [], "failure": nulls}, NOW)


def test_nesting_limit_names_the_limit() -> None:
    base = {"jid": "abcdefgh", "jobtype": "T"}
    jobs.prepare({**base, "args": _deep(jobs.MAX_DEPTH - 1)}, NOW)  # the job itself is level 1
    for depth in (jobs.MAX_DEPTH, 500):
        with pytest.raises(JobError) as exc:
            jobs.prepare({**base, "args": _deep(depth)}, NOW)
        assert str(exc.value) == "jobs cannot nest more than 254 levels deep"
    with pytest.raises(JobError) as exc:
        jobs.prepare({**base, "args": [], "custom": {"k": _deep(300)}}, NOW)
    assert str(exc.value) == jobs.TOO_DEEP
    with pytest.raises(JobError) as exc:  # past orjson's decoding limit too
        jobs.loads(b"[" * 2000 + b"]" * 2000)
    assert str(exc.value) == jobs.TOO_DEEP


def test_aside_entry_is_a_dead_job_saying_why_or_nothing() -> None:
    entry = jobs.aside_entry(_job(retry=3, failure={"retry_count": "x", "failed_at": 7}), "why",
                             NOW)
    doc = orjson.loads(entry)
    assert doc["jid"] == "abcdefgh" and doc["retry"] == 3
    assert doc["failure"] == {"failed_at": jobs.rfc3339(NOW), "message": "why",
                              "errtype": "InvalidJob", "retry_count": 0, "remaining": 0}
    kept = {"failed_at": "2020-01-01T00:00:00Z", "retry_count": 4, "remaining": 1, "message": "m"}
    doc = orjson.loads(jobs.aside_entry(_job(queue="a b", failure=kept), "bad queue", NOW))
    assert doc["failure"] == {"failed_at": "2020-01-01T00:00:00Z", "message": "bad queue",
                              "errtype": "InvalidJob", "retry_count": 4, "remaining": 1}
    assert doc["queue"] == "a b"
    for raw in (b"not json", b"[1, 2]", _job(jid=""), _job(jid=5), _job(retry="5"),
                _deep_job(300)):
        assert jobs.aside_entry(raw, "why", NOW) == b"", raw
