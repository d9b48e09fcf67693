"""A Faktory job: what PUSH sends and FETCH returns."""
from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any


def random_jid() -> str:
    """A fresh job id: 12 random bytes, URL-safe base64 (16 characters), as the Go client."""
    return secrets.token_urlsafe(12)


def timestamp(when: datetime | str) -> str:
    """RFC 3339 in UTC (what the server parses); a string is passed through as given."""
    if isinstance(when, str):
        return when
    if when.tzinfo is None:
        raise ValueError("a naive datetime is ambiguous: give it a time zone (datetime.now(UTC))")
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


# The keys a job keeps on the wire, in the server's order; anything else goes in ``custom``.
_FIELDS = ("jid", "jobtype", "args", "queue", "priority", "at", "retry", "reserve_for", "custom",
           "backtrace", "created_at", "enqueued_at", "failure")


@dataclass
class Job:
    """A job. Only ``jobtype`` is required; ``jid`` is generated.

    ``retry``: how many retries (server default 25; 0 discards on failure, -1 sends straight to
    the dead set). ``reserve_for``: seconds the worker may take before the server takes the job
    back (at least 60, server default 1800). ``at``: run at that time (a datetime with a zone, or
    RFC 3339 text). ``priority`` is sent only when set (Faktory 1.x ignores it). ``custom``:
    anything; Enterprise features read keys of it (see :meth:`unique_for`,
    :meth:`expires_in`, :meth:`track`). ``created_at``, ``enqueued_at`` and ``failure`` are set
    by the server and read from fetched jobs.
    """

    jobtype: str
    args: list[Any] = field(default_factory=list)
    queue: str = "default"
    jid: str = field(default_factory=random_jid)
    at: datetime | str | None = None
    retry: int | None = None
    reserve_for: int | None = None
    priority: int | None = None
    custom: dict[str, Any] | None = None
    backtrace: int | None = None
    created_at: str | None = None
    enqueued_at: str | None = None
    failure: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object sent to the server (unset fields left out)."""
        out: dict[str, Any] = {"jid": self.jid, "jobtype": self.jobtype, "args": list(self.args),
                               "queue": self.queue}
        if self.at is not None:
            out["at"] = timestamp(self.at)
        for name in ("retry", "reserve_for", "priority", "custom", "backtrace", "created_at",
                     "enqueued_at", "failure"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        """A job from its JSON object (a FETCH reply); unknown keys are ignored."""
        return cls(**{k: data[k] for k in _FIELDS if k in data})

    def set_custom(self, key: str, value: Any) -> Job:
        """Set ``custom[key]``; returns the job, so calls chain."""
        if self.custom is None:
            self.custom = {}
        self.custom[key] = value
        return self

    def get_custom(self, key: str, default: Any = None) -> Any:
        """``custom[key]``, or ``default``."""
        return (self.custom or {}).get(key, default)

    # -- Enterprise job options (custom keys the server's middleware reads) --

    def unique_for(self, seconds: float, until: str | None = None) -> Job:
        """Unique job: the server refuses (``NOTUNIQUE``) a push of the same jobtype, args and
        queue for ``seconds``; ``until`` is ``"success"`` (default) or ``"start"``."""
        self.set_custom("unique_for", seconds)
        if until is not None:
            if until not in ("success", "start"):
                raise ValueError("unique until must be 'success' or 'start'")
            self.set_custom("unique_until", until)
        return self

    def expires_at(self, when: datetime | str) -> Job:
        """Expiring job: discarded instead of fetched after ``when``."""
        return self.set_custom("expires_at", timestamp(when))

    def expires_in(self, seconds: float | timedelta) -> Job:
        """Expiring job: discarded instead of fetched ``seconds`` after the push (``expires_at``
        computed now, which every server version understands)."""
        delta = seconds if isinstance(seconds, timedelta) else timedelta(seconds=seconds)
        return self.expires_at(datetime.now(UTC) + delta)

    def track(self) -> Job:
        """Enable Enterprise job tracking for this job (``custom.track = 1``)."""
        return self.set_custom("track", 1)

    @property
    def bid(self) -> str | None:
        """The batch this job belongs to (``custom.bid``), if any."""
        return self.get_custom("bid")

    @property
    def callback_bid(self) -> str | None:
        """For a batch's success/complete callback job: its batch (``custom._bid``)."""
        return self.get_custom("_bid")
