"""Enterprise job tracking (``TRACK GET`` / ``TRACK SET``), in the Go client's shape
(``client/tracking.go``). A job is tracked when pushed with ``custom.track = 1``
(:meth:`Job.track`); its worker reports progress with ``client.track_set(jid, percent, desc)``
and may extend its reservation with ``reserve_until``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class JobTrack:
    """TRACK GET: ``state`` is ``unknown``, ``enqueued``, ``working``, ``success`` or ``failed``."""

    jid: str
    state: str = "unknown"
    percent: int | None = None
    desc: str | None = None
    updated_at: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobTrack:
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in known})
