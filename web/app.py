"""The Falcon application served by gunicorn on the ``-w`` binding (see master/webui.WebUI.start)."""
from __future__ import annotations

import os
from typing import Any

import falcon
import orjson

from faktory_fast.storage.partitions import connect_sync

from . import resources, security
from .i18n import Catalog, Localisation
from .render import Renderer
from .settings import Settings

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
JSON_PATHS = ("/stats", "/health", "/metrics")
# Scripts, styles and fetches from our own origin only: no inline script, style or event
# handler runs (the pages have none: app.js wires everything up), so injected markup cannot
# run script either. SVG presentation attributes (fill, stroke) are not styles to CSP.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


class StaticCaching:
    """Static files may be cached for an hour, as Faktory's; security headers on every reply."""

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any,
                         req_succeeded: bool) -> None:
        if (req.path.startswith("/static/") or req.path == "/favicon.ico") and req_succeeded:
            resp.cache_control = ["public", "max-age=3600"]
        resp.set_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        resp.set_header("X-Content-Type-Options", "nosniff")
        resp.set_header("X-Frame-Options", "DENY")
        resp.set_header("Referrer-Policy", "same-origin")


def _error_serializer(ui: Renderer):
    def serialize(req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError) -> None:
        if req.path in JSON_PATHS:
            resp.data = orjson.dumps(exc.to_dict())
            resp.content_type = falcon.MEDIA_JSON
            return
        resp.content_type = falcon.MEDIA_HTML
        resp.text = ui.error(req, falcon.code_to_http_status(exc.status), exc.title or "",
                             exc.description or "")
    return serialize


def create_app(settings: Settings | None = None) -> falcon.App:
    """The WSGI app; gunicorn calls it with no argument (settings from the environment)."""
    settings = settings or Settings.from_env()
    parts = connect_sync(settings.redis_url)  # a store per partition (one on a single Redis)
    catalog = Catalog.load()  # the locale files, parsed once
    ui = Renderer(parts, settings, catalog)
    # (each implements some of falcon's middleware methods: no one type to declare them by)
    middleware: list[Any] = [Localisation(catalog), security.ScriptName(),
                             security.BasicAuth(settings.password), security.CsrfProtection(),
                             StaticCaching()]
    app = falcon.App(middleware=middleware)
    app.set_error_serializer(_error_serializer(ui))
    app.add_static_route("/static", STATIC)
    app.add_route("/favicon.ico", resources.Favicon(os.path.join(STATIC, "img", "favicon.ico")))
    app.add_route("/health", resources.Health(ui))
    app.add_route("/stats", resources.Stats(ui))
    app.add_route("/metrics", resources.Metrics(ui))
    app.add_route("/", resources.Dashboard(ui))
    app.add_route("/job-metrics", resources.JobMetrics(ui))
    app.add_route("/job-metrics/jobtype", resources.JobTypeMetrics(ui))
    app.add_route("/busy", resources.Busy(ui))
    app.add_route("/queues", resources.Queues(ui))
    app.add_route("/queues/{name}", resources.Queue(ui))
    for listing in resources.set_resources(ui):
        app.add_route(listing.path, listing)
        app.add_route(listing.path + "/{key}", resources.SortedSetEntry(listing))
    app.add_route("/find", resources.Find(ui))
    app.add_route("/batches", resources.Batches(ui))
    app.add_route("/batches/{bid}", resources.Batch(ui))
    app.add_route("/cron", resources.Cron(ui))
    app.add_route("/throttles", resources.Throttles(ui))
    app.add_route("/debug", resources.Debug(ui))
    return app
