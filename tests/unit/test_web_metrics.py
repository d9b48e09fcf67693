"""The web UI's Metrics pages (job metrics by job type over a window; one job type's executions
and execution-time heatmap over time), through Falcon's test client against a real child Redis
(test_web's fixtures), with counts added as the server processes add them (``ff_metrics``)."""
# ruff: noqa: F811
from __future__ import annotations

import html
import re
import time

import pytest

from faktory_fast import job_metrics
from faktory_fast.job_metrics import MAX_PAIRS, MINUTES_KEPT, PERIODS
from faktory_fast.storage import keys
from faktory_fast.storage.store import SyncStore

# test_web's fixtures (a child Redis with the library, a flushed store on it, the web app):
# imported under their names, which the tests' parameters then shadow (F811).
from tests.unit.test_web import Web, redis_url, store, web  # noqa: F401


def add(store: SyncStore, minute: int, counts: dict[str, str]) -> None:
    """Counts of one minute, added as a server process's flush adds them."""
    store.add_job_metrics({minute: counts}, (MINUTES_KEPT + 1) * 60, 73 * 3600, MAX_PAIRS)


def table(page: str) -> list[list[str]]:
    """The Metrics table's body rows as lists of cell texts."""
    body = re.search(r"<table class=\"metrics\">.*?<tbody>(.*?)</tbody>", page, re.S)
    assert body
    return [[html.unescape(re.sub(r"<[^>]+>", "", cell)).strip()
             for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", body.group(1), re.S)]


@pytest.fixture
def counts(store: SyncStore) -> int:
    """Mail in two queues and Resize this minute, Mail 2 h ago: the current minute."""
    minute = int(time.time() // 60)
    add(store, minute, {"default|Mail": "10 2 1000000 0:8 4:1 25:1",
                        "mailers|Mail": "5 0 500000 1:5",
                        "default|Resize": "3 3 300000 2:3"})
    add(store, minute - 120, {"default|Mail": "100 0 2000000 0:100"})
    return minute


def test_metrics_table_by_job_type_over_a_window(web: Web, counts: int) -> None:
    page = web.get("/job-metrics").text
    assert 'href="/job-metrics" class="current"' in page  # in the menu
    rows = table(page)
    # the last hour: Mail of both queues added up, sorted by executions
    assert [r[:4] for r in rows] == [["Mail", "15", "2", "13.3 %"], ["Resize", "3", "3", "100.0 %"]]
    mail = rows[0]
    assert mail[4:6] == ["1.50 s", "100.0 ms"]  # total 1.5 s over 15 timed executions
    # p50, p95, p99 as bucket bounds: 8, 13, 14 and 15 of the 15 by the buckets
    assert mail[6:] == ["< 20 ms", "≥ 335 s", "≥ 335 s"]
    # 8 hours holds the minute 2 h ago too
    rows = table(web.get("/job-metrics?period=8h").text)
    assert rows[0][:3] == ["Mail", "115", "2"]
    for period in ("24h", "72h"):
        assert table(web.get(f"/job-metrics?period={period}").text)[0][:2] == ["Mail", "115"]


def test_metrics_table_sorts_by_any_column_and_filters_by_queue(web: Web, counts: int) -> None:
    by_failures = table(web.get("/job-metrics?sort=failures").text)
    assert [r[0] for r in by_failures] == ["Resize", "Mail"]
    ascending = web.get("/job-metrics?sort=failures&dir=asc").text
    assert [r[0] for r in table(ascending)] == ["Mail", "Resize"]
    # the current column's link turns the order round; the others start largest first
    assert 'href="/job-metrics?period=1h&amp;queue=&amp;sort=failures&amp;dir=desc"' in ascending
    assert 'href="/job-metrics?period=1h&amp;queue=&amp;sort=executions&amp;dir=desc"' in ascending
    assert 'aria-sort="ascending"' in ascending
    assert [r[0] for r in table(web.get("/job-metrics?sort=jobtype").text)] == ["Mail", "Resize"]
    mailers = web.get("/job-metrics?queue=mailers").text
    assert [r[:3] for r in table(mailers)] == [["Mail", "5", "0"]]
    assert re.search(r'<option value="mailers" selected>mailers</option>', mailers)
    assert '<option value="default">default</option>' in mailers
    assert table(web.get("/job-metrics?queue=nosuch").text)[0][0] == "No job finished in this period."


def test_metrics_pages_refuse_bad_parameters(web: Web) -> None:
    assert web.get("/job-metrics?period=2h").status_code == 400
    assert web.get("/job-metrics?sort=nope").status_code == 400
    assert web.get("/job-metrics?dir=up").status_code == 400
    assert web.get("/job-metrics/jobtype").status_code == 400
    assert web.get("/job-metrics/jobtype?name=X&period=1d").status_code == 400


def test_other_job_types_row_is_not_a_link(web: Web, store: SyncStore) -> None:
    add(store, int(time.time() // 60), {"default|": "4 1 0"})
    page = web.get("/job-metrics").text
    assert table(page) == [["other job types", "4", "1", "25.0 %", "–", "–", "–", "–", "–"]]
    assert "/job-metrics/jobtype?name=&" not in page


def test_job_type_page_executions_and_heatmap_over_time(web: Web, counts: int) -> None:
    page = web.get("/job-metrics/jobtype?name=Mail&period=8h").text
    facts = dict(re.findall(r"<dt>([^<]+)</dt><dd>([^<]+)</dd>", page))
    assert facts["Executions"] == "115" and facts["Failures"].startswith("2 (1.7 %)")
    # 48 slots of 10 minutes: the legend sums them, the line has a point each
    chart = re.search(r'<figure class="chart" id="executions">.*?</figure>', page, re.S).group(0)
    assert "Executions: <b>115</b>" in chart and "Failures: <b>2</b>" in chart
    line = re.search(r'<polyline class="line processed" points="([^"]+)"', chart).group(1)
    assert len(line.split()) == 48
    heat = re.search(r'<figure class="chart heatmap" id="heatmap">.*?</figure>', page, re.S).group(0)
    # rows from the lowest bucket used (under 20 ms) to the highest (the open one): 26
    labels = re.findall(r"<span>([^<]*)</span>", heat.split("</div>")[0])
    assert labels[0] == "≥ 335 s" and labels[-1] == "&lt; 20 ms" and len(labels) == 26
    cells = re.findall(r"<title>([^<]+)</title>", heat)
    counted = {c.rsplit(": ", 1)[0].split(" · ")[1]: int(c.rsplit(": ", 1)[1]) for c in cells
               if c.startswith(html.escape(heat_slot_label(counts)))}
    assert counted == {"&lt; 20 ms": 8, "&lt; 30 ms": 5, "&lt; 100 ms": 1, "≥ 335 s": 1}
    assert sum(int(c.rsplit(": ", 1)[1]) for c in cells) == 115
    # one queue: its own counts, and the table's link keeps the window
    mailers = web.get("/job-metrics/jobtype?name=Mail&period=8h&queue=mailers").text
    assert dict(re.findall(r"<dt>([^<]+)</dt><dd>([^<]+)</dd>", mailers))["Executions"] == "5"
    assert re.search(r'<option value="default">default</option>', mailers)
    listing = web.get("/job-metrics?period=8h").text
    assert 'href="/job-metrics/jobtype?name=Mail&amp;period=8h&amp;queue="' in listing


def heat_slot_label(minute: int) -> str:
    """The 8 h view's label of the 10-minute slot that holds ``minute``."""
    return time.strftime("%H:%M", time.gmtime((minute - minute % 10) * 60))


def test_job_type_page_of_a_type_without_metrics(web: Web) -> None:
    page = web.get("/job-metrics/jobtype?name=" + "Never%3A%3ARan").text
    assert "<h1 class=\"jobtype\">Never::Ran</h1>" in page
    assert 'id="heatmap"' not in page and "No job finished in this period." in page


def test_metrics_off_says_so(store: SyncStore, redis_url: str) -> None:
    off = Web(redis_url, metrics_job_types=0).get("/job-metrics").text
    assert "Job metrics are off (--metrics-job-types 0)." in off


@pytest.mark.parametrize("period", PERIODS, ids=[p.name for p in PERIODS])
def test_a_window_reads_each_minute_once(period: job_metrics.Period) -> None:
    now = 1_765_000_000.0 + 37 * 60 + 5  # not on a whole hour
    minute = int(now // 60)
    covered: list[int] = []
    for key in period.total_keys(now):
        n = int(key.rsplit(":", 1)[1])
        covered += [n] if key.startswith(keys.METRICS_MINUTE_PREFIX) else range(n * 60, n * 60 + 60)
    covered = [m for m in covered if m <= minute]
    slots = period.slots(now)
    # the slots' minutes, each once: the window of ``hours`` but the current slot's unfinished part
    assert covered == list(range(slots[0][0] // 60, minute + 1))
    assert period.hours * 60 - period.slot_minutes < len(covered) <= period.hours * 60
    assert len(period.total_keys(now)) <= 60 + period.hours
    assert len(slots) * period.slot_minutes == period.hours * 60
    assert slots[-1][0] <= now < slots[-1][0] + period.slot_minutes * 60
