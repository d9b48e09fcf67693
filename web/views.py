"""Pure presentation helpers: jobs as the pages show them, entry keys, paging, time display."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from faktory_fast import jobs
from faktory_fast.job_metrics import BUCKETS_MS

PAGE_SIZE = 25
ARG_LIMIT = 1024  # bytes of one argument shown in lists, as Faktory
ACTIVEJOB_WRAPPER = "ActiveJob::QueueAdapters::FaktoryAdapter::JobWrapper"


@dataclass(slots=True)
class JobView:
    """One job (from a queue, a sorted set or a reservation) ready for a template."""

    raw: bytes
    job: dict[str, Any]
    score: str = ""  # sorted-set score as Redis gave it ('' outside sorted sets)
    priority: int = jobs.DEFAULT_PRIORITY
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def jid(self) -> str:
        return str(self.job.get("jid") or "")

    @property
    def queue(self) -> str:
        return str(self.job.get("queue") or "default")

    @property
    def jobtype(self) -> str:
        """The job type, seeing through Rails' ActiveJob wrapper."""
        jobtype = str(self.job.get("jobtype") or "")
        custom = self.custom
        if jobtype == ACTIVEJOB_WRAPPER and isinstance(custom.get("wrapped"), str):
            return custom["wrapped"]
        return jobtype

    @property
    def args(self) -> list[Any]:
        args = self.job.get("args")
        return args if isinstance(args, list) else []

    @property
    def short_args(self) -> list[str]:
        """Each argument as JSON, cut at 1 KiB."""
        return [truncate(orjson.dumps(a, option=orjson.OPT_NON_STR_KEYS).decode())
                for a in self.args]

    @property
    def custom(self) -> dict[str, Any]:
        custom = self.job.get("custom")
        return custom if isinstance(custom, dict) else {}

    @property
    def failure(self) -> dict[str, Any]:
        failure = self.job.get("failure")
        return failure if isinstance(failure, dict) else {}

    @property
    def failure_message(self) -> str:
        """The error message as lists show it: cut at 1 KiB, as arguments."""
        return truncate(str(self.failure.get("message", "")))

    @property
    def key(self) -> str:
        """Names a sorted-set entry in URLs and forms: ``<score>|<jid>``.

        The score is written as Python's shortest round-tripping repr of the double (Redis may
        answer ``1.7e+9`` style), so Redis parses it back to exactly the stored score.
        """
        return f"{float(self.score)!r}|{self.jid}" if self.score else f"|{self.jid}"

    @property
    def when(self) -> float:
        return float(self.score) if self.score else 0.0

    def pretty(self, value: Any) -> str:
        """Indented JSON for the detail page."""
        return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()


def parse_job(raw: bytes, score: str = "", **extra: Any) -> JobView:
    """A JobView of stored JSON; undecodable entries still show (and can be deleted)."""
    try:
        job = orjson.loads(raw)
    except orjson.JSONDecodeError:
        job = None
    if not isinstance(job, dict):
        job = {"jobtype": "(unreadable)", "args": [raw.decode(errors="replace")[:200]]}
    return JobView(raw, job, score, jobs.priority_of(job), extra)


@dataclass(frozen=True, slots=True)
class BatchView:
    """A batch (its stored fields, ``store.batch_status``) ready for a template."""

    fields: dict[str, str]

    def __getattr__(self, name: str) -> str:
        if name.startswith("_"):
            raise AttributeError(name)
        return self.fields.get(name, "")

    def count(self, name: str) -> int:
        return int(self.fields.get(name) or 0)

    @property
    def succeeded(self) -> int:
        """Units that succeeded (a child batch is one)."""
        return self.count("total") - self.count("pending")

    def callback(self, which: str) -> str | None:
        """The callback's state: None (the batch has none), '' waiting, '1' enqueued, '2'
        succeeded."""
        if not self.fields.get(which + "_jid"):
            return None
        return self.fields.get(which + "_st", "")


def truncate(text: str, limit: int = ARG_LIMIT) -> str:
    raw = text.encode()
    if len(raw) <= limit:
        return text
    return raw[:limit].decode(errors="ignore") + "…"


def parse_key(key: str) -> tuple[str, str]:
    """``<score>|<jid>`` to (score, jid); ValueError when malformed.

    The score is ours (unix seconds) or Faktory's (``2025-01-01T12:00:00.123456789Z``, the
    RFC3339 time its links carry). Faktory's has the score truncated to the nanosecond, which
    parses back to the same double (its spacing near today's time is ~240 ns), so both name the
    same entry.
    """
    score, sep, jid = key.partition("|")
    if not sep or not jid:
        raise ValueError(f"bad key {key!r}")
    try:
        seconds = float(score)
    except ValueError:
        return repr(jobs.parse_rfc3339(score) / 1_000_000_000), jid  # int / int: correctly rounded
    if not math.isfinite(seconds):
        raise ValueError(f"bad key {key!r}")
    return repr(seconds), jid  # as Redis reads it ("1_0" and the like are Python's alone)


@dataclass(frozen=True, slots=True)
class Page:
    """Page ``number`` (1-based) of ``total`` items."""

    number: int
    total: int
    size: int = PAGE_SIZE

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size

    @property
    def count(self) -> int:
        return max(1, math.ceil(self.total / self.size))

    @property
    def prev(self) -> int | None:
        return self.number - 1 if self.number > 1 else None

    @property
    def next(self) -> int | None:
        return self.number + 1 if self.number < self.count else None


def page_number(value: str | None) -> int:
    """``?page=`` as a positive int; ValueError otherwise."""
    if value is None or value == "":
        return 1
    n = int(value)
    if n < 1 or n > 10_000_000:
        raise ValueError("page out of range")
    return n


def to_seconds(value: Any) -> float | None:
    """Unix seconds from a number, or a decimal or RFC3339 string; None if it is none of these."""
    if value in (None, ""):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    text = value.decode() if isinstance(value, bytes) else value
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return jobs.parse_rfc3339(text) / 1e9
    except ValueError:
        return None


def fmt_time(value: Any) -> str:
    """Unix seconds or an RFC3339 string as ``YYYY-MM-DD HH:MM:SS UTC``."""
    seconds = to_seconds(value)
    if seconds is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


def relative(value: Any, now: float | None = None) -> tuple[str, bool] | None:
    """(``5 min``, in the future?) for unix seconds or an RFC3339 string; None if neither."""
    seconds = to_seconds(value)
    if seconds is None:
        return None
    delta = seconds - (time.time() if now is None else now)
    span = abs(delta)
    for unit, secs in (("d", 86400), ("h", 3600), ("min", 60)):
        if span >= secs:
            return f"{int(span // secs)} {unit}", delta > 0
    return f"{int(span)} s", delta > 0


def duration(seconds: float) -> str:
    """Uptime as ``3 d 4 h`` / ``5 h 2 min`` / ``42 s``."""
    s = int(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d} d {h} h"
    if h:
        return f"{h} h {m} min"
    if m:
        return f"{m} min {s} s"
    return f"{s} s"


def elapsed(seconds: float | None) -> str:
    """An execution time: ``12.5 ms`` / ``1.25 s`` / ``3 min 5 s``; ``–`` for none."""
    if seconds is None:
        return "–"
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    return duration(seconds)


def bound(ms: int) -> str:
    """A histogram bound: ``20 ms`` / ``1.1 s``."""
    return f"{ms} ms" if ms < 1000 else f"{ms / 1000:g} s"


def bucket_label(i: int | None) -> str:
    """Execution-time histogram bucket ``i`` (job_metrics.BUCKETS_MS) by its upper bound:
    ``< 20 ms``; the open one above the last bound: ``≥ 335 s``; ``–`` for none."""
    if i is None:
        return "–"
    if i >= len(BUCKETS_MS):
        return "≥ " + bound(BUCKETS_MS[-1])
    return "< " + bound(BUCKETS_MS[i])


def slot_label(start: float, minutes: int) -> str:
    """A time slot of a Metrics chart, UTC: ``14:05`` (minutes), ``12-07 14:00`` (hours)."""
    t = time.gmtime(start)
    return time.strftime("%H:%M" if minutes < 60 else "%m-%d %H:%M", t)
