"""The web UI through Falcon's test client, against a real child Redis (no protocol server)."""
from __future__ import annotations

import base64
import os
import re
import subprocess
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
import redis
from falcon import testing
from prometheus_client.parser import text_string_to_metric_families

from faktory_fast import cron, jobs
from faktory_fast.master.redis_child import RedisChild
from faktory_fast.server import batches
from faktory_fast.stats import info_document
from faktory_fast.storage import keys
from faktory_fast.storage.ops.web import WEB_QUEUE_SCAN
from faktory_fast.storage.redis_url import redis_location
from faktory_fast.storage.store import SyncStore
from faktory_fast.web import bounded, charts, i18n, render, resources
from faktory_fast.web.app import create_app
from faktory_fast.web.security import CSRF_COOKIE, CSRF_FIELD
from faktory_fast.web.settings import Settings
from tests.support import ROOT, slow_redis_calls

FORM = "application/x-www-form-urlencoded"
TOKEN = "t" * 43


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    child = RedisChild(str(tmp_path_factory.mktemp("webredis")))
    child.start()
    SyncStore.connect(child.url).load_library()
    yield child.url
    child.stop()


@pytest.fixture
def store(redis_url: str) -> Iterator[SyncStore]:
    r = redis.Redis(unix_socket_path=redis_url[len("unix://"):])
    r.flushdb()
    r.close()
    yield SyncStore.connect(redis_url)


@pytest.fixture
def web(store: SyncStore, redis_url: str) -> Web:
    return Web(redis_url)


@pytest.fixture
def r(store: SyncStore, redis_url: str) -> Iterator[redis.Redis]:
    """A plain client of the test Redis (the store's has no reply callbacks): SLOWLOG."""
    client = redis.Redis(unix_socket_path=redis_url[len("unix://"):])
    yield client
    client.close()


class Web:
    """A Falcon test client that behaves like a same-origin browser session."""

    def __init__(self, redis_url: str, password: str = "", **settings: Any) -> None:
        self.app = create_app(Settings(redis_url=redis_url, password=password, **settings))
        self.client = testing.TestClient(self.app)
        self.headers: dict[str, str] = {}

    def get(self, path: str, **kw: Any) -> testing.Result:
        return self.client.simulate_get(path, headers={**self.headers, **kw.pop("headers", {})}, **kw)

    def post(self, path: str, fields: list[tuple[str, str]] | dict, token: str | None = TOKEN,
             headers: dict[str, str] | None = None) -> testing.Result:
        pairs = list(fields.items()) if isinstance(fields, dict) else list(fields)
        if token is not None:
            pairs.append((CSRF_FIELD, token))
        h = {"Content-Type": FORM, "Cookie": f"{CSRF_COOKIE}={TOKEN}", "Sec-Fetch-Site": "same-origin",
             **self.headers, **(headers or {})}
        return self.client.simulate_post(path, body=urlencode(pairs), headers=h)


# -- data helpers -----------------------------------------------------------------------------

def push(store: SyncStore, jobtype: str = "SendEmail", args: list | None = None, **fields: Any) -> dict:
    job = {"jid": f"jid-{time.time_ns()}", "jobtype": jobtype,
           "args": [1, "x"] if args is None else args, **fields}
    store.push([jobs.prepare(dict(job), time.time_ns())])
    return job


def add_failed(store: SyncStore, zset: str = keys.RETRIES, jobtype: str = "SendEmail",
               args: list | None = None, queue: str = "default", at: float | None = None,
               jid: str | None = None, **fields: Any) -> tuple[str, str]:
    """A failed job put into a sorted set; returns its (score, jid)."""
    jid = jid or f"jid-{time.time_ns()}"
    job = {"jid": jid, "jobtype": jobtype, "args": [1, "x"] if args is None else args,
           "queue": queue, "retry": 25, "created_at": jobs.rfc3339(), **fields}
    prepared = jobs.prepare(job, time.time_ns())
    _, payload, score = jobs.apply_failure(
        prepared.payload, jobs.FailInfo("RuntimeError", "boom <b>", ["a.py:1", "b.py:2"]),
        time.time_ns())
    if at is not None:
        score = jobs.score(int(at * 1e9))
    store.client.execute_command("ZADD", zset, score, payload)
    got = store.client.execute_command("ZSCORE", zset, payload)
    return got.decode(), jid


def key_of(entry: tuple[str, str]) -> str:
    return f"{float(entry[0])!r}|{entry[1]}"


def members(store: SyncStore, zset: str) -> list[dict]:
    return [orjson.loads(m) for m in store.client.execute_command("ZRANGE", zset, 0, -1)]


def queued(store: SyncStore, name: str = "default") -> list[dict]:
    return [orjson.loads(j) for _, j in store.queue_page(name, 0, 1000)[1]]


# -- JSON routes ------------------------------------------------------------------------------

def test_stats_is_the_info_document(web: Web, store: SyncStore) -> None:
    push(store)
    got = web.get("/stats")
    assert got.status_code == 200 and got.headers["content-type"].startswith("application/json")
    assert got.headers["cache-control"] == "no-cache"
    doc = got.json
    want = info_document(store.info(), time.time())
    assert doc.keys() == want.keys() and doc["faktory"].keys() == want["faktory"].keys()
    assert doc["faktory"]["queues"] == {"default": 1}
    assert doc["faktory"]["tasks"]["Busy"]["size"] == 0


def test_health(web: Web) -> None:
    got = web.get("/health")
    assert got.status_code == 200
    assert got.json["server"]["description"] == "Faktory"
    assert set(got.json["server"]) == {"command_count", "connections", "description",
                                       "faktory_version"}


def test_metrics_prometheus_text(web: Web, store: SyncStore) -> None:
    push(store, queue="critical")
    push(store, queue="critical")
    add_failed(store)
    got = web.get("/metrics")
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = got.text
    assert 'faktory_queue_size{queue="critical"} 2' in text
    assert re.search(r'faktory_queue_latency_seconds\{queue="critical"\} [0-9.e-]+', text)
    assert 'faktory_set_size{set="retries"} 1' in text
    assert "# TYPE faktory_jobs_processed_total counter" in text
    for name in ("faktory_jobs_failed_total", "faktory_connections", "faktory_worker_processes"):
        assert re.search(rf"^{name} \d+$", text, re.M)


def test_metrics_of_job_types_parse_as_prometheus_text(store: SyncStore, redis_url: str) -> None:
    """faktory_jobs_total and faktory_job_duration_seconds from the job metrics' totals, read by
    Prometheus' own parser; beyond --metrics-job-types the quieter types are "other"."""
    minute = 29_000_000
    store.add_job_metrics({minute: {
        "default|Mail": "10 2 1500000 0:7 4:3",
        "critical|Mail": "1 0 10000 0:1",
        "default|Rare": "1 1 0",  # expired: counted, not timed
        "default|Odd\"Type": "2 0 2000 0:2",
    }}, 600, 7200, 1000)

    def families(web: Web) -> dict[str, list[Any]]:
        text = web.get("/metrics").text
        return {f.name: f.samples for f in text_string_to_metric_families(text)}

    got = families(Web(redis_url))
    jobs_total = {(s.labels["queue"], s.labels["jobtype"], s.labels["outcome"]): s.value
                  for s in got["faktory_jobs"]}
    assert jobs_total == {
        ("critical", "Mail", "success"): 1, ("critical", "Mail", "failure"): 0,
        ("default", "Mail", "success"): 8, ("default", "Mail", "failure"): 2,
        ("default", "Odd\"Type", "success"): 2, ("default", "Odd\"Type", "failure"): 0,
        ("default", "Rare", "success"): 0, ("default", "Rare", "failure"): 1}
    duration = {(s.name, s.labels["queue"], s.labels["jobtype"], s.labels.get("le")): s.value
                for s in got["faktory_job_duration_seconds"]}
    assert duration[("faktory_job_duration_seconds_bucket", "default", "Mail", "0.02")] == 7
    assert duration[("faktory_job_duration_seconds_bucket", "default", "Mail", "0.065")] == 7
    assert duration[("faktory_job_duration_seconds_bucket", "default", "Mail", "0.1")] == 10
    assert duration[("faktory_job_duration_seconds_bucket", "default", "Mail", "+Inf")] == 10
    assert duration[("faktory_job_duration_seconds_count", "default", "Mail", None)] == 10
    assert duration[("faktory_job_duration_seconds_sum", "default", "Mail", None)] == 1.5
    assert duration[("faktory_job_duration_seconds_count", "default", "Rare", None)] == 0

    # Only the busiest job type by name (Mail: 11 executions); the others summed as "other".
    got = families(Web(redis_url, metrics_job_types=1))
    assert {(s.labels["queue"], s.labels["jobtype"], s.labels["outcome"]): s.value
            for s in got["faktory_jobs"] if s.labels["jobtype"] == "other"} == {
        ("default", "other", "success"): 2, ("default", "other", "failure"): 1}
    assert {s.labels["jobtype"] for s in got["faktory_jobs"]} == {"Mail", "other"}


# -- pages ------------------------------------------------------------------------------------

def test_dashboard(web: Web, store: SyncStore) -> None:
    store.client.execute_command("SET", keys.daily(keys.PROCESSED, jobs.today()), 42)
    got = web.get("/")
    assert got.status_code == 200 and "text/html" in got.headers["content-type"]
    page = got.text
    assert 'id="live"' in page and 'data-stats="/stats"' in page
    assert "processed: <b>42</b>" in page  # history legend for 30 days
    for fact in ("Version", "Uptime", "Connections", "Redis memory"):
        assert fact in page
    for days in (7, 90, 180):
        assert web.get("/", params={"days": str(days)}).status_code == 200
    assert web.get("/", params={"days": "5"}).status_code == 400
    assert web.get("/", params={"days": "x"}).status_code == 400
    assert web.get("/", headers={"Accept": "text/html"}).headers["cache-control"] == "no-cache"


def test_summary_bar_on_every_page(web: Web, store: SyncStore) -> None:
    push(store)
    add_failed(store)
    add_failed(store, keys.DEAD)
    add_failed(store, keys.DEAD)
    for path in ("/", "/busy", "/queues", "/queues/default", "/retries", "/scheduled", "/morgue",
                 "/debug"):
        page = web.get(path).text
        assert re.search(r'data-stat="enqueued">1<', page), path
        assert re.search(r'data-stat="retries">1<', page), path
        assert re.search(r'data-stat="dead">2<', page), path
        assert 'data-stat="processed"' in page and 'data-stat="busy"' in page


def test_static_files_are_cacheable(web: Web) -> None:
    got = web.get("/static/app.js")
    assert got.status_code == 200 and got.headers["cache-control"] == "public, max-age=3600"


CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


def test_content_security_policy_on_every_response(store: SyncStore, redis_url: str) -> None:
    web = Web(redis_url)
    entry = add_failed(store)
    for path in ("/", "/busy", "/queues", "/retries", f"/retries/{key_of(entry)}", "/scheduled",
                 "/morgue", "/debug", "/stats", "/health", "/metrics", "/static/app.js",
                 "/no-such-page"):
        assert web.get(path).headers["content-security-policy"] == CSP, path
    post = web.post("/retries", [("action", "delete"), ("key", key_of(entry))])
    assert post.status_code == 302 and post.headers["content-security-policy"] == CSP
    refused = Web(redis_url, password="s3cret", environment="production").get("/")
    assert refused.status_code == 401 and refused.headers["content-security-policy"] == CSP


def test_pages_have_no_inline_script_or_style() -> None:
    # What the policy would block: inline <script>/<style>, on* handlers, style attributes,
    # javascript: URLs. app.js does all the scripting.
    folder = os.path.join(os.path.dirname(resources.__file__), "templates")
    for name in os.listdir(folder):
        with open(os.path.join(folder, name)) as fh:
            text = fh.read()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), name
        assert not re.search(r"<style\b|\sstyle=|\son[a-z]+=|javascript:", text, re.I), name
    assert not re.search(r"\sstyle=|\son[a-z]+=", str(charts.history_chart(
        ["2026-01-01", "2026-01-02"], [(1, 0), (2, 1)], lambda key, **kw: key)))


def test_retry_all_leaves_entries_that_are_not_jobs(web: Web, store: SyncStore) -> None:
    # "Retry all" used to drop them without a word; a lone bad entry must not loop either.
    good = [add_failed(store) for _ in range(3)]
    store.client.execute_command("ZADD", keys.RETRIES, 1, b"not json")
    store.client.execute_command("ZADD", keys.RETRIES, 2, b'{"jid":"bad-queue","jobtype":"T","args":[],'
                                               b'"queue":"a b"}')
    assert web.post("/retries", {"action": "retry", "key": "all"}).status_code == 302
    assert sorted(j["jid"] for j in queued(store)) == sorted(jid for _, jid in good)
    assert store.client.execute_command("ZRANGE", keys.RETRIES, 0, -1) == [
        b"not json", b'{"jid":"bad-queue","jobtype":"T","args":[],"queue":"a b"}']
    assert web.post("/retries", [("action", "retry"), ("key", "2.0|bad-queue")]).status_code == 302
    assert store.client.execute_command("ZCARD", keys.RETRIES) == 2


def test_busy_lists_processes_and_jobs_and_signals(web: Web, store: SyncStore) -> None:
    now = repr(time.time())
    store.hello("p1", 100, "w1", "box", 4242, b'["blue","big"]', 2, now)
    store.hello("p1", 100, "w2", "box2", 7, b"[]", 2, now)
    store.beat("w1", now, "", 20480)
    job = push(store, "Crunch", args=["<i>x</i>"])
    assert store.fetch("w1", "p1", now, 1800, ["default"])[2] == job["jid"].encode()
    page = web.get("/busy").text
    assert "box:4242" in page and "blue" in page and "big" in page and "20.0 MB" in page
    assert job["jid"] in page and "Crunch" in page and "&lt;i&gt;x&lt;/i&gt;" in page
    got = web.post("/busy", {"wid": "w1", "signal": "quiet"})
    assert got.status_code == 302 and got.headers["location"].endswith("/busy")
    states = {w["wid"]: w["state"] for w in store.workers()}
    assert states == {"w1": "quiet", "w2": "running"}
    assert ">quiet<" in web.get("/busy").text
    web.post("/busy", {"wid": "all", "signal": "terminate"})
    assert {w["state"] for w in store.workers()} == {"terminate"}
    assert web.post("/busy", {"wid": "w1", "signal": "explode"}).status_code == 400
    assert web.post("/busy", {"signal": "quiet"}).status_code == 400


def test_queues_page_pause_resume_clear(web: Web, store: SyncStore) -> None:
    push(store, queue="zeta")
    push(store, queue="alpha")
    push(store, queue="alpha")
    page = web.get("/queues").text
    assert page.index("alpha") < page.index("zeta")
    assert re.search(r"alpha</a>\s*</td>\s*<td>2</td>", page)
    assert web.post("/queues/alpha", {"action": "pause"}).status_code == 302
    assert store.client.execute_command("SMEMBERS", keys.PAUSED) == [b"alpha"]
    assert "paused" in web.get("/queues").text
    web.post("/queues/alpha", {"action": "resume"})
    assert store.client.execute_command("SMEMBERS", keys.PAUSED) == []
    web.post("/queues/alpha", {"action": "delete"})
    assert store.info()["queues"] == {"zeta": 1}
    assert web.post("/queues/zeta", {"action": "nuke"}).status_code == 400
    assert web.post("/queues/bad:name", {"action": "pause"}).status_code == 400


def test_queue_page_pages_over_priorities_and_deletes(web: Web, store: SyncStore) -> None:
    low = [push(store, "Low", priority=1) for _ in range(3)]
    normal = [push(store, "Normal") for _ in range(20)]
    high = [push(store, "High", priority=9) for _ in range(5)]
    got = web.get("/queues/default?order=fetch")
    assert got.status_code == 200
    jids = re.findall(r"<code>(jid-\d+)</code>", got.text)
    # fetch order: priority 9 first, FIFO within a priority
    assert jids == [j["jid"] for j in high + normal]
    assert "p9" in got.text and "28 jobs" in got.text.replace(",", "")
    second = re.findall(r"<code>(jid-\d+)</code>", web.get("/queues/default?order=fetch&page=2").text)
    assert second == [j["jid"] for j in low]
    assert web.get("/queues/default?page=0").status_code == 400
    bkeys = re.findall(r'name="bkey" value="([^"]+)"', got.text)
    got = web.post("/queues/default", [("bkey", bkeys[0]), ("bkey", bkeys[6])])
    assert got.status_code == 302 and got.headers["location"] == "/queues/default"
    left = {j["jid"] for j in queued(store)}
    assert high[0]["jid"] not in left and normal[1]["jid"] not in left and len(left) == 26
    assert web.post("/queues/default", {"bkey": "x.!!!"}).status_code == 400
    assert web.post("/queues/default", {"bkey": "12.abc"}).status_code == 400


def test_unknown_queue_redirects(web: Web) -> None:
    got = web.get("/queues/nope")
    assert got.status_code == 302 and got.headers["location"] == "/queues"


def test_retries_list_and_detail(web: Web, store: SyncStore) -> None:
    entry = add_failed(store, jobtype="Resize", args=[{"w": 100}], queue="images", priority=3,
                       custom={"tenant": "acme"})
    page = web.get("/retries").text
    assert "Resize" in page and "images" in page and "RuntimeError: boom &lt;b&gt;" in page
    assert "p3" in page and key_of(entry).replace("|", "%7C") in page
    detail = web.get(f"/retries/{key_of(entry)}")
    assert detail.status_code == 200
    for text in ("Resize", entry[1], "acme", "a.py:1\nb.py:2", "Retry count", "Priority"):
        assert text in detail.text
    missing = web.get(f"/retries/{entry[0]}|nosuchjid")
    assert missing.status_code == 307 and missing.headers["location"] == "/retries"
    assert web.get("/retries/garbage").status_code == 400


def test_retry_now_moves_to_queue_once_with_fresh_enqueued_at(web: Web, store: SyncStore) -> None:
    a = add_failed(store, queue="q1")
    b = add_failed(store, queue="q1", priority=7)
    c = add_failed(store)
    before = jobs.rfc3339()
    got = web.post("/retries", [("action", "retry"), ("key", key_of(a)), ("key", key_of(b))])
    assert got.status_code == 302 and got.headers["location"] == "/retries"
    moved = queued(store, "q1")
    assert {j["jid"] for j in moved} == {a[1], b[1]}
    assert all(j["enqueued_at"] >= before for j in moved)
    assert [m["jid"] for m in members(store, keys.RETRIES)] == [c[1]]
    # a second click on a stale page does nothing
    web.post("/retries", [("action", "retry"), ("key", key_of(a))])
    assert len(queued(store, "q1")) == 2


def test_kill_delete_and_all(web: Web, store: SyncStore) -> None:
    a, b, c = (add_failed(store) for _ in range(3))
    web.post("/retries", [("action", "kill"), ("key", key_of(a))])
    dead = members(store, keys.DEAD)
    assert [d["jid"] for d in dead] == [a[1]]
    dead_score = float(store.client.execute_command("ZRANGE", keys.DEAD, 0, 0, "WITHSCORES")[1])
    assert abs(dead_score - (time.time() + jobs.DEAD_TTL)) < 60
    web.post("/retries", [("action", "delete"), ("key", key_of(b))])
    assert [m["jid"] for m in members(store, keys.RETRIES)] == [c[1]]
    web.post(f"/retries/{key_of(c)}", {"action": "delete"})
    assert members(store, keys.RETRIES) == []
    for _ in range(3):
        add_failed(store)
    web.post("/retries", {"action": "retry", "key": "all"})
    assert members(store, keys.RETRIES) == [] and len(queued(store)) == 3
    for _ in range(2):
        add_failed(store)
    web.post("/retries", {"action": "kill", "key": "all"})
    assert len(members(store, keys.DEAD)) == 3
    web.post("/morgue", {"action": "delete", "key": "all"})
    assert members(store, keys.DEAD) == []


def test_scheduled_add_to_queue_and_morgue_retry(web: Web, store: SyncStore) -> None:
    job = push(store, "Later", at=jobs.rfc3339(time.time_ns() + 3600 * 10**9))
    page = web.get("/scheduled").text
    assert "Later" in page and ("in 59 min" in page or "in 1 h" in page)
    key = re.search(r'name="key" value="([^"]+)"', page).group(1)
    assert web.get(f"/scheduled/{key}").status_code == 200
    web.post(f"/scheduled/{key}", {"action": "add_to_queue"})
    assert [j["jid"] for j in queued(store)] == [job["jid"]]
    d = add_failed(store, keys.DEAD, queue="dq")
    assert "RuntimeError" in web.get("/morgue").text
    assert web.get(f"/morgue/{key_of(d)}").status_code == 200
    web.post("/morgue", [("action", "retry"), ("key", key_of(d))])
    assert [j["jid"] for j in queued(store, "dq")] == [d[1]]
    assert web.post("/morgue", [("action", "kill"), ("key", key_of(d))]).status_code == 400
    assert web.post("/scheduled", [("action", "retry"), ("key", key_of(d))]).status_code == 400


def test_filter_by_jobtype_queue_and_text(web: Web, store: SyncStore) -> None:
    add_failed(store, keys.DEAD, jobtype="Alpha", queue="q1", args=["needle-123"])
    add_failed(store, keys.DEAD, jobtype="Alpha", queue="q2")
    add_failed(store, keys.DEAD, jobtype="Beta", queue="q1")

    def types(params: dict) -> list[str]:
        page = web.get("/morgue", params=params).text
        return re.findall(r"<td>(Alpha|Beta)", page)

    assert sorted(types({"jobtype": "Alpha"})) == ["Alpha", "Alpha"]
    assert types({"jobtype": "Alpha", "queue": "q1"}) == ["Alpha"]
    assert types({"queue": "q1"}).count("Beta") == 1
    assert types({"q": "NEEDLE-1"}) == ["Alpha"]
    assert types({"q": "nothing"}) == []
    assert web.get("/morgue", params={"q": "x", "cursor": "abc"}).status_code == 400


def test_filter_scan_is_bounded_with_a_more_link(web: Web, store: SyncStore,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resources, "FILTER_SCAN_CAP", 150)
    pipe = [x for i in range(400) for x in (i, orjson.dumps(
        {"jid": f"j{i:04d}xxxx", "jobtype": "T", "queue": "default", "args": []}))]
    store.client.execute_command("ZADD", keys.DEAD, *pipe)  # > 128 entries: a real (hash table) scan
    page = web.get("/morgue", params={"jobtype": "T"}).text
    scanned = int(re.search(r"among ([\d,]+) scanned", page).group(1).replace(",", ""))
    assert scanned < 400 and "more remain" in page
    more = re.search(r'href="(/morgue\?[^"]*cursor=\d+)"', page).group(1).replace("&amp;", "&")
    assert web.get(more).status_code == 200


def test_args_are_escaped_everywhere(web: Web, store: SyncStore) -> None:
    evil = "<script>alert(1)</script>"
    push(store, evil, args=[evil], custom={"x": evil})
    entry = add_failed(store, jobtype=evil, args=[evil])
    for path in ("/queues/default", "/retries", f"/retries/{key_of(entry)}"):
        page = web.get(path).text
        assert "<script>alert" not in page, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page, path


def test_priority_shown_only_when_not_5(web: Web, store: SyncStore) -> None:
    push(store, "Plain")
    push(store, "Urgent", priority=8)
    page = web.get("/queues/default").text
    assert page.count('class="badge prio"') == 1 and "p8" in page


def test_summary_numbers_link_to_their_pages(web: Web, store: SyncStore) -> None:
    # as Faktory's summary bar: the counts that have a page are links to it
    page = web.get("/queues").text
    links = dict(re.findall(r'<a class="stat" href="([^"]+)"><span class="num" data-stat="(\w+)"',
                            page))
    assert links == {"/busy": "busy", "/queues": "enqueued", "/retries": "retries",
                     "/scheduled": "scheduled", "/morgue": "dead"}
    assert re.search(r'<div class="stat"><span class="num" data-stat="processed"', page)
    web.headers = {"X-Script-Name": "/faktory"}
    assert '<a class="stat" href="/faktory/morgue">' in web.get("/faktory/").text


def test_logo_and_favicon(store: SyncStore, redis_url: str) -> None:
    web = Web(redis_url, password="s3cret", environment="production")
    # browsers ask for /favicon.ico whatever the page says, without the password
    ico = web.get("/favicon.ico")
    assert ico.status_code == 200 and ico.headers["content-type"] == "image/x-icon"
    assert ico.content[:4] == b"\0\0\1\0" and b"PNG" in ico.content[:64]
    assert ico.headers["cache-control"] == "public, max-age=3600"
    page = web.get("/", headers=basic("x", "s3cret")).text
    icons = re.findall(r'<link rel="(?:icon|apple-touch-icon)" href="([^"]+)"', page)
    assert len(icons) == 3 and re.search(r'<a class="brand" href="/"><img src="/static/img/', page)
    for href in icons + re.findall(r'<img src="([^"]+)"', page):
        got = web.get(href)
        assert got.status_code == 200 and got.headers["content-type"].startswith("image/"), href


def test_unknown_url_gets_a_page_with_the_menu(store: SyncStore, redis_url: str) -> None:
    add_failed(store)
    web = Web(redis_url, password="s3cret", environment="production")
    missing = web.get("/no/such/page", headers={**basic("x", "s3cret"), "Accept-Language": "de"})
    assert missing.status_code == 404
    page = missing.text
    assert '<nav id="menu"' in page and 'href="/retries"' in page
    assert re.search(r'data-stat="retries">1<', page)  # the summary bar too
    assert "<title>404 Not Found · Faktory</title>" in page and "/no/such/page" in page
    assert "Zurück zur Übersicht" in page
    # no data before the password, nor on public paths
    for got in (web.get("/no/such/page"), web.get("/static/no-such-file.css")):
        assert got.status_code in (401, 404)
        assert "data-stat" not in got.text and 'href="/static/app.css"' in got.text
    # a bad request still shows the menu; a POST that is refused too
    assert '<nav id="menu"' in web.get("/retries?page=x", headers=basic("x", "s3cret")).text


def faktory_key(score: str, jid: str, offset: str = "") -> str:
    """The key Faktory's pages use: the score as RFC3339 with nanoseconds, then the jid
    (storage/sorted_redis.go: Key(), truncating the fraction to whole nanoseconds)."""
    value = float(score)
    secs = int(value)
    nanos = int((value - secs) * 1e9)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    if nanos:
        text += f".{nanos:09d}".rstrip("0")
    return f"{text}{offset or 'Z'}|{jid}"


@pytest.mark.parametrize("path,zset", [("/retries", keys.RETRIES), ("/scheduled", keys.SCHEDULED),
                                       ("/morgue", keys.DEAD)])
def test_faktory_style_job_links(web: Web, store: SyncStore, path: str, zset: str) -> None:
    # Bookmarks and alert links made for Faktory: /retries/<RFC3339 time>|<jid>
    now = time.time()
    entries = [add_failed(store, zset, at=now + 3600 * i + i / 7) for i in range(20)]
    for score, jid in entries:
        key = faktory_key(score, jid)
        assert "T" in key and key.endswith("|" + jid)
        got = web.get(f"{path}/{key}")
        assert got.status_code == 200 and jid in got.text, key
        assert web.get(f"{path}/{key.replace('|', '%7C')}").status_code == 200
    score, jid = entries[0]
    whole = faktory_key(str(int(float(score))), jid)  # a time not in the set: back to the list
    gone = web.get(f"{path}/{whole}")
    assert gone.status_code == 307 and gone.headers["location"] == path
    assert web.get(f"{path}/2025-13-01T00:00:00Z|{jid}").status_code == 400
    # the buttons of Faktory's detail pages and lists post the same keys
    score, jid = entries[1]
    assert web.post(f"{path}/{faktory_key(score, jid)}", {"action": "delete"}).status_code == 302
    score2, jid2 = entries[2]
    assert web.post(path, [("action", "delete"), ("key", faktory_key(score2, jid2))]).status_code == 302
    assert {m["jid"] for m in members(store, zset)} == {j for _, j in entries} - {jid, jid2}


def test_faktory_style_key_with_a_zone_offset(web: Web, store: SyncStore) -> None:
    score, jid = add_failed(store, at=1767225600.5)  # 2026-01-01T00:00:00.5Z
    got = web.get(f"/retries/2026-01-01T02:00:00.5+02:00|{jid}")
    assert got.status_code == 200 and jid in got.text


def test_destructive_buttons_ask_first(web: Web, store: SyncStore) -> None:
    # Faktory asks "Are you sure?" before these; app.js shows data-confirm as a dialog
    now = repr(time.time())
    store.hello("p1", 100, "w1", "box", 1, b"[]", 2, now)
    busy = web.get("/busy").text
    for signal, text in (("quiet", "Quiet every worker process?"),
                         ("terminate", "Terminate every worker process?")):
        assert re.search(rf'<button name="signal" value="{signal}"[^>]*data-confirm="{text}', busy)
    entry = add_failed(store)
    detail = web.get(f"/retries/{key_of(entry)}").text
    assert re.search(r'value="delete"[^>]*data-confirm="Are you sure you want to delete this job\?"',
                     detail)
    assert re.search(r'value="kill"[^>]*data-confirm="Move this job to the dead set\?"', detail)
    assert not re.search(r'value="retry"[^>]*data-confirm', detail)
    listing = web.get("/retries").text
    assert re.search(r'value="delete"[^>]*data-confirm="Delete the selected jobs\?"', listing)
    assert re.search(r'value="kill"[^>]*data-confirm="Move the selected jobs to the dead set\?"',
                     listing)


def test_queue_page_lists_newest_first_by_default(web: Web, store: SyncStore) -> None:
    pushed = [push(store, "Job") for _ in range(30)]
    newest = [j["jid"] for j in reversed(pushed)]
    jids = re.compile(r"<code>(jid-\d+)</code>")
    page = web.get("/queues/default").text
    assert jids.findall(page) == newest[:25] and "newest first" in page
    assert 'href="/queues/default?order=fetch"' in page
    assert 'href="/queues/default?page=2"' in page
    assert jids.findall(web.get("/queues/default?page=2").text) == newest[25:]
    assert jids.findall(web.get("/queues/default?page=3").text) == []
    fetch = web.get("/queues/default?order=fetch").text
    assert jids.findall(fetch) == newest[::-1][:25] and "in the order they will be fetched" in fetch
    assert 'href="/queues/default?page=2&amp;order=fetch"' in fetch
    assert jids.findall(web.get("/queues/default?order=fetch&page=2").text) == newest[::-1][25:]
    assert web.get("/queues/default?order=random").status_code == 400


def test_long_cells_are_cut_in_lists(web: Web, store: SyncStore) -> None:
    message = "m" * 900 + " tail-of-the-message"
    score, _ = add_failed(store, args=["a" * 5000])
    member = store.client.execute_command("ZRANGE", keys.RETRIES, 0, 0)[0]
    job = orjson.loads(member)
    job["failure"]["message"] = message  # as a worker's FAIL would have it
    store.client.execute_command("ZREM", keys.RETRIES, member)
    store.client.execute_command("ZADD", keys.RETRIES, score, orjson.dumps(job))
    page = web.get("/retries").text
    cells = re.findall(r'<div class="clip" data-more="Click to show all">(.*?)</div>', page, re.S)
    assert len(cells) == 2  # the arguments and the error, each cut to a few lines by CSS
    assert cells[0].count("a") > 1000 and cells[0].rstrip().endswith("…</code>")  # 1 KiB, as Faktory
    assert "tail-of-the-message" in cells[1]  # no longer cut at 200 characters
    assert ".clip { max-height:" in web.get("/static/app.css").text


def test_busy_and_queues_have_a_live_toggle(web: Web, store: SyncStore) -> None:
    push(store)
    for path in ("/busy", "/queues"):
        page = web.get(path).text
        assert re.search(r'<label class="live-toggle"><input type="checkbox" id="live-toggle"'
                         r'[^>]*> Live Poll</label>', page), path
        # what a refresh swaps in: the tables, not the toggle itself
        region = page.index('id="live-region"')
        assert page.index('id="live-toggle"') < region < page.index("<table"), path
    assert 'id="live-toggle"' not in web.get("/retries").text
    script = web.get("/static/app.js").text
    assert "visibilitychange" in script and "document.hidden" in script


def test_history_chart_has_axes_and_a_legend() -> None:
    days = [f"2026-01-{d:02d}" for d in range(1, 31)]
    counts = [(i * 100, i) for i in range(30)]  # up to 2,900 processed a day
    chart = str(charts.history_chart(days, counts, lambda key, **kw: key))
    assert re.search(r'<div class="yaxis"><span>5,000</span><span>2,500</span><span>0</span></div>',
                     chart)
    assert re.search(r'<div class="xaxis"><span>2026-01-01</span><span>2026-01-15</span>'
                     r'<span>2026-01-30</span></div>', chart)
    legend = re.search(r'<figcaption class="legend">(.*?)</figcaption>', chart).group(1)
    assert 'class="key processed"><i></i>ChartProcessed: <b>43,500</b>' in legend
    assert 'class="key failed"><i></i>ChartFailed: <b>435</b>' in legend
    # 2,900 of 5,000 at the right edge of a 1000 x 200 plot
    processed = re.search(r'<polyline class="line processed" points="([^"]+)"', chart).group(1)
    assert processed.split()[-1] == "1000.0,84.0" and processed.split()[0] == "0.0,200.0"
    assert '<polygon class="area processed"' in chart
    empty = str(charts.history_chart(days[:7], [(0, 0)] * 7, lambda key, **kw: key))
    assert "<span>2</span><span>1</span><span>0</span>" in empty  # whole numbers on the axis
    assert charts.nice_max(0) == 1 and charts.nice_max(3) == 5 and charts.nice_max(2001) == 5000


def test_dashboard_live_chart_has_axes_and_a_legend(web: Web) -> None:
    page = web.get("/").text
    live = re.search(r'<figure class="chart" id="live".*?</figure>', page, re.S).group(0)
    assert re.search(r'<div class="yaxis" id="live-y">(<span>[^<]*</span>){3}</div>', live)
    assert 'id="live-x"' in live and "jobs per poll" in live
    assert 'id="live-processed-last"' in live and 'id="live-failed-last"' in live
    assert "live-y" in web.get("/static/app.js").text  # app.js fills the axis in


def test_debug_groups_redis_info_by_section(web: Web, store: SyncStore) -> None:
    page = web.get("/debug").text
    sections = re.findall(r'<details class="info-section" id="info-(\w+)">\s*<summary>(\w+) '
                          r'<span class="muted">\((\d+)\)</span>', page)
    names = [name for _, name, _ in sections]
    assert names[:3] == ["Server", "Clients", "Memory"] and "Keyspace" in names
    assert len(names) == len(set(names)) >= 8
    memory = re.search(r'id="info-memory">.*?</details>', page, re.S).group(0)
    assert "<th>used_memory_human</th>" in memory and "redis_version" not in memory
    server = re.search(r'id="info-server">.*?</details>', page, re.S).group(0)
    fields = re.findall(r"<th>(\w+)</th>", server)
    assert fields[0] == "redis_version" and fields != sorted(fields)  # Redis's order
    counts = {name: int(n) for _, name, n in sections}
    assert counts["Memory"] == memory.count("<tr>")


# -- security ---------------------------------------------------------------------------------

def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_basic_auth_when_a_password_is_set(store: SyncStore, redis_url: str) -> None:
    web = Web(redis_url, password="s3cret", environment="production")
    for path in ("/", "/stats", "/metrics", "/retries", "/busy", "/debug"):
        got = web.get(path)
        assert got.status_code == 401, path
        assert got.headers["www-authenticate"] == 'Basic realm="Faktory"'
        assert "Authorization required" in got.text
    wrong = web.get("/", headers=basic("admin", "nope"))
    assert wrong.status_code == 401 and "Authorization failed" in wrong.text
    assert web.get("/", headers={"Authorization": "Basic !!!"}).status_code == 401
    assert web.get("/", headers=basic("anyone", "s3cret")).status_code == 200
    assert web.get("/stats", headers=basic("", "s3cret")).status_code == 200
    assert web.get("/health").status_code == 200
    assert web.get("/static/app.css").status_code == 200
    entry = add_failed(store)
    web.headers = basic("x", "s3cret")
    assert web.post("/retries", [("action", "delete"), ("key", key_of(entry))]).status_code == 302
    web.headers = {}
    assert web.post("/retries", {"action": "delete", "key": "all"}).status_code == 401


def test_no_auth_without_a_password(web: Web) -> None:
    assert web.get("/").status_code == 200


def test_csrf_token_and_cross_origin_checks(web: Web, store: SyncStore) -> None:
    entry = add_failed(store)
    fields = [("action", "delete"), ("key", key_of(entry))]
    first = web.get("/retries")
    cookie = first.cookies[CSRF_COOKIE]
    assert cookie.http_only and cookie.same_site.lower() == "strict" and len(cookie.value) >= 32
    assert f'name="{CSRF_FIELD}" value="{cookie.value}"' in first.text
    assert web.post("/retries", fields, token=None).status_code == 403
    assert web.post("/retries", fields, token="wrong" * 10).status_code == 403
    assert web.post("/retries", fields, token="é" * 43).status_code == 403
    foreign = web.post("/retries", fields, headers={"Sec-Fetch-Site": "cross-site"})
    assert foreign.status_code == 403 and "Cross-origin" in foreign.text
    no_fetch_meta = {"Sec-Fetch-Site": "", "Origin": "http://evil.example"}
    h = {k: v for k, v in no_fetch_meta.items() if v}
    client = web.client
    got = client.simulate_post("/retries", body=urlencode(fields + [(CSRF_FIELD, TOKEN)]),
                               headers={"Content-Type": FORM, "Cookie": f"{CSRF_COOKIE}={TOKEN}", **h})
    assert got.status_code == 403
    assert len(members(store, keys.RETRIES)) == 1
    same = client.simulate_post("/retries", body=urlencode(fields + [(CSRF_FIELD, TOKEN)]),
                                headers={"Content-Type": FORM, "Cookie": f"{CSRF_COOKIE}={TOKEN}",
                                         "Origin": "http://falconframework.org"})
    assert same.status_code == 302 and members(store, keys.RETRIES) == []


def test_scripts_with_the_password_can_post_forms(store: SyncStore, redis_url: str) -> None:
    # curl or a script: Basic auth and the page's fields, no cookie, no Origin, no fetch
    # metadata. Faktory lets these through; so do we. Browsers' cross-site requests do not pass.
    web = Web(redis_url, password="s3cret", environment="production")
    auth = basic("ops", "s3cret")
    scraped = re.search(rf'name="{CSRF_FIELD}" value="([^"]+)"',
                        web.get("/retries", headers=auth).text).group(1)

    def script_post(fields: list[tuple[str, str]], **headers: str) -> testing.Result:
        return web.client.simulate_post("/retries", body=urlencode(fields), headers={
            "Content-Type": FORM, **auth, **headers})

    a, b, c = (add_failed(store) for _ in range(3))
    got = script_post([("action", "delete"), ("key", key_of(a)), (CSRF_FIELD, scraped)])
    assert got.status_code == 302 and got.headers["location"] == "/retries"
    assert script_post([("action", "kill"), ("key", key_of(b))]).status_code == 302  # no token
    assert [m["jid"] for m in members(store, keys.RETRIES)] == [c[1]]
    fields = [("action", "delete"), ("key", key_of(c))]
    # the password is still needed
    bare = web.client.simulate_post("/retries", body=urlencode(fields),
                                    headers={"Content-Type": FORM})
    assert bare.status_code == 401
    # what a browser sends from another site is refused, password or not
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
                    {"Origin": "http://evil.example"},
                    {"Referer": "http://evil.example/page"},  # old browsers send only this
                    {"Origin": "null"}):
        refused = script_post(fields, **headers)
        assert refused.status_code == 403 and "Cross-origin" in refused.text, headers
    # a browser that has our cookie must still send the page's token with it
    cookie = {"Cookie": f"{CSRF_COOKIE}={TOKEN}"}
    assert script_post(fields, **cookie).status_code == 403
    assert script_post(fields + [(CSRF_FIELD, "x" * 43)], **cookie).status_code == 403
    assert [m["jid"] for m in members(store, keys.RETRIES)] == [c[1]]
    same = script_post(fields + [(CSRF_FIELD, TOKEN)], Referer="http://falconframework.org/retries",
                       **cookie)
    assert same.status_code == 302 and members(store, keys.RETRIES) == []


def test_readme_documents_the_form_rule() -> None:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        section = f.read().split("## Web UI", 1)[1].split("\n## ", 1)[0]
    for words in ("Sec-Fetch-Site", "Origin", "Referer", "curl", "cookie"):
        assert words in section, words


def test_get_never_changes_state(web: Web, store: SyncStore) -> None:
    entry = add_failed(store)
    push(store)
    for path in ("/retries", f"/retries/{key_of(entry)}", "/queues/default", "/busy"):
        web.get(path, params={"action": "delete", "key": key_of(entry), "signal": "terminate",
                              "wid": "all"})
    assert len(members(store, keys.RETRIES)) == 1 and len(queued(store)) == 1


def test_bad_form_input_is_4xx(web: Web, store: SyncStore) -> None:
    entry = add_failed(store)
    assert web.post("/retries", {"action": "retry"}).status_code == 400
    assert web.post("/retries", {"key": key_of(entry)}).status_code == 400
    assert web.post("/retries", {"action": "explode", "key": key_of(entry)}).status_code == 400
    assert web.post("/retries", {"action": "retry", "key": "no-pipe"}).status_code == 400
    assert web.post("/retries", {"action": "retry", "key": "nan|jid"}).status_code == 400
    assert web.post("/retries", {"action": "retry", "key": "1e999|jid"}).status_code == 400
    # Python reads "1_0" as 10, Redis does not: the score goes to Redis as Python read it
    assert web.post("/retries", {"action": "retry", "key": "1_0|jid"}).status_code == 302
    assert web.get("/retries/1_0|jid").status_code == 307
    raw = web.client.simulate_post("/retries", body=b'{"a":1}', headers={
        "Content-Type": "application/json", "Cookie": f"{CSRF_COOKIE}={TOKEN}"})
    assert raw.status_code in (400, 403)
    assert web.get("/retries", params={"page": "-1"}).status_code == 400
    assert web.get("/retries", params={"page": "abc"}).status_code == 400
    assert web.post("/stats", {}).status_code == 405
    assert "<h1>400" in web.post("/retries", {"action": "x", "key": "all"}).text


def test_script_name_prefix(web: Web, store: SyncStore) -> None:
    web.headers = {"X-Script-Name": "/faktory"}
    page = web.get("/faktory/retries")
    assert page.status_code == 200 and 'href="/faktory/static/app.css"' in page.text
    entry = add_failed(store)
    got = web.post("/faktory/retries", [("action", "delete"), ("key", key_of(entry))])
    assert got.headers["location"] == "/faktory/retries"


# -- speed ------------------------------------------------------------------------------------

def fill(store: SyncStore, zset: str, n: int) -> None:
    base = time.time() + 3600
    template = ('{"retry":25,"failure":{"failed_at":"2025-01-01T00:00:00Z","message":"boom",'
                '"errtype":"E","retry_count":1,"remaining":24},"jid":"%s","queue":"default",'
                '"jobtype":"Bulk","args":[%d,"some text"]}')
    for start in range(0, n, 10_000):
        args: list[Any] = []
        for i in range(start, min(n, start + 10_000)):
            args += (repr(base + i), template % (f"bulk{i:08d}", i))
        store.client.execute_command("ZADD", zset, *args)


@pytest.mark.parametrize("path,zset", [("/scheduled", keys.SCHEDULED), ("/retries", keys.RETRIES),
                                       ("/morgue", keys.DEAD)])
def test_first_page_fast_with_100k_jobs(web: Web, store: SyncStore, path: str, zset: str) -> None:
    fill(store, zset, 100_000)
    assert web.get(path).status_code == 200  # warm up templates
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        got = web.get(path)
        timings.append(time.perf_counter() - started)
        assert got.status_code == 200 and "100,000" in got.text
    best = sorted(timings)[len(timings) // 2]
    print(f"{path}: median first-page render {best * 1000:.1f} ms with 100,000 jobs")
    assert best < 0.05
    assert web.get(path, params={"page": "4000"}).status_code == 200


# -- no request holds Redis for long ---------------------------------------------------------
# Redis is shared by every client and node: while one call runs, all of them wait. Each test
# below made one Redis call of over 50 ms (SLOWLOG) before its function worked a bounded part
# of the data a call.

def same_score(r: redis.Redis, zset: str, n: int, score: float) -> None:
    """``n`` small jobs in ``zset``, all with ``score``: jids same00000000, same00000001..."""
    for start in range(0, n, 10_000):
        r.zadd(zset, {orjson.dumps({"jid": f"same{i:08d}", "jobtype": "T", "queue": "default",
                                    "args": [i], "retry": 25}): score
                      for i in range(start, min(n, start + 10_000))})


def test_entries_sharing_one_score_are_found_holding_redis_briefly(web: Web, store: SyncStore,
                                                                  r: redis.Redis) -> None:
    """200,000 jobs scheduled for one instant: naming one of them (its page, a button) read
    all 200,000 into one call (~250 ms). Now a binary search among them finds it; an entry that
    is not there, or whose jid is not its first key, is looked for a page of them a call."""
    score = 4e9
    same_score(r, keys.SCHEDULED, 200_000, score)
    odd = orjson.dumps({"queue": "default", "jobtype": "T", "args": [], "jid": "odd-one"})
    r.zadd(keys.SCHEDULED, {odd: score})

    def key(jid: str) -> str:
        return f"{score!r}|{jid}"

    with slow_redis_calls(r, 50) as slow:
        page = web.get(f"/scheduled/{key('same00123456')}")
        assert page.status_code == 200 and "same00123456" in page.text
        assert web.get(f"/scheduled/{key('odd-one')}").status_code == 200
        assert web.get(f"/scheduled/{key('no-such-jid')}").status_code == 307
        assert web.post("/scheduled", [("action", "delete"), ("key", key("same00000007")),
                                       ("key", key("same00199999"))]).status_code == 302
        assert web.post("/scheduled", [("action", "kill"), ("key", key("same00100000")),
                                       ("key", key("odd-one"))]).status_code == 302
        assert web.post(f"/scheduled/{key('same00000000')}",
                        {"action": "add_to_queue"}).status_code == 302
    assert slow == []
    assert r.zcard(keys.SCHEDULED) == 200_001 - 5
    assert sorted(orjson.loads(m)["jid"] for m in r.zrange(keys.DEAD, 0, -1)) == [
        "odd-one", "same00100000"]
    assert [j["jid"] for j in queued(store)] == ["same00000000"]
    left = {orjson.loads(m)["jid"] for m in r.zrange(keys.SCHEDULED, 0, 9)}
    assert "same00000007" not in left and "same00000008" in left


def test_deleting_jobs_of_a_big_queue_holds_redis_briefly(web: Web, store: SyncStore,
                                                          r: redis.Redis) -> None:
    """A queue of 200,000: the jobs FETCH takes next, the first page in fetch order, are at
    the far end of the list from where LREM starts: deleting that page's 25 jobs walked the
    list 25 times in one call (~200 ms). Now a job a call, from the end nearer to it."""
    n = 200_000
    for start in range(0, n, 10_000):
        r.lpush(keys.queue("default"), *(orjson.dumps({
            "jid": f"big{i:08d}", "jobtype": "T", "queue": "default", "args": [],
            "enqueued_at": "2026-01-01T00:00:00Z"}) for i in range(start, min(n, start + 10_000))))
    r.sadd(keys.QUEUES, "default")
    jids = re.compile(r"<code>(big\d+)</code>")
    with slow_redis_calls(r, 50) as slow:
        for path in ("/queues/default?order=fetch", "/queues/default",
                     "/queues/default?order=fetch&page=4000"):
            page = web.get(path).text
            bkeys = re.findall(r'name="bkey" value="([^"]+)"', page)
            assert len(bkeys) == 25 and len(jids.findall(page)) == 25
            got = web.post("/queues/default", [("bkey", k) for k in bkeys])
            assert got.status_code == 302
    assert slow == []
    assert r.llen(keys.queue("default")) == n - 75
    left = {orjson.loads(j)["jid"] for j in r.lrange(keys.queue("default"), 0, -1)}
    # page 4000 in fetch order once the first 25 went: the 100,000th to 100,024th pushed
    gone = {f"big{i:08d}" for i in (*range(25), *range(n - 25, n), *range(100_000, 100_025))}
    assert gone.isdisjoint(left) and len(left | gone) == n


def test_queue_delete_finds_a_job_that_moved(web: Web, store: SyncStore) -> None:
    """A page's delete looks for each job where the page saw it; jobs fetched, pushed or
    deleted since move it, and it is looked for in the rest of the list (half a call)."""
    pushed = [push(store, "Job") for _ in range(40)]
    page = web.get("/queues/default?order=fetch").text
    bkeys = re.findall(r'name="bkey" value="([^"]+)"', page)
    for _ in range(3):  # the first three go: the others move three places
        store.fetch("", "test", jobs.now_score(), 1800, ["default"])
    push(store, "Job")
    assert web.post("/queues/default", [("bkey", bkeys[1]), ("bkey", bkeys[10]),
                                        ("bkey", bkeys[24])]).status_code == 302
    left = [j["jid"] for j in queued(store)]
    assert len(left) == 40 - 3 + 1 - 2
    assert pushed[10]["jid"] not in left and pushed[24]["jid"] not in left
    # a key from a page of an older version (no position) still names its job
    p, _, data = bkeys[20].split(".")
    assert web.post("/queues/default", {"bkey": f"{p}.{data}"}).status_code == 302
    assert pushed[20]["jid"] not in [j["jid"] for j in queued(store)]
    assert web.post("/queues/default", {"bkey": f"5.-1.{data}"}).status_code == 400


def test_filter_scans_its_cap_a_page_a_call(web: Web, store: SyncStore, r: redis.Redis) -> None:
    """A filter no entry matches scans its cap (20,000 entries): in one call, ~100 ms."""
    for start in range(0, 30_000, 10_000):
        r.zadd(keys.DEAD, {orjson.dumps({"jid": f"d{i:08d}", "jobtype": "T", "queue": "default",
                                         "args": [i, "x" * 200]}): i
                           for i in range(start, start + 10_000)})
    with slow_redis_calls(r, 50) as slow:
        page = web.get("/morgue", params={"jobtype": "T", "q": "no-such-text"}).text
    assert slow == []
    scanned = int(re.search(r"among ([\d,]+) scanned", page).group(1).replace(",", ""))
    assert resources.FILTER_SCAN_CAP <= scanned < resources.FILTER_SCAN_CAP + 1000
    assert "more remain" in page and "No jobs match" in page


# -- what a queue holds, and finding a job --------------------------------------------------

def fill_queue(r: redis.Redis, n: int, name: str = "default", jobtype: Any = "T") -> None:
    """``n`` small jobs pushed straight into queue ``name``: jids big00000000 (the next to be
    fetched) on; ``jobtype(i)`` names each one's type when it is callable."""
    pipe = r.pipeline(transaction=False)
    for start in range(0, n, 10_000):
        pipe.lpush(keys.queue(name), *(orjson.dumps({
            "jid": f"big{i:08d}", "retry": 25, "queue": name,
            "jobtype": jobtype(i) if callable(jobtype) else jobtype,
            "enqueued_at": "2026-01-01T00:00:00Z", "args": [i]})
            for i in range(start, min(n, start + 10_000))))
    pipe.sadd(keys.QUEUES, name)
    pipe.execute()


def fcalls(r: redis.Redis) -> int:
    """FCALLs Redis has run so far (INFO commandstats)."""
    return int(r.info("commandstats").get("cmdstat_fcall", {}).get("calls", 0))


def test_queue_job_types_exact_for_a_small_queue(web: Web, store: SyncStore) -> None:
    for jobtype, n, priority in (("Mail", 3, 5), ("Sync", 2, 9), ('Odd"Type', 1, 1)):
        for _ in range(n):
            push(store, jobtype, priority=priority)
    page = web.get("/queues/default").text
    rows = re.findall(r'<td><a href="/queues/default\?jobtype=[^"]*">([^<]*)</a></td>'
                      r'<td class="num">(\d+)</td>', page)
    assert rows == [("Mail", "3"), ("Sync", "2"), ("Odd&#34;Type", "1")]
    assert "Job types" in page and "sampled" not in page


def test_queue_job_types_sampled_for_a_big_queue(web: Web, store: SyncStore,
                                                 r: redis.Redis) -> None:
    n = 100_000
    fill_queue(r, n, jobtype=lambda i: "Even" if i % 2 == 0 else "Odd")
    with slow_redis_calls(r, 50) as slow:
        page = web.get("/queues/default").text
    assert slow == []
    read = bounded.QUEUE_SAMPLE_PAGES * WEB_QUEUE_SCAN
    assert f"sampled: {read:,} of {n:,} jobs" in page
    counts = dict(re.findall(r'>(Even|Odd)</a></td><td class="num">([\d,]+)<', page))
    assert counts == {"Even": f"{read // 2:,}", "Odd": f"{read // 2:,}"}
    # up to that many jobs: all of them
    r.ltrim(keys.queue("default"), 0, read - 2)
    page = web.get("/queues/default").text
    assert "sampled" not in page
    assert f">{read // 2:,}</td>" in page and f">{read // 2 - 1:,}</td>" in page


def test_queue_page_filters_by_job_type_and_text(web: Web, store: SyncStore,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    wanted = [push(store, "Mail", args=[f"to {i} NEEDLE"], priority=p)
              for i, p in enumerate((1, 5, 9) * 4)]
    for i in range(20):
        push(store, "Mail" if i % 2 else "Sync", args=[f"plain {i}"])
    jids = re.compile(r"<code>(jid-\d+)</code>")
    page = web.get("/queues/default", params={"jobtype": "Mail", "q": "needle"}).text
    assert sorted(jids.findall(page)) == sorted(j["jid"] for j in wanted)
    assert "12 matching jobs among 32 scanned." in page
    assert len(jids.findall(web.get("/queues/default", params={"jobtype": "Sync"}).text)) == 10
    # a scan cap smaller than the queue: pages followed by their cursor see each job once,
    # over the three priority lists, newest first
    monkeypatch.setattr(resources, "FILTER_SCAN_CAP", 5)
    seen: list[str] = []
    path = "/queues/default?q=needle"
    while True:
        page = web.get(path).text
        seen += jids.findall(page)
        more = re.search(r'<a rel="next" href="([^"]+)">', page)
        if not more:
            break
        path = more.group(1).replace("&amp;", "&")
    assert sorted(seen) == sorted(j["jid"] for j in wanted) and len(seen) == 12
    # a filtered row's key deletes its job
    monkeypatch.undo()
    page = web.get("/queues/default", params={"q": wanted[4]["args"][0]}).text
    bkeys = re.findall(r'name="bkey" value="([^"]+)"', page)
    assert len(bkeys) == 1
    assert web.post("/queues/default", {"bkey": bkeys[0]}).status_code == 302
    assert wanted[4]["jid"] not in {j["jid"] for j in queued(store)}
    assert web.get("/queues/default", params={"q": "x", "cursor": "5"}).status_code == 400


def test_find_a_job_wherever_it_is(web: Web, store: SyncStore) -> None:
    queued_job = push(store, "InQueue", priority=9)
    quoted = push(store, "Quoted", jid='a "quoted" jid')
    for zset, path in resources.SET_PATHS.items():
        entry = add_failed(store, zset, jobtype=f"In{zset}")
        got = web.get("/find", params={"jid": entry[1]})
        assert got.status_code == 302
        assert got.headers["location"] == f"{path}/{key_of(entry).replace('|', '%7C')}"
        assert f"In{zset}" in web.get(got.headers["location"]).text
    got = web.get("/find", params={"jid": queued_job["jid"]})
    assert got.status_code == 200 and "InQueue" in got.text
    assert 'href="/queues/default?order=fetch&amp;page=1"' in got.text
    assert "number 1 to be fetched" in got.text
    got = web.get("/find", params={"jid": quoted["jid"]})
    assert got.status_code == 200 and "Quoted" in got.text and "number 2 to be fetched" in got.text
    # in progress
    now = repr(time.time())
    store.hello("p1", 100, "w1", "box", 4242, b"[]", 2, now)
    running = push(store, "Running", queue="work")
    assert store.fetch("w1", "p1", now, 1800, ["work"])[2] == running["jid"].encode()
    got = web.get("/find", params={"jid": running["jid"]})
    assert got.status_code == 200 and "In progress" in got.text and "Running" in got.text
    assert "<code>w1</code>" in got.text
    # in a batch, having succeeded: nowhere else
    bid = batches.new_bid()
    cb = batches.callback_job({"jobtype": "Done", "args": [], "queue": "cb"}, "complete", bid,
                              time.time_ns())
    assert store.batch_new(bid, time.time_ns(), "", "", [cb]) == ""
    done = push(store, "Batched", queue="bq", custom={"bid": bid})
    fetched = store.fetch("", "test", jobs.now_score(), 1800, ["bq"])
    store.ack(fetched.jid.decode(), jobs.today())
    got = web.get("/find", params={"jid": done["jid"]})
    assert got.status_code == 200 and f'href="/batches/{bid}"' in got.text
    assert "success" in got.text
    got = web.get("/find", params={"jid": "no-such-jid"})
    assert got.status_code == 404 and "No job no-such-jid" in got.text
    assert web.get("/find").status_code == 302
    for place, cursor in (("", "x"), ("dead", "5.1"), ("queue:default", "12")):
        assert web.get("/find", params={"jid": "x", "place": place,
                                        "cursor": cursor}).status_code == 400
    # the box is in every page's header, translated
    page = web.get("/queues").text
    assert '<form method="get" action="/find" class="find" role="search">' in page
    assert "JID suchen" in web.get("/", headers={"Accept-Language": "de"}).text


def test_a_queue_of_big_jobs_is_read_a_few_hundred_kilobytes_a_call(
        web: Web, store: SyncStore, r: redis.Redis) -> None:
    """Jobs of 100 KB: a scan call reads about 256 KB of them (after its first job), not
    WEB_QUEUE_SCAN jobs (2,000 of them held Redis for over a second); the job types are still
    exact and the far end's job is still found, over more calls."""
    pad = "x" * 100_000
    r.lpush(keys.queue("fat"), *(orjson.dumps({"jid": f"fat{i:03d}", "retry": 25, "queue": "fat",
                                               "jobtype": f"T{i % 3}", "args": [pad]})
                                 for i in range(30)))
    r.sadd(keys.QUEUES, "fat")
    before = fcalls(r)
    types = bounded.queue_types(store, "fat")
    assert types.counts == [("T0", 10), ("T1", 10), ("T2", 10)] and not types.sampled
    # a call reads at most 3 of them: up to 256 KB and the one that passes it
    assert fcalls(r) - before >= 10
    before = fcalls(r)
    cursor, scanned, found = bounded.queue_filter(store, "fat", "0", 10_000, 1, "fat000", "", "")
    assert [job for _, _, job in found] == [r.lindex(keys.queue("fat"), -1)] and scanned == 30
    assert fcalls(r) - before >= 10


def test_pages_and_set_filters_of_big_jobs_read_a_few_hundred_kilobytes_a_call(
        web: Web, store: SyncStore, r: redis.Redis) -> None:
    """A page of 25 jobs of 100 KB (a queue's, a set's) is read over several calls, and a set's
    filter scans about 256 KB a call (300 jobs of 1 MB held Redis for 1.8 s in one call):
    the pages still show all 25, the filter still scans the whole set."""
    pad = "x" * 100_000
    fat = [orjson.dumps({"jid": f"fat{i:03d}", "retry": 25, "queue": "fat", "jobtype": "T",
                         "args": [pad]}) for i in range(30)]
    r.lpush(keys.queue("fat"), *fat)
    r.sadd(keys.QUEUES, "fat")
    r.zadd(keys.RETRIES, {job: 1_700_000_000 + i for i, job in enumerate(fat)})
    for path, rows in (("/queues/fat", "fat0"), ("/queues/fat?order=fetch", "fat0"),
                       ("/retries", "fat0")):
        before = fcalls(r)
        page = web.get(path).text
        assert len(re.findall(rf'<td[^>]*>\s*<a href="[^"]*">{rows}', page)) in (0, 25) and \
            page.count("fat0") + page.count("fat1") + page.count("fat2") >= 25, path
        assert fcalls(r) - before >= 8, path  # 25 jobs, at most 3 a call
    size, entries = bounded.set_page(store, keys.RETRIES, 0, 25)
    assert size == 30 and [m for m, _ in entries] == fat[:25]
    size, jobs = bounded.queue_page(store, "fat", 20, 25)
    assert size == 30 and [j for _, j in jobs] == fat[20:]  # the last 10 in fetch order
    before = fcalls(r)
    cursor, scanned, found = bounded.set_filter(store, keys.RETRIES, "0", 20_000, 25, "", "",
                                                "no such text")
    # ZSCAN's COUNT is a hint: a call may read a few jobs past 256 KB
    assert (cursor, scanned, found) == ("0", 30, []) and fcalls(r) - before >= 5


def test_find_in_a_big_queue_a_bounded_slice_a_call(web: Web, store: SyncStore,
                                                    r: redis.Redis,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The job at the far end of a queue of 100,000 (the next to be fetched: the scan goes
    newest first) is found in one request of ~50 calls, none holding Redis for long; with no
    time left after a call, each request makes one call and offers to keep searching."""
    n = 100_000
    fill_queue(r, n)
    with slow_redis_calls(r, 50) as slow:
        before = fcalls(r)
        got = web.get("/find", params={"jid": "big00000000"})
        calls = fcalls(r) - before
        assert got.status_code == 200 and "number 1 to be fetched" in got.text
        assert web.get("/find", params={"jid": "big-none"}).status_code == 404
    assert slow == []
    # 50 slices of the queue, 3 of the (empty) sorted sets, the queue list, the page's own
    assert n // WEB_QUEUE_SCAN <= calls <= n // WEB_QUEUE_SCAN + 8
    monkeypatch.setattr(resources, "FIND_SECONDS", 0)
    path, requests = "/find?jid=big00000000", 0
    while True:
        before = fcalls(r)
        got = web.get(path)
        requests += 1
        assert fcalls(r) - before <= 4  # one search call, the queue list, the page's own
        more = re.search(r'<a rel="next" href="([^"]+)">', got.text)
        if not more:
            break
        assert "Not found yet among" in got.text
        path = more.group(1).replace("&amp;", "&")
    assert got.status_code == 200 and "number 1 to be fetched" in got.text
    assert requests == 3 + n // WEB_QUEUE_SCAN


# -- localisation -----------------------------------------------------------------------------

TEMPLATE_DIR = os.path.join(os.path.dirname(render.__file__), "templates")
TRANSLATED = ("ar", "cs", "da", "de", "el", "es", "fa", "fr", "he", "hi", "it", "ja", "ko", "nb",
              "nl", "pl", "pt", "pt-br", "ru", "sv", "ta", "uk", "ur", "vi", "zh-cn", "zh-tw")
T_CALL = re.compile(r"""\bt\(\s*['"]([A-Za-z]\w*)['"]""")


def language(got: testing.Result) -> tuple[str, str, str]:
    """(Content-Language, <html lang>, <html dir>) of a page."""
    m = re.search(r'<html lang="([^"]*)" dir="([^"]*)">', got.text)
    assert m, got.text[:200]
    return got.headers["content-language"], m.group(1), m.group(2)


# Faktory's words for its menu and summary bar, in each of its 27 languages: what its users look
# for. Corrected where Faktory's file is wrong: el "Προγραματίστηκε" (spelling), fa Enqueued
# "صف بندی نشدند" (says "not queued"), hi "व्यस्थ" and "कतारे" (spelling), ta Retries (a stray
# comma), ur (Arabic presentation forms and "کوشيش"); pl and pt-br have no Dead in Faktory.
FAKTORY_TERMS_KEYS = ("Busy", "Queues", "Retries", "Scheduled", "Dead", "Processed", "Failed",
                      "Enqueued")
FAKTORY_TERMS = {
    "ar": ("مشغول", "أرتال", "إعادة محاولة", "مجدول", "ميتة", "تمت المعالجة", "فشل", "في الرتل"),
    "cs": ("Zaneprázdněné", "Fronty", "Opakování", "Naplánované", "Mrtvé", "Zpracované",
           "Nezdařené", "Zařazené"),
    "da": ("Travl", "Køer", "Forsøg", "Planlagt", "Død", "Processeret", "Fejlet", "I kø"),
    "de": ("Beschäftigt", "Warteschlangen", "Versuche", "Geplant", "Tot", "Verarbeitet",
           "Fehlgeschlagen", "In der Warteschlange"),
    "el": ("Απασχολημένο", "Στοίβες", "Προσπάθειες", "Προγραμματίστηκε", "Αδρανείς",
           "Επεξεργάστηκε", "Απέτυχε", "Μπήκαν στην στοίβα"),
    "en": ("Busy", "Queues", "Retries", "Scheduled", "Dead", "Processed", "Failed", "Enqueued"),
    "es": ("Ocupado", "Filas", "Reintentos", "Programadas", "Muerto", "Procesadas", "Fallidas",
           "En Fila"),
    "fa": ("مشغول", "صف ها", "تکرار", "زمان بندی", "مرده", "پردازش شده", "ناموفق", "صف بندی شده"),
    "fr": ("En cours", "Queues", "Tentatives", "Planifiées", "Mortes", "Traitées", "Échouées",
           "En attente"),
    "he": ("עסוקים", "תורים", "נסיונות חוזרים", "מתוכננים", "מתים", "עובדו", "נכשלו", "בתור"),
    "hi": ("व्यस्त", "कतारें", "पुनर्प्रयास", "परिगणित", "निष्प्राण", "कार्रवाई कृत", "असफल",
           "कतारबद्ध"),
    "it": ("Occupato", "Code", "Nuovi tentativi", "Pianificato", "Arrestato", "Processato",
           "Fallito", "In coda"),
    "ja": ("実行中", "キュー", "再試行", "予定", "デッド", "完了", "失敗", "待機状態"),
    "ko": ("작동", "큐", "재시도", "예약", "죽음", "처리완료", "실패", "대기 중"),
    "nb": ("Opptatt", "Køer", "Forsøk", "Planlagt", "Død", "Prosessert", "Mislykket", "I kø"),
    "nl": ("Bezet", "Wachtrijen", "Opnieuw proberen", "Gepland", "Overleden", "Verwerkt",
           "Mislukt", "In de wachtrij"),
    "pl": ("Zajęte", "Kolejki", "Prób", "Zaplanowane", "Martwe", "Ukończone", "Nieudane",
           "Zakolejkowane"),
    "pt": ("Ocupado", "Filas", "Tentativas", "Agendados", "Morto", "Processados", "Falhados",
           "Em espera"),
    "pt-br": ("Ocupados", "Filas", "Tentativas", "Agendados", "Mortos", "Processados", "Falhas",
              "Na fila"),
    "ru": ("Занят", "Очереди", "Попытки", "Запланировано", "Убито", "Обработано", "Провалено",
           "В очереди"),
    "sv": ("Upptagen", "Köer", "Försök", "Schemalagd", "Död", "Processerad", "Misslyckad", "Köad"),
    "ta": ("பணிமிகுதி", "வரிசை", "மீண்டும் முயற்சிக்க", "திட்டமிடப்பட்ட", "இறந்துபோன",
           "நிறையுற்றது", "தோல்வி", "வரிசைப்படுத்தப்பட்டவை"),
    "uk": ("Зайнятих", "Черги", "Спроби", "Заплановано", "Вбитих", "Опрацьовано", "Невдалих",
           "У черзі"),
    "ur": ("مصروف", "قطاريں", "دوبارہ کوشش", "طے شدہ", "ختم شدہ", "مکمل شدہ", "ناکام شدہ",
           "قطار ميں شامل"),
    "vi": ("Bận", "Các hàng đợi", "Thử lại", "Đã lên lịch", "Chết", "Đã xử lý", "Đã thất bại",
           "Hàng đợi"),
    "zh-cn": ("执行中", "队列", "重试", "已计划", "已停滞", "已处理", "已失败", "已进入队列"),
    "zh-tw": ("忙碌", "佇列", "重試", "已排程", "停滯", "已處理", "已失敗", "已佇列"),
}


def test_every_language_faktory_has_with_its_menu_words() -> None:
    catalog = i18n.Catalog.load()
    assert sorted(catalog.locales) == sorted(FAKTORY_TERMS) and len(FAKTORY_TERMS) == 27
    for code, words in FAKTORY_TERMS.items():
        strings = catalog.locales[code].strings
        assert tuple(strings[k] for k in FAKTORY_TERMS_KEYS) == words, code
    # "Busy" is the workers page, not the "active" status beside it
    de = catalog.locales["de"]
    assert de.t("Busy") == "Beschäftigt" and de.t("active") == "aktiv"
    for code in ("fa", "he", "ur", "ar"):
        assert catalog.locales[code].direction == "rtl", code


def test_locale_cookie_beats_accept_language(web: Web) -> None:
    got = web.get("/queues", headers={"Cookie": f"{i18n.COOKIE}=fr", "Accept-Language": "de"})
    assert language(got) == ("fr", "fr", "ltr") and "Tentatives" in got.text
    # a cookie naming no locale file is ignored
    got = web.get("/queues", headers={"Cookie": f"{i18n.COOKIE}=../../etc", "Accept-Language": "de"})
    assert language(got)[0] == "de"


@pytest.mark.parametrize("header,want", [
    ("lt-LT, de-AT;q=0.8", "de"),      # no lt file: the next entry, by its base language
    ("sv-SE", "sv"),
    ("de-at", "de"),
    ("pt-BR,pt;q=0.9", "pt-br"),       # the regional file when there is one
    ("zh-CN", "zh-cn"),
    ("ja;q=0.2, xx, nl;q=0.9", "nl"),  # by quality, then order
    ("es;q=0, it", "it"),              # q=0 means not acceptable
    ("tlh, xx-YY, *", "en"),           # nothing known: English
    ("", "en"),
])
def test_accept_language_negotiation(web: Web, header: str, want: str) -> None:
    assert language(web.get("/", headers={"Accept-Language": header}))[0] == want


def test_content_language_on_every_response(web: Web) -> None:
    de = {"Accept-Language": "de-DE"}
    assert web.get("/", headers=de).headers["content-language"] == "de"
    assert web.get("/stats", headers=de).headers["content-language"] == "de"
    missing = web.get("/no/such/page", headers=de)
    assert missing.status_code == 404 and language(missing) == ("de", "de", "ltr")
    assert "Zurück zur Übersicht" in missing.text
    assert "Accept-Language" in web.get("/", headers=de).headers["vary"]
    assert "content-language" not in web.get("/static/app.css", headers=de).headers
    assert web.get("/").headers["content-language"] == "en"


def test_rtl_languages_render_right_to_left(web: Web, store: SyncStore) -> None:
    push(store)
    got = web.get("/queues", headers={"Cookie": f"{i18n.COOKIE}=ar"})
    assert language(got) == ("ar", "ar", "rtl") and "أرتال" in got.text
    assert "[dir=\"rtl\"]" in web.get("/static/app.css").text
    for code in ("fa", "he", "ur"):  # RTL even before they have a locale file
        assert i18n.Locale(code, {}).direction == "rtl"
    assert i18n.Locale("en", {}).direction == "ltr"


def test_pages_in_german(web: Web, store: SyncStore) -> None:
    entry = add_failed(store, jobtype="Resize")
    push(store, queue="mails")
    de = {"Accept-Language": "de"}
    retries = web.get("/retries", headers=de).text
    assert "Jetzt erneut versuchen" in retries and "Versuche" in retries and "Retry now" not in retries
    assert re.search(r"vor \d+ s<", web.get("/queues/mails", headers=de).text)  # relative times
    assert "Fehler" in web.get(f"/retries/{key_of(entry)}", headers=de).text
    assert "Alle Jobs in mails löschen?" in web.get("/queues", headers=de).text
    dashboard = web.get("/", headers=de).text
    assert "Abfrageintervall" in dashboard and "verarbeitet: <b>0</b>" in dashboard
    assert "Jobs pro Abfrage" in dashboard  # the live chart's unit


def test_translated_text_is_escaped_with_its_values(store: SyncStore, redis_url: str) -> None:
    catalog = i18n.Catalog({"en": {"Hi": "Hello %{who}", "Bye": "Bye"}, "xx": {"Hi": "Hallo %{who}"}})
    xx = catalog.locales["xx"]
    assert xx.t("Hi", who="<b>") == "Hallo <b>" and xx.t("Bye") == "Bye"  # English fallback
    assert xx.t("Unknown") == "Unknown" and xx.t("Hi") == "Hallo %{who}"
    env = render.environment()
    page = env.from_string("{{ t('Hi', who=name) }}").render(locale=xx, name="<b>")
    assert page == "Hallo &lt;b&gt;"


def test_locale_file_format() -> None:
    text = "# comment\nxx: # header\n  Key: value: with colon\n  Quoted: \"%{n} items\"\n\n"
    assert i18n.parse(text, "xx") == {"Key": "value: with colon", "Quoted": "%{n} items"}
    for bad in ("xx:\n  no colon here\n", "yy:\n  Key: v\n", "xx:\n  A: 1\n  A: 2\n",
                "xx:\n  A: 1\nxx:\n", "xx:\n  bad key: 1\n"):
        with pytest.raises(ValueError):
            i18n.parse(bad, "xx")


def test_every_template_key_is_in_english() -> None:
    english = i18n.Catalog.load().locales["en"].strings
    sources = [os.path.join(TEMPLATE_DIR, f) for f in os.listdir(TEMPLATE_DIR)]
    sources += [os.path.join(os.path.dirname(render.__file__), f) for f in ("render.py", "charts.py")]
    used = set()
    for path in sources:
        with open(path, encoding="utf-8") as f:
            used |= set(T_CALL.findall(f.read()))
    used |= {key for key, _ in charts.SERIES}
    assert len(used) > 100
    assert sorted(used - set(english)) == []
    assert sorted(set(english) - used - {"LanguageName"}) == []  # nothing unused either


def test_locale_files_parse_and_match_english() -> None:
    tables = {}
    for name in os.listdir(i18n.LOCALES_DIR):
        code = name.removesuffix(".yml")
        with open(os.path.join(i18n.LOCALES_DIR, name), encoding="utf-8") as f:
            tables[code] = i18n.parse(f.read(), code)
    english = tables["en"]
    assert set(TRANSLATED) <= set(tables)
    placeholders = re.compile(r"%\{\w+\}")
    for code, table in tables.items():
        assert set(table) <= set(english), (code, set(table) - set(english))
        for key, text in table.items():
            assert sorted(placeholders.findall(text)) == sorted(placeholders.findall(english[key])), \
                (code, key)
    for code in TRANSLATED:
        assert set(tables[code]) == set(english), (code, set(english) - set(tables[code]))
    assert len({tables[c]["LanguageName"] for c in tables}) == len(tables)


# -- /debug -----------------------------------------------------------------------------------

def test_debug_page(web: Web, store: SyncStore) -> None:
    page = web.get("/debug", headers={"Cookie": f"{i18n.COOKIE}=ja"}).text
    selector = re.search(r'<select id="locale-select".*?</select>', page, re.S).group(0)
    codes = re.findall(r'<option value="([^"]+)"', selector)
    assert set(TRANSLATED) | {"en"} <= set(codes) and codes == sorted(codes)
    assert re.search(r'<option value="ja" lang="ja" selected>日本語', selector)
    assert "faktory_locale" in web.get("/static/app.js").text
    assert re.search(r'id="redis-rtt">\d+ µs<', page)
    assert redis_url_path(store) in page
    assert re.search(r'<pre class="df">[^<]*\d+%', page)  # df -h of the socket's directory
    assert "redis_version" in page and "used_memory_human" in page  # the full INFO
    assert re.search(r"<th>CPU 数</th><td>\d+</td>", page)
    assert re.search(r"<td>\d+\.\d MB</td>", page)
    assert "サーバープロセス" not in page  # no server process has had a client yet
    store.hello("proc-a", 100, "w1", "box", 1, b"[]", 2, repr(time.time()))
    store.hello("proc-b", 100, "w2", "box", 2, b"[]", 2, repr(time.time()))
    page = web.get("/debug").text
    assert re.search(r"<th>Server processes \(serving clients\)</th><td>2</td>", page)


def redis_url_path(store: SyncStore) -> str:
    return store.client.execute_command("CONFIG", "GET", "unixsocket")[1].decode()


def test_debug_helpers(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    assert redis_location("redis://:secret@example.com:6380/2") == "redis://example.com:6380/2"
    assert redis_location("unix:///var/run/r.sock?db=1") == "/var/run/r.sock"
    assert resources.storage_dir("redis://example.com") is None
    assert resources.storage_dir("unix:///var/run/r.sock") == "/var/run"
    assert "%" in resources.disk_usage(str(tmp_path))
    assert "df" in resources.disk_usage(str(tmp_path / "missing"))  # df's own complaint

    def hang(*args: Any, **kw: Any) -> Any:
        assert kw["timeout"] == 2
        raise subprocess.TimeoutExpired(args[0], kw["timeout"])
    monkeypatch.setattr(resources.subprocess, "run", hang)
    assert resources.disk_usage("/") == "df -h: no answer within 2 s"
    assert resources.rss_bytes() > 1 << 20


def test_debug_over_tcp_omits_df(store: SyncStore, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    web = Web(redis_url)
    monkeypatch.setattr(resources, "storage_dir", lambda url: None)
    page = web.get("/debug").text
    assert 'class="df"' not in page and "Redis INFO" in page


# -- Enterprise, part 2: Cron and Throttles tabs, unique locks, expired jobs --------------------

def test_throttles_tab(web: Web, store: SyncStore) -> None:
    assert "No throttles." in web.get("/throttles").text
    store.set_throttles({"slow": ("concurrency", 2, 60), "bulk": ("worker", 3, 30)})
    for _ in range(3):
        push(store, queue="slow")
    for _ in range(2):
        push(store, queue="bulk")
    assert store.fetch("w1", "proc", jobs.now_score(), 1800, ["slow"])
    for wid in ("w1", "w2"):
        assert store.fetch(wid, "proc", jobs.now_score(), 1800, ["bulk"])
    page = web.get("/throttles").text
    rows = dict(re.findall(r'<a href="/queues/(\w+)">\w+</a></td>\s*(.*?)</tr>', page, re.S))
    slow = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", rows["slow"])).split()
    assert slow == ["concurrency", "=", "2,", "timeout", "=", "60", "1", "2"]
    bulk = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", rows["bulk"]))
    assert "worker = 3, timeout = 30" in bulk and "2 Processes (2)" in bulk
    assert 'href="/throttles" class="current"' in page


def test_cron_tab_lists_entries_and_enqueues_now(web: Web, store: SyncStore) -> None:
    assert "No cron entries." in web.get("/cron").text
    entries = cron.parse_entries([
        {"schedule": "@yearly", "job": {"type": "Yearly", "args": [1, "<b>"]}},
        {"schedule": "*/5 * * * *", "job": {"type": "Five", "queue": "critical"}},
    ], ["/etc/faktory/conf.d/cron.toml"] * 2)
    store.set_cron_entries(entries)
    page = web.get("/cron").text
    assert "<code>@yearly</code>" in page and "<code>*/5 * * * *</code>" in page
    assert '<code class="args">[1, "\\u003cb\\u003e"]</code>' in page  # no markup gets in
    assert page.index("*/5 * * * *") < page.index("@yearly")  # soonest next run first
    assert page.count("–") >= 2  # no last run yet
    yearly = entries[0]
    reply = web.post("/cron", {"entry": yearly.id})
    assert reply.status_code == 302 and reply.headers["location"] == "/cron"
    (queued,) = store.client.lrange(keys.queue("default"), 0, -1)
    jid = jobs.stored_job(queued)["jid"]
    assert f"<code>{jid}</code>" in web.get("/cron").text  # the last run, with its jid
    # Same security rules as every action: no CSRF token, no push.
    assert web.post("/cron", {"entry": yearly.id}, token=None).status_code == 403
    assert web.post("/cron", {"entry": "nosuchentry"}).status_code == 400
    assert store.client.llen(keys.queue("default")) == 1


def test_cron_enqueue_now_of_a_locked_unique_job_says_why(web: Web, store: SyncStore) -> None:
    (entry,) = cron.parse_entries(
        [{"schedule": "@daily", "job": {"type": "Once", "custom": {"unique_for": 600}}}], [])
    store.set_cron_entries([entry])
    assert web.post("/cron", {"entry": entry.id}).status_code == 302
    again = web.post("/cron", {"entry": entry.id})
    assert again.status_code == 409 and "Job not unique" in again.text


def test_job_page_shows_the_unique_lock(web: Web, store: SyncStore) -> None:
    custom = {"unique_for": 3600}
    holder = push(store, "Lonely", [7], custom=custom)
    score, jid = add_failed(store, jobtype="Lonely", args=[7], custom=custom,
                            jid=holder["jid"])
    page = web.get(f"/retries/{score}|{jid}").text
    assert re.search(rf"<th>Unique lock</th><td>Held by {jid} for (1 h 0 min|59 min \d+ s) more</td>", page)
    store.client.delete(*store.client.keys("ff:uniq:*"))
    page = web.get(f"/retries/{score}|{jid}").text
    assert "<th>Unique lock</th><td>Released</td>" in page
    plain_score, plain_jid = add_failed(store)
    assert "Unique lock" not in web.get(f"/retries/{plain_score}|{plain_jid}").text


def test_expired_count_on_dashboard_and_metrics(web: Web, store: SyncStore) -> None:
    store.client.set(keys.EXPIRED, 1234)
    page = web.get("/").text
    assert re.search(r"<dt>Expired jobs</dt><dd>1,234</dd>", page)
    assert "faktory_jobs_expired_total 1234" in web.get("/metrics").text
    assert web.get("/stats").json["faktory"]["total_expired"] == 1234


def test_pages_translate(web: Web, store: SyncStore) -> None:
    de = {"Accept-Language": "de"}
    assert "Keine Drosselungen." in web.get("/throttles", headers=de).text
    assert "Keine Cron-Einträge." in web.get("/cron", headers=de).text
