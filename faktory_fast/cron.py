"""Enterprise cron: ``[[cron]]`` entries of conf.d/*.toml push their job on schedule.

The master runs ``CronRunner`` (``tasks.BackgroundTasks``): every second it pushes each
entry's job for each tick that passed since its last round. Every node on one Redis does the
same; ``ff_cron_push`` claims each (entry, tick) atomically with the push, so a tick is pushed
once, by whichever node comes first. A cluster-wide watermark (``keys.CRON_SEEN``) lets a
restarted node push the ticks it missed while it was down (up to ``CATCH_UP`` seconds back),
and no tick twice. Schedules are evaluated with cronsim in the server's time zone (Faktory
documents no time-zone setting).
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from datetime import time as dtime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from cronsim import CronSim, CronSimError

from faktory_fast import jobs
from faktory_fast.jobs import JobError
from faktory_fast.log import FailureLog, show

if TYPE_CHECKING:
    from faktory_fast.storage.partitions import Partitions
    from faktory_fast.storage.store import AsyncStore, SyncStore

log = logging.getLogger("faktory_fast")

CATCH_UP = 600  # seconds of ticks a (re)starting node pushes if no node did
CLAIM_TTL = 3600  # seconds a tick's claim is kept: longer than CATCH_UP
#: Test-only time source: a file holding the unix time the cron task takes as "now".
CLOCK_ENV = "FAKTORY_FAST_CRON_CLOCK"
#: The usual @names, as the 5-field schedules they stand for (Vixie cron's list).
NAMED = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
         "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
         "@hourly": "0 * * * *"}
JOB_KEYS = {"type", "queue", "args", "retry", "reserve_for", "custom", "priority", "backtrace"}


class CronError(ValueError):
    """An invalid ``[[cron]]`` entry (the message names it)."""


def local_zone() -> tzinfo:
    """The server's time zone: $TZ, else /etc/localtime, else UTC."""
    name = os.environ.get("TZ", "").lstrip(":")
    try:
        if name:
            return ZoneInfo(name)
        with open("/etc/localtime", "rb") as fh:
            return ZoneInfo.from_file(fh)
    except (OSError, ValueError, ZoneInfoNotFoundError):
        return UTC


@dataclass(frozen=True)
class CronEntry:
    """One ``[[cron]]`` entry: its schedule and the job it pushes."""

    schedule: str
    job: dict[str, Any]  # the job as pushed, without jid and timestamps (jobtype, queue, ...)
    source: str  # "<file> entry <n>", for messages
    id: str = field(default="")  # stable across restarts and nodes: hash of schedule and job

    @property
    def expression(self) -> str:
        return NAMED.get(self.schedule, self.schedule)

    def ticks(self, after: float, until: float, zone: tzinfo) -> Iterator[int]:
        """The ticks (unix seconds) in (after, until]."""
        for dt in CronSim(self.expression, datetime.fromtimestamp(after, zone)):
            t = int(dt.timestamp())
            if t > until:
                return
            if t > after:
                yield t

    def next_tick(self, after: float, zone: tzinfo) -> int:
        """The first tick after ``after``."""
        return int(next(CronSim(self.expression, datetime.fromtimestamp(after, zone))).timestamp())

    def prepared(self, now_ns: int) -> jobs.Prepared:
        """The job to push now: a fresh jid, through PUSH's validation (``expires_in`` too)."""
        job = orjson.loads(orjson.dumps(self.job))  # a copy: prepare changes what it gets
        job["jid"] = os.urandom(12).hex()
        return jobs.prepare(job, now_ns)


def parse_entries(raw: Any, sources: Sequence[str], directory: str = "conf.d") -> list[CronEntry]:
    """The ``cron`` array of the merged TOML as entries; CronError naming the first bad one.

    ``sources``: the file each entry came from, in order (as many as entries, when known):
    an entry is then named by its file and its place in that file, else by its place in the
    merged document of ``directory``.
    """
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise CronError(f"invalid cron configuration in {directory}: use [[cron]] tables")
    out = []
    for n, item in enumerate(raw):
        if n < len(sources):
            path = sources[n]
            source = f"{path} [[cron]] entry {sources[:n].count(path) + 1}"
        else:
            source = f"{directory} [[cron]] entry {n + 1}"
        try:
            out.append(_entry(item, source))
        except (CronError, JobError, CronSimError) as exc:
            raise CronError(f"invalid cron entry in {source}: {exc}") from None
    return out


#: The integer fields of ``[cron.job]``: the range each takes (a reason where it is not plain).
#: retry: -1 (straight to the dead set) to 500, whose last backoff (500^4 s, about 2,000 years)
#: still gives the failure's next_at a 4-digit year; reserve_for: PUSH's bound (0: the
#: default); priority: ours, 1-9 (PUSH would clamp; a config says what it means);
#: backtrace: lines of backtrace a worker keeps.
JOB_INTS: dict[str, tuple[int, int, str]] = {
    "retry": (-1, 500, ""),
    "reserve_for": (0, jobs.MAX_RESERVE, " (jobs cannot be reserved for more than one day)"),
    "priority": (1, 9, ""),
    "backtrace": (0, 1000, ""),
}


def _json_value(value: Any, what: str, level: int) -> None:
    """CronError unless ``value`` (from TOML) is what a job can carry as JSON: orjson's 64-bit
    integers, finite numbers (it would write NaN as null), at most ``jobs.MAX_DEPTH`` levels
    deep (``level``: this value's, the job being 1)."""
    if level > jobs.MAX_DEPTH:
        raise CronError(f"{what}: {jobs.TOO_DEEP}")
    if isinstance(value, (str, bool)):
        return
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise CronError(f"{what}: {show(value)} is past 64 bits")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise CronError(f"{what}: {value} is not a number JSON can carry")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _json_value(item, f"{what}[{i}]", level + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            _json_value(item, f"{what}.{key}", level + 1)
    elif not isinstance(value, (date, dtime)):  # TOML's dates and times: RFC 3339 strings
        raise CronError(f"{what}: {type(value).__name__} is not a JSON value")


def _entry(item: Any, source: str) -> CronEntry:
    if not isinstance(item, dict):
        raise CronError(f"not a table: {show(item)}")
    unknown = set(item) - {"schedule", "job"}
    if unknown:
        raise CronError(f"unknown key {sorted(unknown)[0]!r}")
    schedule = item.get("schedule")
    if not isinstance(schedule, str) or not schedule.strip():
        raise CronError(f"schedule must be a string such as \"*/5 * * * *\", not {show(schedule)}")
    schedule = " ".join(schedule.split())
    if schedule.startswith("@") and schedule not in NAMED:
        raise CronError(f"unknown schedule {schedule!r} (use 5 fields or one of "
                        f"{', '.join(NAMED)})")
    # cronsim takes a sixth field too (seconds): a push a second is no cron job of Faktory's.
    if schedule not in NAMED and len(schedule.split()) != 5:
        raise CronError(f"bad schedule {schedule!r}: 5 fields are needed (minute hour "
                        "day-of-month month day-of-week)")
    try:
        CronSim(NAMED.get(schedule, schedule), datetime.now(UTC))
    except CronSimError as exc:
        raise CronError(f"bad schedule {schedule!r}: {exc}") from None
    spec = item.get("job")
    if not isinstance(spec, dict):
        raise CronError("missing [cron.job] table")
    unknown = set(spec) - JOB_KEYS
    if unknown:
        raise CronError(f"unknown [cron.job] key {sorted(unknown)[0]!r}")
    job: dict[str, Any] = {"jobtype": spec.get("type"), "queue": spec.get("queue", "default"),
                           "args": spec.get("args", [])}
    for key in ("retry", "reserve_for", "custom", "priority", "backtrace"):
        if key in spec:
            job[key] = spec[key]
    if not isinstance(job["jobtype"], str) or not job["jobtype"]:
        raise CronError(f"[cron.job] needs a type (a string), not {show(job['jobtype'])}")
    if not isinstance(job["queue"], str):
        raise CronError(f"[cron.job] queue must be a string, not {show(job['queue'])}")
    jobs.check_queue(job["queue"])
    for key, (least, most, why) in JOB_INTS.items():
        if key in job and (type(job[key]) is not int or not least <= job[key] <= most):
            raise CronError(f"[cron.job] {key} must be an integer from {least} to {most}{why}, "
                            f"not {show(job[key])}")
    if not isinstance(job["args"], list):
        raise CronError(f"[cron.job] args must be an array, not {show(job['args'])}")
    if not isinstance(job.get("custom", {}), dict):
        raise CronError(f"[cron.job] custom must be a table, not {show(job['custom'])}")
    for key in ("args", "custom"):
        if key in job:
            _json_value(job[key], f"[cron.job] {key}", 2)
    # PUSH's own checks, now: an entry that could never be pushed is refused at start.
    probe = orjson.loads(orjson.dumps(job))
    probe["jid"] = "cron-probe"
    jobs.prepare(probe, time.time_ns())
    ident = hashlib.sha1(orjson.dumps({"schedule": schedule, "job": job},
                                      option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
    return CronEntry(schedule, job, source, ident)


def clock(environ: Mapping[str, str]) -> Callable[[], float]:
    """The cron task's "now": time.time, or (tests) the time written in $FAKTORY_FAST_CRON_CLOCK."""
    path = environ.get(CLOCK_ENV)
    if not path:
        return time.time

    def from_file() -> float:
        with open(path) as fh:
            return float(fh.read().strip())
    return from_file


class CronRunner:
    """Pushes the jobs of due cron ticks (one round: ``run_due``)."""

    def __init__(self, parts: Partitions[AsyncStore], entries: Callable[[], Sequence[CronEntry]],
                 now: Callable[[], float] = time.time, zone: tzinfo | None = None) -> None:
        self.parts = parts
        self.store = parts.home  # where the ticks handled are kept (its queues' jobs: parts.of)
        self.entries = entries
        self.now = now
        self.zone = zone or local_zone()
        self.since: float | None = None  # ticks up to here are handled
        self._failures: dict[str, FailureLog] = {}  # by entry source: one entry's own failures

    async def run_due(self) -> int:
        """Push every tick in (since, now]; how many this node pushed."""
        now = self.now()
        if self.since is None:
            seen = await self.store.cron_seen(int(now))
            self.since = max(float(seen), now - CATCH_UP) if seen else now
            log.debug("Cron: pushing the ticks after %s", jobs.rfc3339(int(self.since * 1e9)))
        # After a long pause (Redis away, the clock jumped), as after a restart: CATCH_UP back.
        after = max(self.since, now - CATCH_UP)
        pushed = 0
        for entry in self.entries():
            try:
                ticks = list(entry.ticks(after, now, self.zone))
            except Exception as exc:  # checked at load: a bug, which must not stop the others
                failures = self._failures.setdefault(entry.source,
                                                     FailureLog(f"Cron {entry.source}"))
                failures.failed(exc)
                continue
            for tick in ticks:  # Redis away: the round fails, and the next tries these again
                if await push_entry(self.parts, entry, tick):
                    pushed += 1
        if now > self.since:
            self.since = now
            await self.store.cron_seen(int(now))
        return pushed


async def push_entry(parts: Partitions[AsyncStore], entry: CronEntry, tick: int) -> bool:
    """Push ``entry``'s job for ``tick`` unless another process or node did; True if here.
    The tick is claimed in the partition of the job's queue, which gets the job."""
    try:
        job = entry.prepared(time.time_ns())
    except JobError as exc:  # checked at load; a custom.expires_at that has passed, say
        log.error("Cron %s: job not pushed: %s", entry.source, exc)
        return False
    done = await parts.of(job.queue).cron_push(entry.id, tick, CLAIM_TTL, job)
    if isinstance(done, JobError):
        log.info("Cron %s: job not pushed: %s %s", entry.source, done.code, done)
        return False
    log.debug("Cron %s tick %d: %s", entry.source, tick,
              f"pushed {job.jid}" if done else "pushed by another process or node")
    return done


def enqueue_now(store: SyncStore, entry: CronEntry) -> str:
    """The web UI's "enqueue now": push the entry's job at once (no tick claimed); its jid.
    JobError if refused."""
    job = entry.prepared(time.time_ns())
    done = store.cron_push(entry.id, int(time.time()), CLAIM_TTL, job, claim=False)
    if isinstance(done, JobError):
        raise done
    return job.jid
