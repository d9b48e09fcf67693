"""The web UI of a deployment with three partitions (``REDIS_URL=redis+cluster://...?partitions=3``):
one faktory_fast node with its web UI on a Redis Cluster (3 primaries + 3 replicas), jobs in
queues, retries, dead and scheduled sets of every partition. The pages are fetched over HTTP
and checked against what each partition's primary holds (read directly, as
test_partitions.py does): the UI shows the whole deployment, one set's pages in score order
across partitions, and acts in whichever partition holds a job.
"""
# ruff: noqa: F811
from __future__ import annotations

import html
import http.client
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from prometheus_client.parser import text_string_to_metric_families

from faktory_fast.storage import keys
from faktory_fast.storage.keys import partition_of, partition_tags
from tests.cluster import SKIP_REASON, RedisCluster, redis_binary

# The fixture, imported under its name, which the tests' parameters then shadow (F811).
from tests.integration.cluster_fixtures import redis_cluster  # noqa: F401
from tests.integration.test_partitions import (
    PARTS,
    Partitioned,
    faktory_info,
    fetched,
    mutate,
    queues_by_partition,
)
from tests.support import FaktoryServer, job, wait_for

pytestmark = pytest.mark.skipif(redis_binary() is None, reason=SKIP_REASON)

RETRIES = 40  # more than a page (25): the second page starts within some partition's set
KEY = re.compile(r'name="key" value="([^"]+)"')  # a sorted-set entry's checkbox


@dataclass
class Deployment(Partitioned):
    """test_partitions' Partitioned with one node, whose web UI is on."""

    def web(self, method: str, path: str,
            fields: list[tuple[str, str]] | None = None) -> tuple[int, dict[str, str], str]:
        """(status, headers, body) of a request to the node's web UI, redirects not followed;
        a POST as a script sends it (no cookie, no Origin: no CSRF token needed)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.nodes[0].web_port, timeout=30)
        try:
            body = urlencode(fields or [])
            headers = {"Content-Type": "application/x-www-form-urlencoded"} if fields else {}
            conn.request(method, path, body=body if fields else None, headers=headers)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read().decode()
        finally:
            conn.close()

    def page(self, path: str) -> str:
        status, _, body = self.web("GET", path)
        assert status == 200, (path, status, body[:500])
        return body

    def post(self, path: str, fields: list[tuple[str, str]]) -> str:
        """POST a form; the path it redirects to."""
        status, headers, body = self.web("POST", path, fields)
        assert status == 302, (path, status, body[:500])
        return headers["location"]

    def zset(self, k: int, name: str) -> list[tuple[str, float]]:
        """[(jid, score), ...] of partition ``k``'s sorted set ``name``, in its order."""
        with self.redis(k) as r:
            return [(json.loads(m)["jid"], s)
                    for m, s in r.zrange(self.key(k, name), 0, -1, withscores=True)]

    def union(self, name: str) -> list[tuple[str, float, int]]:
        """[(jid, score, partition), ...] of every partition's ``name``, in score order (then
        member: Redis' order, with no ties in these tests' sets)."""
        return sorted(((jid, score, k) for k in range(PARTS) for jid, score in self.zset(k, name)),
                      key=lambda e: (e[1], e[0]))


def keys_on(page: str) -> list[str]:
    """The entry keys (``<score>|<jid>``) of a sorted-set page, in its order."""
    return [key for key in map(html.unescape, KEY.findall(page)) if key != "all"]


def jid_of(key: str) -> str:
    return key.partition("|")[2]


@pytest.fixture(scope="module")
def deployment(redis_cluster: RedisCluster,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    base: Path = tmp_path_factory.mktemp("partitions-web")
    env = {"REDIS_URL": f"{redis_cluster.url}?partitions={PARTS}"}
    node = FaktoryServer(str(base / "node"), processes=1, env=env, web=True)
    try:
        node.start()
        d = Deployment(redis_cluster, [node], list(partition_tags(PARTS)), queues_by_partition())
        wait_for(lambda: d.web("GET", "/health")[0] == 200, timeout=30)
        yield d
    finally:
        node.stop()


@dataclass
class Data:
    """What ``d`` put in the deployment."""

    queued: dict[int, list[str]]  # partition -> jids waiting in its first queue
    retries: dict[str, int]  # jid -> partition
    dead: dict[str, int]
    scheduled: dict[str, int]


@pytest.fixture
def d(deployment: Deployment) -> Iterator[tuple[Deployment, Data]]:
    """The deployment, flushed, with: k + 2 jobs waiting in partition k's first queue; two
    dead jobs a partition; RETRIES retries spread over the partitions (jobtype Even or Odd by
    their number), each failed out of its partition's second queue; a job a partition
    scheduled an hour ahead."""
    c = deployment.client(0)
    assert c.call("FLUSH") == "OK"

    def failed(k: int, jobtype: str) -> str:
        j = job(jobtype, queue=deployment.q(k, 1))
        assert c.push(j) == "OK"
        assert fetched(c, deployment.q(k, 1))["jid"] == j["jid"]
        assert c.fail(j["jid"]) == "OK"
        return j["jid"]

    queued = {k: [] for k in range(PARTS)}  # type: dict[int, list[str]]
    for k in range(PARTS):
        for _ in range(k + 2):
            j = job("Waiting", queue=deployment.q(k))
            assert c.push(j) == "OK"
            queued[k].append(j["jid"])
    dead = {failed(k, "Doomed"): k for k in range(PARTS) for _ in range(2)}
    assert mutate(c, {"cmd": "kill", "target": "retries", "filter": {"jids": list(dead)}}) == "OK"
    retries = {failed(i % PARTS, ("Even", "Odd")[i % 2]): i % PARTS for i in range(RETRIES)}
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    scheduled = {}
    for k in range(PARTS):
        j = job("Later", queue=deployment.q(k), at=at)
        assert c.push(j) == "OK"
        scheduled[j["jid"]] = k
    yield deployment, Data(queued, retries, dead, scheduled)
    deployment.nodes[0].close_clients()


def test_stats_queues_and_dashboard_sum_every_partition(d: tuple[Deployment, Data]) -> None:
    """/stats is INFO over the wire (which sums the partitions), each partition holds a part
    of it, and the queues page lists every partition's queues with their sizes."""
    dep, data = d
    stats = json.loads(dep.page("/stats"))["faktory"]
    assert stats["sets"] == {"scheduled": PARTS, "retries": RETRIES, "dead": 2 * PARTS,
                             "working": 0}
    failures = RETRIES + 2 * PARTS
    assert (stats["total_processed"], stats["total_failures"]) == (failures, failures)
    sizes = {dep.q(k): k + 2 for k in range(PARTS)} | {dep.q(k, 1): 0 for k in range(PARTS)}
    assert stats["queues"] == sizes
    assert stats["queues"] == faktory_info(dep.client(0))["queues"]
    for k in range(PARTS):  # each partition's own share
        assert sorted(jid for jid, _ in dep.zset(k, keys.RETRIES)) == \
            sorted(j for j, p in data.retries.items() if p == k)
    rows = re.findall(r'<a href="/queues/([^"]+)">[^<]*</a>.*?</td>\s*<td>([\d,]+)</td>',
                      dep.page("/queues"), re.S)
    assert dict((name, int(size)) for name, size in rows) == sizes
    # the summary bar (every page's header) and the dashboard's history (today's counts)
    bar = dict(re.findall(r'data-stat="(\w+)">([\d,]+)<', dep.page("/")))
    assert bar == {"processed": str(failures), "failed": str(failures), "busy": "0",
                   "enqueued": str(sum(sizes.values())), "retries": str(RETRIES),
                   "scheduled": str(PARTS), "dead": str(2 * PARTS)}
    scheduled = keys_on(dep.page("/scheduled"))
    assert sorted(map(jid_of, scheduled)) == sorted(data.scheduled)


def test_a_queue_page_of_partition_2(d: tuple[Deployment, Data]) -> None:
    dep, data = d
    name = dep.q(2)
    assert partition_of(name, PARTS) == 2
    page = dep.page(f"/queues/{name}")
    shown = re.findall(r"<td><code>([0-9a-f]{32})</code></td>", page)
    assert sorted(shown) == sorted(data.queued[2])
    # its job types, counted in its partition
    assert re.search(r'\?jobtype=Waiting">Waiting</a></td><td class="num">4</td>', page)
    # and a filter of it
    page = dep.page(f"/queues/{name}?jobtype=Waiting")
    assert sorted(re.findall(r"<td><code>([0-9a-f]{32})</code></td>", page)) == \
        sorted(data.queued[2])


def test_retries_page_in_score_order_across_partitions(d: tuple[Deployment, Data]) -> None:
    """Two pages of retries: the union of the partitions' sets in score order, each entry
    once; a third page is empty; a filter finds the matching retries of every partition."""
    dep, data = d
    union = dep.union(keys.RETRIES)
    assert {k for _, _, k in union} == set(range(PARTS))
    first, second = (keys_on(dep.page(f"/retries?page={n}")) for n in (1, 2))
    assert len(first) == 25 and len(second) == RETRIES - 25
    assert [jid_of(k) for k in first + second] == [jid for jid, _, _ in union]
    scores = [float(k.partition("|")[0]) for k in first + second]
    assert scores == sorted(scores)
    assert len({data.retries[jid_of(k)] for k in second}) > 1  # page 2 is not one partition's
    assert keys_on(dep.page("/retries?page=3")) == []
    odd = keys_on(dep.page("/retries?jobtype=Odd"))
    assert sorted(map(jid_of, odd)) == sorted(j for j, i in zip(data.retries, range(RETRIES))
                                              if i % 2)
    assert {data.retries[jid_of(k)] for k in odd} == set(range(PARTS))


def test_retry_now_of_an_entry_on_partition_1(d: tuple[Deployment, Data]) -> None:
    dep, _ = d
    jid, score = dep.zset(1, keys.RETRIES)[0]
    key = f"{score!r}|{jid}"
    path = f"/retries/{quote(key, safe='')}"
    page = dep.page(path)
    assert jid in page and dep.q(1, 1) in page
    assert dep.post(path, [("action", "retry")]) == "/retries"
    assert jid not in [j for j, _ in dep.zset(1, keys.RETRIES)]
    assert fetched(dep.client(0), dep.q(1, 1))["jid"] == jid
    assert json.loads(dep.page("/stats"))["faktory"]["sets"]["retries"] == RETRIES - 1
    status, headers, _ = dep.web("GET", path)  # gone: back to the list
    assert status == 307 and headers["location"] == "/retries"


def test_bulk_delete_of_dead_jobs_of_several_partitions(d: tuple[Deployment, Data]) -> None:
    dep, data = d
    listed = keys_on(dep.page("/morgue"))
    assert sorted(map(jid_of, listed)) == sorted(data.dead)
    # one of partition 0's, both of partition 2's
    chosen = [k for k in listed if data.dead[jid_of(k)] == 2]
    chosen.append(next(k for k in listed if data.dead[jid_of(k)] == 0))
    assert dep.post("/morgue", [("action", "delete"), *(("key", k) for k in chosen)]) == "/morgue"
    left = {k: [jid for jid, _ in dep.zset(k, keys.DEAD)] for k in range(PARTS)}
    assert {k: len(jids) for k, jids in left.items()} == {0: 1, 1: 2, 2: 0}
    assert not set(map(jid_of, chosen)) & {j for jids in left.values() for j in jids}
    assert sorted(map(jid_of, keys_on(dep.page("/morgue")))) == \
        sorted(j for jids in left.values() for j in jids)


def test_find_box_looks_in_every_partition(d: tuple[Deployment, Data]) -> None:
    dep, data = d
    queued = data.queued[2][1]
    status, _, page = dep.web("GET", f"/find?jid={queued}")
    assert status == 200 and queued in page
    assert f'href="/queues/{dep.q(2)}?order=fetch&amp;page=1"' in page
    retry = next(j for j, k in data.retries.items() if k == 2)
    [score] = [s for j, s in dep.zset(2, keys.RETRIES) if j == retry]
    status, headers, _ = dep.web("GET", f"/find?jid={retry}")
    assert status == 302
    assert headers["location"] == f"/retries/{quote(f'{score!r}|{retry}', safe='')}"
    status, _, _ = dep.web("GET", "/find?jid=nosuchjid")
    assert status == 404


def test_metrics_of_every_partition(d: tuple[Deployment, Data]) -> None:
    dep, _ = d
    status, _, text = dep.web("GET", "/metrics")
    assert status == 200
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    sizes = {labels[0][1]: v for (name, labels), v in samples.items()
             if name == "faktory_queue_size"}
    assert sizes == {**{dep.q(k): k + 2 for k in range(PARTS)},
                     **{dep.q(k, 1): 0 for k in range(PARTS)}}
    sets = {labels[0][1]: v for (name, labels), v in samples.items()
            if name == "faktory_set_size"}
    assert sets == {"scheduled": PARTS, "retries": RETRIES, "dead": 2 * PARTS, "working": 0}
    assert samples[("faktory_jobs_failed_total", ())] == RETRIES + 2 * PARTS
    latencies = {labels[0][1]: v for (name, labels), v in samples.items()
                 if name == "faktory_queue_latency_seconds"}
    assert all(latencies[dep.q(k)] > 0 for k in range(PARTS))  # each read in its partition


def test_busy_lists_reservations_of_every_partition(d: tuple[Deployment, Data]) -> None:
    """A job in progress of each partition; a tracked one's progress, which its queue's
    partition keeps, shows too."""
    dep, data = d
    c = dep.client(0)
    got = [fetched(c, dep.q(k))["jid"] for k in range(PARTS)]
    assert set(got) <= {j for jids in data.queued.values() for j in jids}
    tracked = job("Tracked", queue=dep.q(2, 1), custom={"track": 1})
    assert c.push(tracked) == "OK"
    assert fetched(c, dep.q(2, 1))["jid"] == tracked["jid"]
    track = {"jid": tracked["jid"], "percent": 42, "desc": "halfway there"}
    assert c.call("TRACK SET " + json.dumps(track)) == "OK"
    page = dep.page("/busy")
    assert all(jid in page for jid in [*got, tracked["jid"]])
    assert "halfway there" in page
    assert json.loads(dep.page("/stats"))["faktory"]["sets"]["working"] == PARTS + 1


def test_a_filter_cursor_names_a_partition(d: tuple[Deployment, Data]) -> None:
    """A filter's cursor names a partition: a bad one is refused."""
    dep, _ = d
    assert dep.web("GET", "/retries?q=x&cursor=9:0")[0] == 400
    assert dep.web("GET", "/retries?q=x&cursor=2:0")[0] == 200
