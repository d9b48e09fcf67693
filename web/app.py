"""Falcon application: JSON stats for now (the full UI is issue 3)."""
from __future__ import annotations

import os
import time

import falcon
import orjson

from faktory_fast import FAKTORY_VERSION, jobs
from faktory_fast.lifecycle import info_document
from faktory_fast.store import Store


class Health:
    """``/health``: liveness without authentication."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        state = self.store.info()
        resp.data = orjson.dumps({"now": jobs.rfc3339(), "server": {
            "command_count": state["commands"], "connections": state["connections"],
            "description": "Faktory", "faktory_version": FAKTORY_VERSION}})
        resp.content_type = falcon.MEDIA_JSON
        resp.cache_control = ["no-cache"]


class Stats:
    """``/stats``: the INFO document."""

    def __init__(self, store: Store, started_at: float) -> None:
        self.store = store
        self.started_at = started_at

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.data = orjson.dumps(info_document(self.store.info(), self.started_at))
        resp.content_type = falcon.MEDIA_JSON
        resp.cache_control = ["no-cache"]


def create_app() -> falcon.App:
    """The WSGI app gunicorn serves; settings come from the supervisor's environment."""
    store = Store.for_sync(os.environ["FAKTORY_FAST_REDIS_URL"])
    started_at = float(os.environ.get("FAKTORY_FAST_STARTED_AT", time.time()))
    app = falcon.App()
    app.add_route("/health", Health(store))
    app.add_route("/stats", Stats(store, started_at))
    return app
