"""The web UI's Batches tab, batch detail, the batch and tracking rows of a job's page and the
batch metrics, through Falcon's test client against a real child Redis (test_web's fixtures)."""
# ruff: noqa: F811
from __future__ import annotations

import re
import time

import redis

from faktory_fast import jobs
from faktory_fast.server import batches
from faktory_fast.storage import keys
from faktory_fast.storage.fcall import Outcome
from faktory_fast.storage.store import Operations, SyncStore

# test_web's fixtures (a child Redis with the library, a flushed store on it, the web app):
# imported under their names, which the tests' parameters then shadow (F811).
from tests.support import slow_redis_calls
from tests.unit.test_web import Web, add_failed, key_of, r, redis_url, store, web  # noqa: F401


def new_batch(store: SyncStore, description: str = "", parent: str = "") -> str:
    bid = batches.new_bid()
    now = time.time_ns()
    cb = batches.callback_job({"jobtype": "Done", "args": [], "queue": "cb"}, "complete", bid, now)
    assert store.batch_new(bid, now, description, parent, [cb]) == ""
    return bid


def push_into(store: SyncStore, bid: str, **fields: object) -> str:
    jid = f"jid-{time.time_ns()}"
    job = {"jid": jid, "jobtype": "Work", "args": [1], "queue": "bq",
           "custom": {"bid": bid, **fields.pop("custom", {})}, **fields}  # type: ignore[dict-item]
    assert store.push([jobs.prepare(job, time.time_ns())]) == {}
    return jid


def run_one(store: SyncStore, queue: str = "bq") -> str:
    got = store.fetch("", "test", jobs.now_score(), 1800, [queue])
    store.ack(got.jid.decode(), jobs.today())
    return got.jid.decode()


def test_batches_tab_lists_newest_first_paged_and_filtered(web: Web, store: SyncStore) -> None:
    bids = [new_batch(store, description=f"import {n}" + (" nightly" if n % 10 == 0 else ""))
            for n in range(30)]
    page = web.get("/batches")
    assert page.status_code == 200
    listed = re.findall(r'href="/batches/(b-[^"]+)"', page.text)
    assert listed == bids[::-1][:25]
    assert 'rel="next"' in page.text and 'rel="prev"' not in page.text
    page2 = web.get("/batches", params={"page": "2"})
    assert re.findall(r'href="/batches/(b-[^"]+)"', page2.text) == bids[::-1][25:]
    assert 'rel="next"' not in page2.text and 'rel="prev"' in page2.text
    found = web.get("/batches", params={"q": "NIGHTLY"})
    assert re.findall(r'href="/batches/(b-[^"]+)"', found.text) == [bids[20], bids[10], bids[0]]
    assert "No batches." in web.get("/batches", params={"q": "nothing like it"}).text
    assert 'href="/batches"' in web.get("/").text  # the tab


def test_expired_batches_leave_the_list(web: Web, store: SyncStore) -> None:
    keep, gone = new_batch(store, "kept"), new_batch(store, "gone")
    store.client.execute_command("DEL", keys.batch(gone))
    assert re.findall(r'href="/batches/(b-[^"]+)"', web.get("/batches").text) == [keep]
    assert store.client.execute_command("ZCARD", keys.BATCHES) == 1


def test_batch_detail_jobs_children_and_progress(web: Web, store: SyncStore) -> None:
    parent = new_batch(store, "the parent")
    child = new_batch(store, "the <child>", parent=parent)
    done, waiting = push_into(store, parent), push_into(store, parent)
    store.batch_commit(parent, 3600)
    assert run_one(store) == done
    page = web.get(f"/batches/{parent}")
    assert page.status_code == 200
    text = page.text
    assert "the parent" in text and f'href="/batches/{child}"' in text
    assert "the &lt;child&gt;" in text  # escaped
    assert re.search(rf"<code>{done}</code></td><td>success</td>", text)
    assert re.search(rf"<code>{waiting}</code></td><td>pending</td>", text)
    assert '<progress value="1" max="2"' in text  # one of its two jobs succeeded
    child_page = web.get(f"/batches/{child}").text
    assert f'href="/batches/{parent}"' in child_page  # its parent
    missing = web.get("/batches/b-nosuchbatch")
    assert missing.status_code == 404 and "b-nosuchbatch" in missing.text


def test_job_page_shows_its_batch_and_tracking(web: Web, store: SyncStore) -> None:
    bid = new_batch(store)
    jid = push_into(store, bid, custom={"track": 1})
    got = store.fetch("", "test", jobs.now_score(), 1800, ["bq"])
    assert got.jid.decode() == jid
    # The job failed: its retry entry's page shows the batch and the tracking data.
    entry = add_failed(store, jobtype="Work", jid=jid, custom={"bid": bid, "track": 1})
    store.client.execute_command("HSET", keys.tracking(jid), "percent", 42, "desc", "halfway")
    page = web.get(f"/retries/{key_of(entry)}").text
    assert f'href="/batches/{bid}"' in page
    assert "halfway" in page and '<progress value="42" max="100">' in page


def test_busy_shows_the_progress_of_tracked_jobs(web: Web, store: SyncStore) -> None:
    def reserve(**custom: object) -> str:
        jid = f"jid-{time.time_ns()}"
        job = {"jid": jid, "jobtype": "Work", "args": [], "queue": "tq", "custom": custom}
        assert store.push([jobs.prepare(job, time.time_ns())]) == {}
        assert store.fetch("", "test", jobs.now_score(), 1800, ["tq"]).jid.decode() == jid
        return jid

    tracked, untracked, other = reserve(track=1), reserve(other="x"), reserve(track=1)
    assert store.track_set(tracked, 37, "resizing <images>", "") == Outcome.DONE
    assert store.track_set(other, 5, None, "") == Outcome.DONE
    page = web.get("/busy").text
    rows = {jid: re.search(rf"<code>{jid}</code>.*?</tr>", page, re.S).group(0)
            for jid in (tracked, untracked, other)}
    assert '<progress value="37" max="100"></progress> 37 %: resizing &lt;images&gt;' in rows[tracked]
    assert "<progress" not in rows[untracked]
    assert '<progress value="5" max="100"></progress> 5 %</td>' in rows[other]
    assert "<th>Tracking</th>" in page


def test_metrics_batches_open_and_callbacks(web: Web, store: SyncStore) -> None:
    first, _ = new_batch(store), new_batch(store)
    store.batch_commit(first, 3600)  # empty: its complete callback fires at once
    text = web.get("/metrics").text
    assert re.search(r"^faktory_batches_open 2$", text, re.M)
    assert re.search(r"^faktory_batch_callbacks_total 1$", text, re.M)
    assert "# TYPE faktory_batch_callbacks_total counter" in text


def test_batch_jobs_are_paged_and_filtered_by_state(web: Web, store: SyncStore) -> None:
    bid = new_batch(store)
    now = time.time_ns()
    jids = [f"jid-{n:04d}-{now}" for n in range(2000)]  # past any listpack size: HSCAN pages
    assert store.push([jobs.prepare({"jid": j, "jobtype": "W", "args": [], "queue": "bq",
                                     "custom": {"bid": bid}}, now) for j in jids]) == {}
    done = run_one(store)
    seen: list[str] = []
    cursor, pages = "0", 0
    while True:
        page = web.get(f"/batches/{bid}", params={"cursor": cursor})
        assert page.status_code == 200
        rows = re.findall(r"<code>(jid-[^<]+)</code></td><td>(\w+)</td>", page.text)
        assert len(rows) < 1000  # a page, not all of them
        seen += [j for j, _ in rows]
        pages += 1
        more = re.search(r'href="/batches/[^"]+\?cursor=(\d+)&amp;state="', page.text)
        if not more:
            break
        cursor = more.group(1)
    assert pages > 1 and sorted(set(seen)) == sorted(jids)
    succeeded = web.get(f"/batches/{bid}", params={"state": "success"}).text
    assert re.findall(r"<code>(jid-[^<]+)</code></td><td>(\w+)</td>", succeeded) == [(done, "success")]
    assert web.get(f"/batches/{bid}", params={"state": "bogus"}).status_code == 400
    assert web.get(f"/batches/{bid}", params={"cursor": "x"}).status_code == 400


# -- no request holds Redis for long (see test_web) ----------------------------------------------

def test_batch_list_pages_hold_redis_briefly(web: Web, store: SyncStore, r: redis.Redis) -> None:
    """20,000 batches: the last page of the list, or a text no batch has, read every batch
    in one call (~170 ms); now WEB_BATCH_SCAN batches a call."""
    n, now = 20_000, time.time_ns() - 20_000 * 1000
    bids = [f"b-many-{i:05d}" for i in range(n)]
    for start in range(0, n, 1000):
        store.run_all([Operations.batch_new.build(store, bids[i], now + i * 1000, f"import {i}",
                                                  "", []) for i in range(start, start + 1000)])
    with slow_redis_calls(r, 50) as slow:
        nothing = web.get("/batches", params={"q": "no such text"}).text
        last = web.get("/batches", params={"page": str(n // 25)}).text
        found = web.get("/batches", params={"q": "IMPORT 7"}).text
    assert slow == []
    assert "No batches." in nothing
    assert re.findall(r'href="/batches/(b-[^"]+)"', last) == bids[24::-1]
    assert 'rel="next"' not in last and 'rel="prev"' in last
    assert re.findall(r'href="/batches/(b-[^"]+)"', found)[:3] == [bids[7999], bids[7998],
                                                                    bids[7997]]


def test_batch_jobs_filtered_by_state_hold_redis_briefly(web: Web, store: SyncStore,
                                                         r: redis.Redis) -> None:
    """A batch of 200,000 jobs, a state one of them is in: one call scanned them all
    (~100 ms); now a page of them a call, and the page offers "more" after 20,000."""
    bid = new_batch(store)
    for start in range(0, 200_000, 10_000):
        r.hset(keys.batch_jobs(bid), mapping={f"jid-{i:06d}": "pending"
                                              for i in range(start, start + 10_000)})
    r.hset(keys.batch_jobs(bid), "jid-dead", "dead")
    dead: list[str] = []
    cursor, pages = "0", 0
    with slow_redis_calls(r, 50) as slow:
        while True:
            page = web.get(f"/batches/{bid}", params={"cursor": cursor, "state": "dead"})
            assert page.status_code == 200
            dead += re.findall(r"<code>(jid-[^<]+)</code></td><td>dead</td>", page.text)
            pages += 1
            more = re.search(r'href="/batches/[^"]+\?cursor=(\d+)&amp;state=dead"', page.text)
            if not more:
                break
            cursor = more.group(1)
    assert slow == []
    assert dead == ["jid-dead"] and 1 < pages <= 200_000 // 20_000 + 2


def test_batch_metrics_hold_redis_briefly(web: Web, store: SyncStore, r: redis.Redis) -> None:
    """100,000 batches open, of which all but 3 expired: counting the open ones checked each
    in one call (~150 ms); now a page of them a call."""
    live = [new_batch(store) for _ in range(3)]
    for start in range(0, 100_000, 10_000):
        r.sadd(keys.BATCHES_OPEN, *(f"b-expired-{i:06d}" for i in range(start, start + 10_000)))
    with slow_redis_calls(r, 50) as slow:
        text = web.get("/metrics").text
    assert slow == []
    assert re.search(r"^faktory_batches_open 3$", text, re.M)
    assert sorted(m.decode() for m in r.smembers(keys.BATCHES_OPEN)) == sorted(live)
