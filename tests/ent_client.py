"""A Python client for Faktory Enterprise's BATCH and TRACK commands (no PyPI client speaks
them), over the tests' protocol client (``support.Client``), the way Go's ``client/batch.go``
and ``client/tracking.go`` send them."""
from __future__ import annotations

import json
from typing import Any

from tests.support import Client, job


class Ent:
    """BATCH / TRACK over one connection."""

    def __init__(self, client: Client) -> None:
        self.c = client

    def batch_new(self, success: dict | None = None, complete: dict | None = None,
                  parent_bid: str | None = None, description: str | None = None) -> str:
        """BATCH NEW as Go sends it (``"bid":""``, omitempty fields); the new bid."""
        spec: dict[str, Any] = {}
        if success is not None:
            spec["success"] = success
        if complete is not None:
            spec["complete"] = complete
        spec["bid"] = ""
        if parent_bid:
            spec["parent_bid"] = parent_bid
        if description:
            spec["description"] = description
        return self.c.call("BATCH NEW " + json.dumps(spec))

    def commit(self, bid: str) -> Any:
        return self.c.call("BATCH COMMIT " + bid)

    def open(self, bid: str) -> Any:
        return self.c.call("BATCH OPEN " + bid)

    def status(self, bid: str) -> dict:
        return json.loads(self.c.call("BATCH STATUS " + bid))

    def push(self, bid: str, jobtype: str = "BatchJob", **fields: Any) -> dict:
        """Push a fresh job into batch ``bid``; the job."""
        j = job(jobtype, **fields)
        j.setdefault("custom", {})["bid"] = bid
        assert self.c.push(j) == "OK"
        return j

    def track_set(self, jid: str, percent: int | None = None, desc: str | None = None,
                  reserve_until: str | None = None) -> Any:
        spec: dict[str, Any] = {"jid": jid}
        if percent is not None:
            spec["percent"] = percent
        if desc is not None:
            spec["desc"] = desc
        if reserve_until is not None:
            spec["reserve_until"] = reserve_until
        return self.c.call("TRACK SET " + json.dumps(spec))

    def track_get(self, jid: str) -> dict:
        return json.loads(self.c.call("TRACK GET " + jid))
