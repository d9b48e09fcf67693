"""End to end: a real server (protocol + web UI under gunicorn) driven by headless Chromium.

Jobs go in through the Faktory protocol; the browser logs in with the password (production
mode), watches the dashboard, retries a failed job, pauses a queue, and is refused a
cross-origin POST. Every page is visited at phone width (390 px) and desktop width (1280 px),
screenshotted, and must not scroll sideways. Screenshots go to the test's tmp_path; with
FF_SCREENSHOTS=docs the README's (docs/*.png) are replaced, with FF_SCREENSHOTS=<directory>
every one of them is kept there; a plain test run leaves the tree clean.
"""
from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from faktory_fast.job_metrics import FLUSH_ENV
from tests.ent_client import Ent
from tests.support import ROOT, Client, FaktoryServer, job, wait_for, write_conf

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PASSWORD = "web-e2e-secret"
DOCS = os.path.join(ROOT, "docs")
TWO_POINTS = re.compile(r"\S+ \S+")  # an SVG polyline's points: at least two


ENTERPRISE_CONF = """
[throttles]
images = { concurrency = 2, timeout = 60 }
reporting = { worker = 1 }

[[cron]]
  schedule = "*/5 * * * *"
  [cron.job]
    type = "Reporting::MonthlyAggregates::RebuildEverything"
    queue = "reporting"
    args = [2026, "a long argument that a phone has to wrap or fold somehow"]
"""

SHOWS = {"batches": "Nightly import", "batch": "part 1", "cron": "*/5 * * * *",
         "throttles": "images"}

# desktop: test_dashboard_live_graph and test_retry_from_the_retries_page; phone: the page tour
README_SHOTS = ("dashboard.png", "retries.png", "dashboard-phone.png", "retries-phone.png")


def screenshot(page: Any, tmp_path: Any, name: str) -> None:
    """Full-page screenshot into the test's tmp_path, docs/ (FF_SCREENSHOTS=docs, the README's
    only) or the directory FF_SCREENSHOTS names."""
    where = os.environ.get("FF_SCREENSHOTS", "")
    folder = str(tmp_path)
    if where == "docs":
        folder = DOCS if name in README_SHOTS else folder
    elif where:
        folder = where
        os.makedirs(folder, exist_ok=True)
    page.screenshot(path=os.path.join(folder, name), full_page=True)
    assert os.path.getsize(os.path.join(folder, name)) > 0

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs /usr/bin/chromium")


def web_ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/health", timeout=1) as reply:
            return reply.status == 200
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaktoryServer]:
    data = str(tmp_path_factory.mktemp("webe2e"))
    write_conf(data, "enterprise.toml", ENTERPRISE_CONF)  # the Cron and Throttles tabs' rows
    srv = FaktoryServer(data, processes=1, password=PASSWORD, web=True,
                        env={"FAKTORY_ENV": "production", FLUSH_ENV: "0.2"}).start()
    try:
        wait_for(lambda: web_ready(f"http://127.0.0.1:{srv.web_port}"), timeout=30, interval=0.1)
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def base(server: FaktoryServer) -> str:
    return f"http://127.0.0.1:{server.web_port}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A logged-in tab (HTTP Basic credentials; the username is ignored)."""
    ctx = browser.new_context(http_credentials={"username": "ops", "password": PASSWORD},
                              viewport={"width": 1280, "height": 860})
    tab = ctx.new_page()
    yield tab
    ctx.close()


def failed_job(client: Client, **fields: Any) -> dict:
    """Push a job, fetch it and FAIL it: it lands in the retry set."""
    j = job(**fields)
    client.push(j)
    fetched = client.fetch(j.get("queue", "default"))
    assert fetched and fetched["jid"] == j["jid"]
    client.fail(j["jid"], "ImageError", "cannot decode <png>",
                ["resize.py:10 in decode", "worker.py:99 in run"])
    return j


def test_login_required_in_production(browser: Any, base: str) -> None:
    # Chromium turns an unanswered Basic challenge into a navigation error, so the 401s are
    # read through the context's HTTP client (same cookies and credentials as its pages).
    anonymous = browser.new_context()
    with pytest.raises(playwright.Error, match="ERR_INVALID_AUTH_CREDENTIALS"):
        anonymous.new_page().goto(base + "/")
    reply = anonymous.request.get(base + "/")
    assert reply.status == 401 and reply.headers["www-authenticate"] == 'Basic realm="Faktory"'
    assert anonymous.new_page().goto(base + "/health").status == 200
    anonymous.close()
    wrong = browser.new_context(http_credentials={"username": "ops", "password": "nope"})
    assert wrong.request.get(base + "/").status == 401
    wrong.close()
    right = browser.new_context(http_credentials={"username": "anyone", "password": PASSWORD})
    tab = right.new_page()
    assert tab.goto(base + "/").status == 200 and tab.title() == "Dashboard · Faktory"
    right.close()


def test_dashboard_live_graph(page: Any, base: str, client: Client, tmp_path: Any) -> None:
    for i in range(6):
        client.push(job("SendEmail", [i, "user@example.com"]))
    for _ in range(4):
        client.ack(client.fetch("default")["jid"])
    failed_job(client, jobtype="ResizeImage", queue="images")
    page.add_init_script("window.localStorage.setItem('timeInterval', '2')")
    reply = page.goto(base + "/")
    assert reply.status == 200
    assert page.locator('[data-stat="processed"]').inner_text() == "5"
    assert page.locator('[data-stat="failed"]').inner_text() == "1"
    assert page.locator('[data-stat="enqueued"]').inner_text() == "2"
    assert page.locator("#interval").input_value() == "2"
    client.ack(client.fetch("default")["jid"])
    # the live graph gets a point per poll of /stats (every 2 s here); polled by Playwright,
    # not with wait_for_function: the page's CSP forbids the eval that uses
    playwright.expect(page.locator("#live-processed")).to_have_attribute(
        "points", TWO_POINTS, timeout=10_000)
    assert page.locator('[data-stat="processed"]').inner_text() == "6"
    # its axes: counts per poll up the side (0, half, a round top), poll times along the bottom
    y = page.locator("#live-y span").all_inner_texts()
    assert y[2] == "0" and int(y[0]) >= 2 and float(y[1]) == int(y[0]) / 2
    x = page.locator("#live-x span").all_inner_texts()
    assert all(re.fullmatch(r"\d\d:\d\d:\d\d", t) for t in x) and x[0] != x[1]
    assert "Version" in page.inner_text(".facts")
    screenshot(page, tmp_path, "dashboard.png")


def test_retry_from_the_retries_page(page: Any, base: str, client: Client, tmp_path: Any) -> None:
    j = failed_job(client, jobtype="ResizeImage", args=["<script>alert(1)</script>", 640])
    other = failed_job(client, jobtype="SyncAccount", args=[42])
    page.goto(base + "/retries")
    assert page.locator('[data-stat="retries"]').inner_text() == "2"
    assert "<script>alert(1)</script>" in page.inner_text("table")  # shown as text
    assert "ImageError: cannot decode <png>" in page.inner_text("table")
    screenshot(page, tmp_path, "retries.png")
    row = page.locator("tr", has_text="ResizeImage")
    row.locator('input[name="key"]').check()
    with page.expect_navigation():
        page.get_by_role("button", name="Retry now", exact=True).click()
    assert page.url == base + "/retries"
    assert "ResizeImage" not in page.inner_text("table")
    assert "SyncAccount" in page.inner_text("table")
    again = client.fetch("default")
    assert again["jid"] == j["jid"] and again["failure"]["retry_count"] == 0
    page.goto(base + "/retries/" + page.locator('input[name="key"]').first.get_attribute("value"))
    assert other["jid"] in page.inner_text("main")
    assert "worker.py:99 in run" in page.inner_text("pre.backtrace")


def test_pause_a_queue(page: Any, base: str, client: Client, server: FaktoryServer) -> None:
    client.push(job(queue="mailers"))
    page.goto(base + "/queues")
    row = page.locator("tr", has_text="mailers")
    with page.expect_navigation():
        row.get_by_role("button", name="Pause").click()
    assert "paused" in page.locator("tr", has_text="mailers").inner_text()
    assert server.redis().smembers("paused") == {b"mailers"}
    with page.expect_navigation():
        page.locator("tr", has_text="mailers").get_by_role("button", name="Resume").click()
    assert server.redis().smembers("paused") == set()


def test_cross_origin_post_is_refused(page: Any, base: str, client: Client,
                                      server: FaktoryServer) -> None:
    failed_job(client)
    # A page on another site that auto-submits a form to the web UI (the browser still has
    # the Basic credentials, as a logged-in operator's would).
    evil = (f'<form id="f" method="post" action="{base}/retries">'
            '<input name="action" value="delete"><input name="key" value="all"></form>'
            '<script>document.getElementById("f").submit()</script>')
    page.route("http://evil.example/", lambda route: route.fulfill(
        status=200, content_type="text/html", body=evil))
    with page.expect_response(lambda r: r.url == base + "/retries") as caught:
        page.goto("http://evil.example/")
    assert caught.value.status == 403
    page.wait_for_load_state()
    assert "Cross-origin request refused" in page.content()
    assert server.redis().zcard("retries") == 1


# Records every Content-Security-Policy violation of a page, from before its first script.
RECORD_VIOLATIONS = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__csp.push(e.violatedDirective + " " + e.blockedURI);
});
"""


def test_pages_work_under_the_content_security_policy(page: Any, base: str, client: Client,
                                                      server: FaktoryServer) -> None:
    failed_job(client, jobtype="CspJob", queue="cspq")
    client.push(job(queue="cspq"))
    client.push(job(at="2099-01-01T00:00:00Z"))
    page.add_init_script(RECORD_VIOLATIONS)
    page.add_init_script("window.localStorage.setItem('timeInterval', '2')")
    for path in ("/", "/busy", "/queues", "/queues/cspq", "/retries", "/scheduled", "/morgue",
                 "/debug", "/batches", "/cron", "/throttles", "/job-metrics",
                 "/job-metrics/jobtype?name=CspJob"):
        reply = page.goto(base + path)
        assert reply.status == 200, path
        assert "script-src 'self'" in reply.headers["content-security-policy"], path
        assert page.evaluate("window.__csp") == [], path
    # What app.js wires up still works under the policy: the live graph polls /stats ...
    page.goto(base + "/")
    playwright.expect(page.locator("#live-processed")).to_have_attribute(
        "points", TWO_POINTS, timeout=10_000)
    # ... select-all and the confirm dialogs (dismissed: nothing is deleted) ...
    page.goto(base + "/retries")
    page.locator("input.check_all").check()
    assert page.locator('tbody input[name="key"]').is_checked()
    asked: list[str] = []
    page.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
    page.get_by_role("button", name="Delete (all 1)").click()
    assert asked == ["Delete: all 1 jobs?"] and server.redis().zcard("retries") == 1
    # ... and the language selector on /debug.
    page.goto(base + "/debug")
    with page.expect_navigation():
        page.locator("#locale-select").select_option("de")
    assert page.evaluate("document.cookie").find("faktory_locale=de") >= 0
    assert page.evaluate("window.__csp") == []
    # The browser enforces the policy we send: a script slipped into a page does not run.

    def inject(route: Any) -> None:
        original = route.fetch()
        route.fulfill(response=original, body=original.text().replace(
            "</main>", "<script>window.__inline = 1</script><p onclick='x()'>x</p></main>"))

    page.route(base + "/busy", inject)
    page.goto(base + "/busy")
    assert page.evaluate("window.__inline") is None
    assert any(v.startswith("script-src") for v in page.evaluate("window.__csp"))


# -- every page at phone and desktop width ------------------------------------------------------

LONG_TEXT = "lorem ipsum dolor sit amet " * 120  # ~3 KB: cut to a few lines in lists
NO_SPACES = "x" * 700  # one unbreakable word
# (width, height, language): German has the longest words, Arabic runs right to left, and 360 px
# is the narrowest phone the pages are made for
WIDTHS = {"phone": (390, 844, "en"), "desktop": (1280, 860, "en"), "phone-de": (360, 740, "de"),
          "phone-ar": (390, 844, "ar")}


def tour_data(server: FaktoryServer, client: Client) -> dict[str, str]:
    """Something of everything, long texts included; returns the detail-page keys by set."""
    for i in range(3):
        client.push(job("SendEmail", [i, "user@example.com", {"template": "welcome"}]))
    client.push(job("ImportCsv", [LONG_TEXT, NO_SPACES, {"rows": list(range(200))}]))
    client.push(job("Reporting::MonthlyAggregates::RebuildEverything", [2026, 1],
                    queue="reporting.monthly-aggregates", priority=8))
    client.push(job("Deliver", [1], queue="mailers"))
    client.call('QUEUE PAUSE mailers')
    for i in range(3):
        client.push(job("Later", [i, LONG_TEXT[:300]], at="2099-01-01T00:00:00Z"))
    for i in range(4):
        j = job("ResizeImage", [f"s3://bucket/{i}.png", 640, LONG_TEXT if i == 0 else "ok"],
                queue="images")
        client.push(j)
        assert client.fetch("images")["jid"] == j["jid"]
        client.fail(j["jid"], "ImageError", ("cannot decode: " + LONG_TEXT) if i == 0 else "bad png",
                    [f"resize.py:{n} in decode" for n in range(40)])
    r = server.redis()
    retried = r.zrange("retries", 0, -1, withscores=True)
    member, score = retried[-1]
    r.zrem("retries", member)
    r.zadd("dead", {member: score + 86400})
    worker = server.client(wid="tourworker1", labels=["tour", "python"], hostname="tour-box")
    worker.push(job("Crunch", [NO_SPACES[:120], LONG_TEXT[:500]], queue="busyq"))
    assert worker.fetch("busyq") is not None  # in progress, shown on /busy
    ent = Ent(client)
    parent = ent.batch_new(success=job("BatchDone", [1]), description="Nightly import " + LONG_TEXT[:80])
    child = ent.batch_new(complete=job("ChildDone", []), parent_bid=parent, description="part 1")
    ent.push(child, queue="imports")
    ent.push(parent, queue="imports", args=[NO_SPACES[:120]])
    ent.commit(child)
    keys = {"batch": parent}
    for zset in ("retries", "scheduled", "dead"):
        m, sc = r.zrange(zset, 0, 0, withscores=True)[0]
        keys[zset] = f"{sc!r}|{json.loads(m)['jid']}"
    return keys


def no_horizontal_overflow(page: Any) -> tuple[int, int]:
    return page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")


@pytest.mark.parametrize("size", WIDTHS)
def test_every_page_fits_phones_and_desktops(browser: Any, base: str, server: FaktoryServer,
                                             client: Client, tmp_path: Any, size: str) -> None:
    width, height, language = WIDTHS[size]
    keys = tour_data(server, client)
    ctx = browser.new_context(http_credentials={"username": "ops", "password": PASSWORD},
                              viewport={"width": width, "height": height})
    ctx.add_cookies([{"name": "faktory_locale", "value": language, "url": base}])
    page = ctx.new_page()
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.add_init_script("window.localStorage.setItem('timeInterval', '2')")
    pages = [("dashboard", "/"), ("busy", "/busy"), ("queues", "/queues"),
             ("queue", "/queues/default"), ("retries", "/retries"),
             ("retry", "/retries/" + quote(keys["retries"])), ("scheduled", "/scheduled"),
             ("scheduled-job", "/scheduled/" + quote(keys["scheduled"])), ("morgue", "/morgue"),
             ("dead-job", "/morgue/" + quote(keys["dead"])), ("debug", "/debug"),
             ("batches", "/batches"), ("batch", "/batches/" + keys["batch"]), ("cron", "/cron"),
             ("throttles", "/throttles"), ("metrics", "/job-metrics?period=8h"),
             ("job-type-metrics", "/job-metrics/jobtype?period=8h&name=ResizeImage"),
             ("not-found", "/no/such/page")]
    for name, path in pages:
        reply = page.goto(base + path)
        assert reply.status == (404 if name == "not-found" else 200), path
        assert page.locator("header.top nav").count() == 1, path  # the menu, even on the 404
        if name == "dashboard":  # a live chart with a line in it
            playwright.expect(page.locator("#live-processed")).to_have_attribute(
                "points", TWO_POINTS, timeout=10_000)
        if name == "metrics":  # the tour's FAILs, once the server has added them (0.2 s)
            wait_for(lambda: page.reload() and "ResizeImage" in page.locator("main").inner_text(),
                     timeout=10, interval=0.2)
        if name in SHOWS:  # the Enterprise pages list what the tour set up
            assert SHOWS[name] in page.locator("main").inner_text(), (path, SHOWS[name])
        scroll, inner = no_horizontal_overflow(page)
        assert scroll <= inner, (path, scroll, inner)
        screenshot(page, tmp_path, f"{name}-{size}.png")
    assert failed == ["404 " + base + "/no/such/page"]  # no missing favicon, script or style
    ctx.close()


@pytest.mark.parametrize("size", ("phone", "desktop"))
def test_metrics_pages(browser: Any, base: str, client: Client, tmp_path: Any, size: str) -> None:
    """Jobs ACKed and FAILed show on the Metrics page (sortable, by queue) and on their job
    type's page (executions over time, the execution-time heatmap)."""
    width, height, _ = WIDTHS[size]
    jobtype = f"Thumbnail-{size}"  # the server's metrics outlive a test's FLUSH
    for i in range(6):
        j = job(jobtype, [i], queue="media")
        client.push(j)
        assert client.fetch("media")["jid"] == j["jid"]
        if i < 4:
            client.ack(j["jid"])
        else:
            client.fail(j["jid"], "Boom", "no thumbnail", [])
    j = job("Mail", [1], queue="mailers")
    client.push(j)
    assert client.fetch("mailers")["jid"] == j["jid"]
    client.ack(j["jid"])
    ctx = browser.new_context(http_credentials={"username": "ops", "password": PASSWORD},
                              viewport={"width": width, "height": height})
    page = ctx.new_page()
    page.goto(base + "/")
    if size == "phone":
        page.locator(".menu-toggle").click()
    with page.expect_navigation():
        page.locator("#menu a", has_text="Metrics").click()
    assert page.url == base + "/job-metrics"
    rows = page.locator("table.metrics tbody tr")
    wait_for(lambda: page.reload() and rows.filter(has_text=jobtype).count() == 1, timeout=10,
             interval=0.2)  # the server adds its counts every 0.2 s here
    cells = rows.filter(has_text=jobtype).locator("td").all_inner_texts()
    assert cells[:4] == [jobtype, "6", "2", "33.3 %"]
    with page.expect_navigation():
        page.locator("table.metrics th a", has_text="Failure rate").click()
    assert "sort=rate" in page.url and rows.first.locator("td").first.inner_text() == jobtype
    page.locator(".metrics-window select[name=queue]").select_option("mailers")
    with page.expect_navigation():
        page.locator(".metrics-window button").click()
    assert "queue=mailers" in page.url and "sort=rate" in page.url
    assert rows.locator("td:first-child").all_inner_texts() == ["Mail"]
    scroll, inner = no_horizontal_overflow(page)
    assert scroll <= inner
    screenshot(page, tmp_path, f"metrics-{size}.png")
    page.goto(base + "/job-metrics")
    with page.expect_navigation():
        rows.locator("a", has_text=jobtype).click()
    assert page.locator("h1").inner_text() == jobtype
    assert page.locator("#executions .legend").inner_text().startswith("Executions: 6")
    playwright.expect(page.locator("#executions polyline.line.processed")).to_have_attribute(
        "points", TWO_POINTS)
    cells = page.locator("#heatmap rect")
    assert cells.count() >= 1 and cells.first.bounding_box()["height"] > 5
    assert page.locator("#heatmap .yaxis span").first.inner_text().startswith("<")
    for period in ("8h", "24h", "72h"):
        with page.expect_navigation():
            page.locator(".metrics-window nav a", has_text=period).click()
        assert f"period={period}" in page.url and f"name={jobtype}" in page.url
        assert page.locator("#executions .legend").inner_text().startswith("Executions: 6")
    scroll, inner = no_horizontal_overflow(page)
    assert scroll <= inner
    screenshot(page, tmp_path, f"job-type-metrics-{size}.png")
    ctx.close()


def test_menu_folds_on_phones(browser: Any, base: str, tmp_path: Any) -> None:
    ctx = browser.new_context(http_credentials={"username": "ops", "password": PASSWORD},
                              viewport={"width": 390, "height": 844})
    phone = ctx.new_page()
    phone.goto(base + "/")
    toggle, queues = phone.locator(".menu-toggle"), phone.locator("#menu a", has_text="Queues")
    assert toggle.is_visible() and not queues.is_visible()
    assert phone.locator("header.top").bounding_box()["height"] < 60  # one line, not three
    toggle.click()
    assert toggle.get_attribute("aria-expanded") == "true" and queues.is_visible()
    screenshot(phone, tmp_path, "menu-phone.png")
    with phone.expect_navigation():
        queues.click()
    assert phone.url == base + "/queues" and not phone.locator("#menu a").first.is_visible()
    # a wide window shows the menu and no button
    phone.set_viewport_size({"width": 1280, "height": 860})
    assert queues.is_visible() and not toggle.is_visible()
    ctx.close()


def test_find_a_job_from_the_header_on_a_phone(browser: Any, base: str, client: Client,
                                               tmp_path: Any) -> None:
    """The header's box folds with the menu on a phone; a jid typed there opens the job."""
    wanted = job("FindMe", [1], queue="findq")
    client.push(wanted)
    ctx = browser.new_context(http_credentials={"username": "ops", "password": PASSWORD},
                              viewport={"width": 390, "height": 844})
    phone = ctx.new_page()
    phone.goto(base + "/")
    box = phone.locator("header form.find input[name=jid]")
    assert not box.is_visible()
    phone.locator(".menu-toggle").click()
    assert box.is_visible()
    box.fill(wanted["jid"])
    with phone.expect_navigation():
        box.press("Enter")
    assert phone.url == f"{base}/find?jid={wanted['jid']}"
    main = phone.locator("main").inner_text()
    assert "FindMe" in main and "findq" in main and "number 1 to be fetched" in main
    scroll, inner = no_horizontal_overflow(phone)
    assert scroll <= inner
    screenshot(phone, tmp_path, "find-phone.png")
    assert phone.goto(base + "/find?jid=nowhere-at-all").status == 404
    assert "No job nowhere-at-all" in phone.locator("main").inner_text()
    ctx.close()


def test_destructive_buttons_ask_first(page: Any, base: str, client: Client,
                                       server: FaktoryServer) -> None:
    worker = server.client(wid="confirmw1", hostname="confirm-box")
    assert worker.call("BEAT " + json.dumps({"wid": "confirmw1"})) == "OK"
    asked: list[str] = []

    def answer(accept: bool) -> None:
        page.once("dialog", lambda d: (asked.append(d.message), d.accept() if accept else d.dismiss()))

    page.goto(base + "/busy")
    answer(False)
    page.get_by_role("button", name="Quiet all").click()
    answer(False)
    page.get_by_role("button", name="Terminate all").click()
    assert asked == ["Quiet every worker process? They finish their jobs and fetch no new ones.",
                     "Terminate every worker process?"]
    assert page.url == base + "/busy"
    assert worker.call("BEAT " + json.dumps({"wid": "confirmw1"})) == "OK"  # still running
    answer(True)
    with page.expect_navigation():
        page.get_by_role("button", name="Quiet all").click()
    assert json.loads(worker.call("BEAT " + json.dumps({"wid": "confirmw1"}))) == {"state": "quiet"}
    # a single job's page: Delete and Kill ask, Retry does not
    failed_job(client, jobtype="AskMe")
    page.goto(base + "/retries")
    with page.expect_navigation():
        page.locator("a", has_text="in ").first.click()
    detail = page.url
    answer(False)
    page.get_by_role("button", name="Delete").click()
    answer(False)
    page.get_by_role("button", name="Kill").click()
    assert asked[-2:] == ["Are you sure you want to delete this job?",
                          "Move this job to the dead set?"]
    assert page.url == detail and server.redis().zcard("retries") == 1
    answer(True)
    with page.expect_navigation():
        page.get_by_role("button", name="Delete").click()
    assert page.url == base + "/retries" and server.redis().zcard("retries") == 0


def test_long_cells_open_on_a_click(page: Any, base: str, client: Client) -> None:
    failed_job(client, jobtype="Long", args=[LONG_TEXT, NO_SPACES])
    failed_job(client, jobtype="Short", args=[1])
    page.goto(base + "/retries")
    long_cell = page.locator("tr", has_text="Long").locator(".clip").first
    short_cell = page.locator("tr", has_text="Short").locator(".clip").first
    closed = long_cell.bounding_box()["height"]
    assert closed < 80 and "clipped" in long_cell.get_attribute("class")
    assert "clipped" not in short_cell.get_attribute("class")
    row = page.locator("tr", has_text="Long").bounding_box()["height"]
    assert row < 120  # not 11,000 px of arguments
    long_cell.click()
    assert long_cell.get_attribute("aria-expanded") == "true"
    assert long_cell.bounding_box()["height"] > 5 * closed
    long_cell.press("Enter")  # the keyboard closes it again
    assert long_cell.bounding_box()["height"] == closed
    scroll, inner = no_horizontal_overflow(page)
    assert scroll <= inner


# Lets a test hide the tab: headless Chromium's own tabs are never hidden.
HIDEABLE = """
Object.defineProperty(document, "hidden", {configurable: true, get: function () {
  return !!window.__hidden; }});
Object.defineProperty(document, "visibilityState", {configurable: true, get: function () {
  return window.__hidden ? "hidden" : "visible"; }});
window.localStorage.setItem("timeInterval", "2");
"""


@pytest.mark.parametrize("path", ["/queues", "/busy"])
def test_live_poll_refreshes_and_pauses_while_hidden(page: Any, base: str, client: Client,
                                                      path: str) -> None:
    page.add_init_script(HIDEABLE)
    polls: list[str] = []
    page.on("request", lambda r: polls.append(r.url) if r.url == base + path else None)
    page.goto(base + path)
    toggle = page.locator("#live-toggle")
    assert not toggle.is_checked() and toggle.get_attribute("data-state") == "off"
    page.evaluate("window.__marker = 1")  # gone if the page reloads
    toggle.check()
    assert toggle.get_attribute("data-state") == "live"
    if path == "/queues":
        client.push(job(queue="livequeue"))
        shows, stat = "livequeue", "enqueued"
    else:
        client.push(job("LiveJob", queue="livebusy"))
        assert client.fetch("livebusy") is not None  # in progress
        shows, stat = "LiveJob", "busy"
    playwright.expect(page.locator("#live-region")).to_contain_text(shows, timeout=10_000)
    playwright.expect(page.locator(f'[data-stat="{stat}"]')).to_have_text("1")  # the summary too
    assert page.evaluate("window.__marker") == 1 and len(polls) >= 2  # refreshed in place
    # hidden: no more requests; visible again: one at once
    page.evaluate("window.__hidden = true; document.dispatchEvent(new Event('visibilitychange'))")
    assert toggle.get_attribute("data-state") == "paused"
    seen = len(polls)
    page.wait_for_timeout(4500)  # over two polling intervals: nothing must happen
    assert len(polls) == seen
    with page.expect_request(base + path):
        page.evaluate("window.__hidden = false; "
                      "document.dispatchEvent(new Event('visibilitychange'))")
    assert toggle.get_attribute("data-state") == "live"
    # the choice is remembered
    page.reload()
    assert page.locator("#live-toggle").is_checked()
    page.locator("#live-toggle").uncheck()
    assert page.locator("#live-toggle").get_attribute("data-state") == "off"
