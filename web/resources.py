"""Falcon resources: read from the store, render; POSTs act and redirect (302)."""
from __future__ import annotations

import base64
import binascii
import datetime
import os
import re
import subprocess
import time
from typing import Any
from urllib.parse import quote

import falcon
import orjson

from faktory_fast import FAKTORY_VERSION, cron, jobs
from faktory_fast.job_metrics import BUCKETS_MS, PERIODS, Period
from faktory_fast.stats import info_document, latency, rss_bytes
from faktory_fast.storage import keys
from faktory_fast.storage.ops.ent import Throttle
from faktory_fast.storage.partitions import Partitions
from faktory_fast.storage.redis_url import parse_redis_url, redis_location
from faktory_fast.storage.store import Operations, SyncStore

from . import actions, bounded, charts, jobmetrics, metrics, partitioned, views
from .i18n import locale_of
from .render import Renderer
from .settings import Settings

HISTORY_DAYS = (7, 30, 90, 180)
BATCH_JOBS_PAGE = 100  # jobs a batch's page lists at a time
BATCH_JOB_STATES = ("pending", "failed", "dead", "success")  # lua/batch.lua's job states
FILTER_SCAN_CAP = 20_000  # entries one filtered request may scan before offering "more"
SIGNALS = ("quiet", "terminate")
QUEUE_ORDERS = ("newest", "fetch")  # the first is the default
DF_TIMEOUT = 2.0  # seconds /debug waits for df (a hung network mount must not hang the page)
FIND_SECONDS = 2.0  # /find looks this long a request before offering to keep searching
QUEUE_CURSOR = re.compile(r"0|[1-9]\.\d+")  # ff_web_queue_filter's
DIGITS = re.compile(r"\d+")
SET_PATHS = {keys.RETRIES: "/retries", keys.SCHEDULED: "/scheduled", keys.DEAD: "/morgue"}


# -- request helpers --------------------------------------------------------------------------

def form(req: falcon.Request) -> dict[str, list[str]]:
    """The urlencoded body as name -> list of values (400 for other bodies)."""
    if not (req.content_type or "").startswith(falcon.MEDIA_URLENCODED):
        raise falcon.HTTPBadRequest(title="Expected a form")
    media = req.get_media(default_when_empty={})
    return {k: v if isinstance(v, list) else [v] for k, v in media.items()}


def one(fields: dict[str, list[str]], name: str) -> str:
    """The single value of a form field (400 when missing)."""
    values = fields.get(name) or [""]
    if not values[0]:
        raise falcon.HTTPBadRequest(title=f"Missing {name}")
    return values[0]


def redirect(req: falcon.Request, path: str) -> falcon.HTTPFound:
    return falcon.HTTPFound(req.context.prefix + path)


def page_param(req: falcon.Request) -> int:
    try:
        return views.page_number(req.get_param("page"))
    except ValueError:
        raise falcon.HTTPBadRequest(title="Invalid page") from None


def queue_latencies(parts: Partitions[SyncStore]) -> list[tuple[str, int, bool, float]]:
    """(name, size, paused, latency seconds) of every queue of every partition, sorted by
    name."""
    now = time.time_ns()
    return sorted((name, size, paused, latency(heads, now))
                  for store in parts.stores for name, size, paused, heads in store.queue_list())


def set_entry(parts: Partitions[SyncStore], zset: str,
              entry: tuple[str, str]) -> tuple[SyncStore, bytes, str] | None:
    """(its partition's store, member, score) of the entry (score, jid) of ``zset`` in
    whichever partition holds it (its key does not say which), or None."""
    for store in parts.stores:
        found = bounded.set_entries(store, zset, [entry])
        if found:
            return store, *found[0]
    return None


def daily_counts(parts: Partitions[SyncStore], dates: list[str]) -> list[tuple[int, int]]:
    """(processed, failures) of each date, summed over the partitions (each counts its
    queues' jobs)."""
    counts = [store.daily_counts(dates) for store in parts.stores]
    return [(sum(c[i][0] for c in counts), sum(c[i][1] for c in counts))
            for i in range(len(dates))]


def json_response(resp: falcon.Response, document: Any) -> None:
    resp.data = orjson.dumps(document)
    resp.content_type = falcon.MEDIA_JSON
    resp.cache_control = ["no-cache"]


class Resource:
    """Base: the partitions, the home partition's store, the settings and the page renderer."""

    def __init__(self, ui: Renderer) -> None:
        self.ui = ui
        self.parts = ui.parts
        self.store = ui.store
        self.settings: Settings = ui.settings


# -- JSON -------------------------------------------------------------------------------------

class Health(Resource):
    """``/health``: liveness, no authentication."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        state = self.ui.info()
        json_response(resp, {"now": jobs.rfc3339(), "server": {
            "command_count": state["commands"], "connections": state["connections"],
            "description": "Faktory", "faktory_version": FAKTORY_VERSION}})


class Stats(Resource):
    """``/stats``: the INFO document."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        json_response(resp, info_document(self.ui.info(), self.settings.started_at))


class Metrics(Resource):
    """``/metrics``: Prometheus text format."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.text = metrics.render(self.ui.info(), queue_latencies(self.parts),
                                   bounded.batch_stats(self.store), self.store.job_metrics_total(),
                                   self.settings.metrics_job_types)
        resp.content_type = metrics.CONTENT_TYPE
        resp.cache_control = ["no-cache"]


class Favicon:
    """``/favicon.ico``, which browsers ask for whatever the page says (no authentication)."""

    def __init__(self, path: str) -> None:
        with open(path, "rb") as f:
            self.data = f.read()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.data = self.data
        resp.content_type = "image/x-icon"


# -- pages ------------------------------------------------------------------------------------

class Dashboard(Resource):
    """``/``: live and history graphs, server facts."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        days = req.get_param_as_int("days", default=30)
        if days not in HISTORY_DAYS:
            raise falcon.HTTPBadRequest(title="Invalid days", description="Use 7, 30, 90 or 180.")
        today = datetime.date.today()
        dates = [(today - datetime.timedelta(days=n)).isoformat() for n in range(days - 1, -1, -1)]
        counts = daily_counts(self.parts, dates)
        info = self.ui.info()
        self.ui.page(req, resp, "dashboard.html", info=info, days=days, day_choices=HISTORY_DAYS,
                     history=charts.history_chart(dates, counts, locale_of(req, self.ui.catalog).t),
                     stats=info_document(info, self.settings.started_at),
                     redis=self.store.redis_info())


class JobMetrics(Resource):
    """``/job-metrics``: executions, failures and execution times by job type over the last
    hour to 72 hours (``?period=``), of one queue or all (``?queue=``), sorted by any column
    (``?sort=``, ``?dir=asc|desc``)."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        period, queue = metrics_window(req)
        sort = req.get_param("sort") or "executions"
        if sort not in jobmetrics.SORTS:
            raise falcon.HTTPBadRequest(title="Invalid sort")
        order = req.get_param("dir") or ("asc" if sort == "jobtype" else "desc")
        if order not in ("asc", "desc"):
            raise falcon.HTTPBadRequest(title="Invalid dir", description="Use asc or desc.")
        now = time.time()
        rows = jobmetrics.window(self.store, period, now)
        shown = jobmetrics.sort_rows(jobmetrics.by_jobtype(rows.values(), queue), sort,
                                     order == "desc")
        self.ui.page(req, resp, "job_metrics.html", period=period, periods=PERIODS,
                     queue=queue, queues=sorted({q for q, _ in rows} | {queue} - {""}),
                     rows=shown, sort=sort, order=order, columns=tuple(jobmetrics.SORTS),
                     enabled=self.settings.metrics_job_types > 0)


class JobTypeMetrics(Resource):
    """``/job-metrics/jobtype?name=``: one job type's executions over time and its
    execution-time histogram over time (a heatmap), with ``/job-metrics``' window and queue."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        period, queue = metrics_window(req)
        name = req.get_param("name")
        if not name:
            raise falcon.HTTPBadRequest(title="Missing name")
        now = time.time()
        of_type = [row for row in jobmetrics.window(self.store, period, now).values()
                   if row.jobtype == name]
        rows = [row for row in of_type if not queue or row.queue == queue]
        total = jobmetrics.by_jobtype(rows, queue)
        slots = jobmetrics.series(self.store, period, now,
                                  [f"{row.queue}|{row.jobtype}" for row in rows])
        t = locale_of(req, self.ui.catalog).t
        labels = [views.slot_label(start, period.slot_minutes) for start, _ in slots]
        chart = charts.counts_chart(
            "executions", labels, [(row.executions, row.failures) for _, row in slots],
            [t("Executions"), t("Failures")], t("ExecutionsOverTime"))
        histograms = [row.histogram or [0] * (len(BUCKETS_MS) + 1) for _, row in slots]
        used = [i for i in range(len(BUCKETS_MS) + 1) if any(h[i] for h in histograms)]
        low, high = (used[0], used[-1]) if used else (0, 0)
        heat = charts.heatmap(
            "heatmap", labels, [h[low:high + 1] for h in histograms],
            [views.bucket_label(i) for i in range(low, high + 1)], t("ExecutionTimeOverTime"))
        self.ui.page(req, resp, "job_type_metrics.html", period=period, periods=PERIODS,
                     queue=queue, name=name, row=total[0] if total else None,
                     queues=sorted({row.queue for row in of_type} | {queue} - {""}),
                     chart=chart, heatmap=heat,
                     timed=bool(used))


def metrics_window(req: falcon.Request) -> tuple[Period, str]:
    """The Metrics pages' ``?period=`` and ``?queue=`` (400 for an unknown period)."""
    period = jobmetrics.period_named(req.get_param("period"))
    if period is None:
        raise falcon.HTTPBadRequest(title="Invalid period",
                                    description="Use " + ", ".join(p.name for p in PERIODS) + ".")
    return period, (req.get_param("queue") or "").strip()


class Busy(Resource):
    """``/busy``: worker processes and jobs in progress; quiet/terminate."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        running = []
        per_worker: dict[str, int] = {}
        # each partition's (its queues' jobs); the workers are the home partition's
        records = [r for store in self.parts.stores for r in store.reservations(1000)]
        for record in records:
            res = orjson.loads(record)
            wid = res.get("wid") or ""
            per_worker[wid] = per_worker.get(wid, 0) + 1
            running.append(views.parse_job(orjson.dumps(res.get("job")), wid=wid,
                                           reserved_at=res.get("reserved_at"),
                                           expires_at=res.get("expires_at")))
        # The progress (TRACK SET) of the tracked ones, kept in their queue's partition: all
        # read in one round trip a partition.
        tracked = [job for job in running if job.custom.get("track")]
        for store in self.parts.stores:
            mine = [job for job in tracked if self.parts.of(job.queue) is store]
            reads = [Operations.track_get.build(store, job.jid) for job in mine]
            for job, (_, fields) in zip(mine, store.run_all(reads) if reads else []):
                job.extra["tracking"] = fields
        workers = []
        for w in self.store.workers():
            try:
                labels = orjson.loads(w.get("labels") or "[]")
            except orjson.JSONDecodeError:
                labels = []
            workers.append({**w, "labels": labels if isinstance(labels, list) else [],
                            "busy": per_worker.get(w.get("wid", ""), 0),
                            "rss_mb": int(w.get("rss_kb") or 0) / 1024})
        self.ui.page(req, resp, "busy.html", workers=workers, running=running)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        fields = form(req)
        signal, wid = one(fields, "signal"), one(fields, "wid")
        if signal not in SIGNALS:
            raise falcon.HTTPBadRequest(title=f"Invalid signal: {signal}")
        self.store.signal_workers(signal, ["*" if wid == "all" else wid])
        raise redirect(req, "/busy")


class Queues(Resource):
    """``/queues``: every queue with size, latency and paused state."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.ui.page(req, resp, "queues.html", queues=queue_latencies(self.parts))


def encode_bkey(priority: int, job: bytes, position: int) -> str:
    """A queue entry's form key: ``<priority>.<position>.<base64url(job JSON)>``, the position
    its place in fetch order when the page was read (where its delete looks first)."""
    return f"{priority}.{position}.{base64.urlsafe_b64encode(job).rstrip(b'=').decode()}"


def decode_bkey(bkey: str) -> tuple[int, bytes, int]:
    """(priority, job, position) of a form key (``<priority>.<base64url>`` from an older page:
    position 0)."""
    prio, _, data = bkey.partition(".")
    place, dot, rest = data.partition(".")
    try:
        priority = int(prio)
        position = int(place) if dot else 0
        data = rest if dot else data
        job = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    except (ValueError, binascii.Error):
        raise falcon.HTTPBadRequest(title="Invalid job key") from None
    if not 1 <= priority <= 9 or position < 0:
        raise falcon.HTTPBadRequest(title="Invalid job key")
    return priority, job, position


class Queue(Resource):
    """``/queues/<name>``: one queue's jobs (paged); delete jobs, pause, resume, clear.

    ``?order=newest`` (the default, as Faktory's page) lists the last job to be fetched first,
    ``?order=fetch`` the next one first.
    """

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        info = self.ui.info()
        if name not in info["queues"]:
            raise redirect(req, "/queues")
        number = page_param(req)
        order = req.get_param("order") or QUEUE_ORDERS[0]
        if order not in QUEUE_ORDERS:
            raise falcon.HTTPBadRequest(title="Invalid order", description="Use newest or fetch.")
        filters = {k: (req.get_param(k) or "").strip() for k in ("jobtype", "q")}
        cursor = req.get_param("cursor") or "0"
        if not QUEUE_CURSOR.fullmatch(cursor):
            raise falcon.HTTPBadRequest(title="Invalid cursor")
        offset = (number - 1) * views.PAGE_SIZE
        store = self.parts.of(name)
        page, scan = None, None
        if any(filters.values()):
            # newest first, as the default order: a scan from the head of each list
            next_cursor, scanned, found = bounded.queue_filter(
                store, name, cursor, FILTER_SCAN_CAP, views.PAGE_SIZE, "",
                filters["jobtype"], filters["q"])
            placed = [(at, p, raw) for p, at, raw in found]
            scan = {"next": next_cursor, "scanned": scanned, "cursor": cursor}
        elif order == "fetch":
            size, entries = bounded.queue_page(store, name, offset, views.PAGE_SIZE)
            placed = [(offset + i, p, raw) for i, (p, raw) in enumerate(entries)]
        else:
            # the same page counted from the other end (the size is the one just read: a job
            # fetched in between shifts the page by one, as any paging of a live queue)
            size = info["queues"][name]
            start = max(0, size - offset - views.PAGE_SIZE)
            size, entries = bounded.queue_page(store, name, start,
                                               max(0, size - offset - start))
            placed = [(start + i, p, raw) for i, (p, raw) in enumerate(entries)][::-1]
        if scan is None:
            page = views.Page(number, size)
        rows = [(encode_bkey(p, raw, at), views.parse_job(raw)) for at, p, raw in placed]
        paused = any(n == name and p for n, _, p, _ in store.queue_list())
        self.ui.page(req, resp, "queue.html", info=info, name=name, rows=rows, page=page,
                     paused=paused, order=order, orders=QUEUE_ORDERS, filters=filters,
                     scan=scan, types=bounded.queue_types(store, name))

    def on_post(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        fields = form(req)
        if not jobs.QUEUE_NAME.fullmatch(name):
            raise falcon.HTTPBadRequest(title="Invalid queue name")
        if fields.get("bkey"):
            bounded.queue_delete(self.parts.of(name), name,
                                 [decode_bkey(k) for k in fields["bkey"]])
            raise redirect(req, f"/queues/{name}")
        action = one(fields, "action")
        ops = {"delete": "REMOVE", "pause": "PAUSE", "resume": "RESUME"}
        if action not in ops:
            raise falcon.HTTPBadRequest(title=f"Invalid action: {action}")
        self.parts.of(name).queue_op(ops[action], [name])
        raise redirect(req, "/queues")


class SortedSet(Resource):
    """``/retries``, ``/scheduled``, ``/morgue``: paged or filtered list; bulk actions."""

    def __init__(self, ui: Renderer, zset: str, path: str, actions_: tuple[str, ...]) -> None:
        super().__init__(ui)
        self.zset, self.path, self.actions = zset, path, actions_

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        filters = {k: (req.get_param(k) or "").strip() for k in ("jobtype", "queue", "q")}
        number = page_param(req)
        cursor = req.get_param("cursor") or "0"
        try:
            partitioned.parse_cursor(cursor, self.parts.count)
        except ValueError:
            raise falcon.HTTPBadRequest(title="Invalid cursor") from None
        scan = None
        if any(filters.values()):
            # each partition's set in turn, from where the cursor says
            next_cursor, scanned, found = partitioned.scan_partitions(
                [self._filter(store, *filters.values()) for store in self.parts.stores],
                cursor, FILTER_SCAN_CAP, views.PAGE_SIZE)
            entries = sorted(found, key=lambda e: float(e[1]))
            page = None
            scan = {"next": next_cursor, "scanned": scanned, "cursor": cursor}
        else:
            size, entries = partitioned.merged_page(
                [self._reader(store) for store in self.parts.stores],
                (number - 1) * views.PAGE_SIZE, views.PAGE_SIZE)
            page = views.Page(number, size)
        rows = [views.parse_job(m, score) for m, score in entries]
        self.ui.page(req, resp, "set.html", kind=self.zset, base=self.path, actions=self.actions,
                     rows=rows, page=page, filters=filters, scan=scan)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        fields = form(req)
        action = one(fields, "action")
        if action not in self.actions:
            raise falcon.HTTPBadRequest(title=f"Invalid action: {action}")
        given = [k for k in fields.get("key", []) if k]
        if not given:
            raise falcon.HTTPBadRequest(title="No jobs selected")
        target = actions.ALL if actions.ALL in given else [self._entry(k) for k in given]
        actions.act_everywhere(self.parts.stores, self.zset, action, target)
        raise redirect(req, self.path)

    def _reader(self, store: SyncStore) -> partitioned.PageReader:
        """``bounded.set_page`` of this set in ``store``'s partition."""
        return lambda offset, count: bounded.set_page(store, self.zset, offset, count)

    def _filter(self, store: SyncStore, jobtype: str, queue: str,
                text: str) -> partitioned.FilterStep[tuple[bytes, str]]:
        """``bounded.set_filter`` of this set in ``store``'s partition."""
        return lambda cursor, cap, want: bounded.set_filter(store, self.zset, cursor, cap, want,
                                                            jobtype, queue, text)

    @staticmethod
    def _entry(key: str) -> tuple[str, str]:
        try:
            return views.parse_key(key)
        except ValueError:
            raise falcon.HTTPBadRequest(title="Invalid job key") from None


def unique_lock(store: SyncStore, job: views.JobView) -> Any:
    """The unique lock a job with ``custom.unique_for`` names (``store.UniqueLock``), or None."""
    custom = job.job.get("custom")
    if not isinstance(custom, dict) or custom.get("unique_for") is None:
        return None
    return store.unique_lock(str(job.job.get("jobtype")), job.queue, job.job.get("args"))


class SortedSetEntry(Resource):
    """``/retries/<key>`` and friends: one job in full; its actions."""

    def __init__(self, listing: SortedSet) -> None:
        super().__init__(listing.ui)
        self.listing = listing

    def on_get(self, req: falcon.Request, resp: falcon.Response, key: str) -> None:
        found = set_entry(self.parts, self.listing.zset, self.listing._entry(key))
        if found is None:
            raise falcon.HTTPTemporaryRedirect(req.context.prefix + self.listing.path)
        store, member, score = found
        lst = self.listing
        job = views.parse_job(member, score)
        tracking = store.track_get(job.jid)[1] if job.custom.get("track") else None
        self.ui.page(req, resp, "job.html", kind=lst.zset, base=lst.path, actions=lst.actions,
                     job=job, tracking=tracking, unique=unique_lock(store, job))

    def on_post(self, req: falcon.Request, resp: falcon.Response, key: str) -> None:
        fields = form(req)
        action = one(fields, "action")
        if action not in self.listing.actions:
            raise falcon.HTTPBadRequest(title=f"Invalid action: {action}")
        actions.act_everywhere(self.parts.stores, self.listing.zset, action,
                               [self.listing._entry(key)])
        raise redirect(req, self.listing.path)


class Batches(Resource):
    """``/batches``: batches, newest first, paged; ``?q=`` keeps those whose description or
    bid contains it (any case)."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        q = (req.get_param("q") or "").strip()
        number = page_param(req)
        offset = (number - 1) * views.PAGE_SIZE
        # one more than a page: is there a next one? (expired batches leave the index as the
        # list meets them, so there is no exact total)
        _, found = bounded.batch_page(self.store, offset, views.PAGE_SIZE + 1, q,
                                      offset + views.PAGE_SIZE + FILTER_SCAN_CAP)
        rows = [views.BatchView(f) for f in found[:views.PAGE_SIZE]]
        self.ui.page(req, resp, "batches.html", rows=rows, q=q, number=number,
                     more=len(found) > views.PAGE_SIZE)


class Batch(Resource):
    """``/batches/<bid>``: one batch: progress, callbacks, child batches and its jobs' states,
    a page at a time (``?cursor=``, ``?state=`` keeps the jobs in that state)."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, bid: str) -> None:
        cursor = req.get_param("cursor") or "0"
        state = req.get_param("state") or ""
        if not cursor.isdigit():
            raise falcon.HTTPBadRequest(title="Invalid cursor")
        if state not in ("", *BATCH_JOB_STATES):
            raise falcon.HTTPBadRequest(title="Invalid state")
        detail = bounded.batch_detail(self.store, bid, cursor, BATCH_JOBS_PAGE, state,
                                      FILTER_SCAN_CAP)
        if detail is None:
            raise falcon.HTTPNotFound(title="No such batch",
                                      description=f"Batch {bid} does not exist (or expired).")
        # (one round trip each: the first BATCH_JOBS_PAGE only)
        children = [views.BatchView(self.store.batch_status(child) or {"bid": child})
                    for child in sorted(detail.children)[:BATCH_JOBS_PAGE]]
        self.ui.page(req, resp, "batch.html", batch=views.BatchView(detail.fields),
                     jobs=sorted(detail.jobs.items()), next_cursor=detail.cursor,
                     cursor=cursor, state=state, states=BATCH_JOB_STATES, children=children,
                     child_count=len(detail.children), unit_states=detail.children)


class Find(Resource):
    """``/find?jid=``: the job with that jid wherever it is: a sorted set's job opens its page;
    one in a queue, in progress or in a batch shows here. Big sets and queues are searched a
    bounded part a Redis call, for FIND_SECONDS a request: then ``?place=&cursor=`` go on."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        jid = (req.get_param("jid") or "").strip()
        place = req.get_param("place") or ""
        cursor = req.get_param("cursor") or "0"
        # a queue's cursor is ff_web_queue_filter's, a sorted set's or the batches' a number
        if not (QUEUE_CURSOR if place.startswith(bounded.FIND_QUEUE) else DIGITS).fullmatch(cursor):
            raise falcon.HTTPBadRequest(title="Invalid cursor")
        if not jid:
            raise redirect(req, "/")
        search = bounded.find_job(self.parts, jid, place, cursor, FIND_SECONDS)
        found = search.found
        if found is not None and found.place in SET_PATHS:
            key = views.parse_job(found.job, found.detail).key
            raise redirect(req, f"{SET_PATHS[found.place]}/{quote(key, safe='')}")
        job, where = None, {}
        if found is not None and found.place == "working":
            record = orjson.loads(found.job)
            job = views.parse_job(orjson.dumps(record.get("job")))
            where = {"wid": record.get("wid") or "", "reserved_at": record.get("reserved_at")}
        elif found is not None and found.place == "queue":
            job = views.parse_job(found.job)
            position = int(found.detail)
            where = {"position": position + 1, "page": position // views.PAGE_SIZE + 1}
        if found is None and not search.place:
            resp.status = falcon.HTTP_404
        self.ui.page(req, resp, "find.html", jid=jid, search=search, found=found, job=job,
                     where=where)


class Cron(Resource):
    """``/cron``: the [[cron]] entries the master published, their next and last runs;
    "Enqueue now"."""

    def entries(self) -> list[cron.CronEntry]:
        return [cron.CronEntry(e["schedule"], e["job"], e["source"], ident)
                for ident, e in self.store.cron_entries().items()]

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        now = time.time()
        zone = cron.local_zone()
        last: dict[str, tuple[int, str]] = {}
        for store in self.parts.stores:  # each entry's push records it in its queue's partition
            for ident, pushed in store.cron_last().items():
                last[ident] = max(pushed, last.get(ident, pushed))
        rows = [(e, e.next_tick(now, zone), last.get(e.id)) for e in self.entries()]
        rows.sort(key=lambda row: (row[1], row[0].source))
        self.ui.page(req, resp, "cron.html", rows=rows)

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        ident = one(form(req), "entry")
        entry = next((e for e in self.entries() if e.id == ident), None)
        if entry is None:
            raise falcon.HTTPBadRequest(title="No such cron entry",
                                        description="The configuration may have been reloaded.")
        try:
            cron.enqueue_now(self.parts.of(cron_queue(entry)), entry)
        except jobs.JobError as exc:
            raise falcon.HTTPConflict(title="Job not pushed", description=str(exc)) from None
        raise redirect(req, "/cron")


def cron_queue(entry: cron.CronEntry) -> str:
    """The queue a cron entry's job is pushed to (its partition's)."""
    queue = entry.job.get("queue")
    return queue if isinstance(queue, str) and queue else "default"


class Throttles(Resource):
    """``/throttles``: each throttle's limit, the locks in use and the jobs waiting."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.ui.page(req, resp, "throttles.html", throttles=throttle_usage(self.parts))


def throttle_usage(parts: Partitions[SyncStore]) -> list[Throttle]:
    """Every throttle's use, read in its queue's partition (each partition has the whole table
    but the locks and jobs of its own queues only)."""
    if parts.count == 1:
        return parts.home.throttle_usage()
    return sorted(t for store in parts.stores for t in store.throttle_usage()
                  if parts.of(t.queue) is store)


class Debug(Resource):
    """``/debug``: the locale selector and Faktory's debug facts, adapted to this server."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        sections = self.store.redis_info_sections()
        started = time.perf_counter_ns()
        self.store.ping()
        rtt_us = (time.perf_counter_ns() - started) // 1000
        socket_dir = storage_dir(self.settings.redis_url)
        self.ui.page(req, resp, "debug.html", sections=sections, rtt_us=rtt_us,
                     redis_where=redis_location(self.settings.redis_url),
                     processes=self.store.server_processes() or None, cpus=os.cpu_count(),
                     rss_mb=rss_bytes() / 2**20, storage=socket_dir,
                     df=disk_usage(socket_dir) if socket_dir else None,
                     locales=self.ui.catalog.choices())


def storage_dir(url: str) -> str | None:
    """The directory of the Redis unix socket (the data directory), None over TCP."""
    target = parse_redis_url(url)
    return os.path.dirname(os.path.abspath(target["path"])) if "path" in target else None


def disk_usage(directory: str) -> str:
    """``df -h`` of ``directory`` (its output or why there is none)."""
    try:
        done = subprocess.run(["df", "-h", "--", directory], capture_output=True, text=True,
                              timeout=DF_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        return f"df -h: no answer within {DF_TIMEOUT:g} s"
    except OSError as exc:
        return f"df -h: {exc}"
    return (done.stdout + done.stderr).rstrip()


def set_resources(ui: Renderer) -> list[SortedSet]:
    """The three sorted-set pages and the actions each offers."""
    return [
        SortedSet(ui, keys.RETRIES, SET_PATHS[keys.RETRIES], ("retry", "delete", "kill")),
        SortedSet(ui, keys.SCHEDULED, SET_PATHS[keys.SCHEDULED], ("add_to_queue", "delete", "kill")),
        SortedSet(ui, keys.DEAD, SET_PATHS[keys.DEAD], ("retry", "delete")),
    ]
