"""Jinja2 page rendering with what every page shows (summary bar, navigation, footer)."""
from __future__ import annotations

import os
import time
from typing import Any

import falcon
import jinja2
import redis

from faktory_fast import FAKTORY_VERSION
from faktory_fast.storage.ops.queues import Info, sum_info
from faktory_fast.storage.partitions import Partitions
from faktory_fast.storage.store import SyncStore

from . import views
from .i18n import Catalog, locale_of
from .security import CSRF_FIELD
from .settings import Settings

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")


@jinja2.pass_context
def translate(ctx: jinja2.runtime.Context, key: str, **values: Any) -> str:
    """``t(key, name=value)``: the page's language's text for a locale key (see i18n)."""
    return ctx["locale"].t(key, **values)


@jinja2.pass_context
def reltime(ctx: jinja2.runtime.Context, value: Any, now: float | None = None) -> str:
    """``in 5 min`` / ``3 h ago``, in the page's language."""
    relative = views.relative(value, now)
    if relative is None:
        return ""
    text, future = relative
    locale = ctx["locale"]
    return locale.t("TimeFromNow", time=text) if future else locale.t("TimeAgo", time=text)


def environment() -> jinja2.Environment:
    """Autoescaping everywhere: job data is attacker-controlled text."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    env.filters.update(fmt_time=views.fmt_time, reltime=reltime, duration=views.duration,
                       elapsed=views.elapsed, bucket_label=views.bucket_label)
    env.globals["t"] = translate
    return env


class Renderer:
    """Renders a template into a response, adding the shared page context. ``parts`` are the
    deployment's partitions, ``store`` the home one's (processes, batches, cron, metrics)."""

    def __init__(self, parts: Partitions[SyncStore], settings: Settings, catalog: Catalog) -> None:
        self.parts = parts
        self.store = parts.home
        self.settings = settings
        self.catalog = catalog
        self.env = environment()

    def info(self) -> Info:
        """The deployment's ``info()``: every partition's, summed (``sum_info``)."""
        return sum_info([store.info() for store in self.parts.stores])

    def page(self, req: falcon.Request, resp: falcon.Response, template: str,
             info: Info | None = None, **context: Any) -> None:
        """Render ``template``; ``info`` (``self.info()``) is fetched unless given."""
        resp.content_type = falcon.MEDIA_HTML
        resp.cache_control = ["no-cache"]
        resp.text = self.render(req, template, info, **context)

    def render(self, req: falcon.Request, template: str, info: Info | None = None,
               **context: Any) -> str:
        """``template`` with the shared page context (summary bar, navigation, footer)."""
        info = info if info is not None else self.info()
        return self.env.get_template(template).render(
            summary={
                "processed": info["processed"], "failed": info["failures"],
                "busy": info["working"], "enqueued": sum(info["queues"].values()),
                "retries": info["retries"], "scheduled": info["scheduled"], "dead": info["dead"],
            },
            path=req.path, prefix=req.context.prefix, csrf=getattr(req.context, "csrf", ""),
            csrf_field=CSRF_FIELD, version=FAKTORY_VERSION, settings=self.settings,
            utc_time=time.strftime("%H:%M:%S UTC", time.gmtime()), now=time.time(),
            locale=locale_of(req, self.catalog), **context)

    def error(self, req: falcon.Request, status: str, title: str, description: str) -> str:
        """An error page: inside the usual layout (menu, summary) for a signed-in user's 4xx, so
        a mistyped URL leaves a way on; a bare page otherwise (401: nothing to show before the
        password; 5xx: Redis may be what failed; public paths: no data without the password).
        """
        prefix = getattr(req.context, "prefix", "")
        context: dict[str, Any] = {"status": status, "title": title, "description": description}
        if getattr(req.context, "authenticated", False) and status[:1] == "4":
            try:
                return self.render(req, "error.html", base="layout.html", **context)
            except (redis.RedisError, OSError):
                pass  # Redis is down: the bare page still answers
        return self.env.get_template("error.html").render(
            base="bare.html", prefix=prefix, path=req.path, locale=locale_of(req, self.catalog),
            **context)
