"""Job payloads: validation, Faktory's canonical encoding, timestamps, and the failure rules.

Pure functions (no I/O) so the lifecycle and the scheduler share them and tests reach them
directly. Messages match Faktory's word for word where clients or users may see them.
"""
from __future__ import annotations

import calendar
import hashlib
import math
import random
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

DEFAULT_RETRY = 25
DEFAULT_RESERVE = 1800
MAX_RESERVE = 86400
DEAD_TTL = 180 * 86400
DEFAULT_PRIORITY = 5
#: Levels of nesting a job may have, itself included: orjson encodes no deeper, so a deeper job
#: could be neither stored nor handed out.
MAX_DEPTH = 254
TOO_DEEP = f"jobs cannot nest more than {MAX_DEPTH} levels deep"
#: errtype of the failure given to a stored record set aside into the dead set.
INVALID_JOB = "InvalidJob"

QUEUE_NAME = re.compile(r"[a-zA-Z0-9._-]+")
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})"
)


#: The longest unique lock or expires_in (seconds, ten years): a longer one is a mistake, and
#: Redis's expiry times (milliseconds) must stay integers.
MAX_ENT_SECONDS = 10 * 365 * 86400


class JobError(ValueError):
    """A job (or command payload) is invalid; str() is the text after ``-<code> `` (``ERR``
    unless the refusal has a code of its own, as Enterprise's ``NOTUNIQUE``)."""

    def __init__(self, message: str, code: str = "ERR") -> None:
        super().__init__(message)
        self.code = code

    @classmethod
    def from_line(cls, line: bytes | str) -> JobError:
        """The refusal a Lua function gave as ``"CODE message"``."""
        text = line.decode(errors="replace") if isinstance(line, bytes) else line
        code, _, message = text.partition(" ")
        return cls(message, code)


# -- time ------------------------------------------------------------------------------------

_stamp_cache: list = [None, ""]  # [unix second, its "YYYY-MM-DDTHH:MM:SS"]: strftime is slow


def rfc3339(ns: int | None = None) -> str:
    """UTC RFC3339 with nanoseconds and trailing zeros trimmed, as Go's RFC3339Nano."""
    if ns is None:
        ns = time.time_ns()
    sec, frac = divmod(ns, 1_000_000_000)
    if _stamp_cache[0] == sec:
        base = _stamp_cache[1]
    else:
        base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        _stamp_cache[0], _stamp_cache[1] = sec, base
    if frac:
        return f"{base}.{frac:09d}".rstrip("0") + "Z"
    return base + "Z"


def parse_rfc3339(value: str) -> int:
    """RFC3339 (fraction optional, ``Z`` or ``±hh:mm``) to unix nanoseconds; ValueError if not."""
    m = _RFC3339.fullmatch(value)
    if not m:
        raise ValueError(
            f'parsing time "{value}" as "2006-01-02T15:04:05Z07:00": cannot parse "{value}" as RFC3339'
        )
    y, mo, d, h, mi, s = (int(m.group(i)) for i in range(1, 7))
    if not (1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60 and s < 60):
        raise ValueError(f'parsing time "{value}": field out of range')
    if d > calendar.monthrange(y, mo)[1]:
        raise ValueError(f'parsing time "{value}": day out of range')
    frac = int((m.group(7) or "").ljust(9, "0") or 0)
    tz = m.group(8)
    offset = 0
    if tz not in ("Z", "z"):
        sign = 1 if tz[0] == "+" else -1
        offset = sign * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60)
    secs = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)) - offset
    return secs * 1_000_000_000 + frac


def score(ns: int) -> str:
    """A sorted-set score (unix seconds) as an exact decimal string."""
    sec, frac = divmod(ns, 1_000_000_000)
    return f"{sec}.{frac:09d}"


def now_score() -> str:
    """The time now as a score: the form in which our Lua functions take "now"."""
    return score(time.time_ns())


def dead_score(now_ns: int) -> str:
    """The score of a job entering the dead set at ``now_ns``: when it is purged."""
    return score(now_ns + DEAD_TTL * 1_000_000_000)


_day_cache: list = [0.0, ""]  # [local midnight after which it changes, "YYYY-MM-DD"]


def today() -> str:
    """The day counters' key suffix: YYYY-MM-DD in the server's local time zone."""
    now = time.time()
    if now >= _day_cache[0]:
        lt = time.localtime(now)
        # Recompute at the next whole minute: cheap, and right across midnight and DST changes.
        _day_cache[0] = now - lt.tm_sec - (now % 1) + 60
        _day_cache[1] = time.strftime("%Y-%m-%d", lt)
    return _day_cache[1]


# -- decoding with Go-like type errors ---------------------------------------------------------

_JSON_KIND = {str: "string", int: "number", float: "number", bool: "bool", list: "array",
              dict: "object"}
# field -> (accepted Python types, Go type name for the error message)
_FIELDS: dict[str, tuple[tuple[type, ...], str]] = {
    "jid": ((str,), "string"),
    "queue": ((str,), "string"),
    "jobtype": ((str,), "string"),
    "created_at": ((str,), "string"),
    "enqueued_at": ((str,), "string"),
    "at": ((str,), "string"),
    "args": ((list,), "[]interface {}"),
    "custom": ((dict,), "map[string]interface {}"),
    "failure": ((dict,), "client.Failure"),
    "retry": ((int,), "int"),
    "reserve_for": ((int,), "int"),
    "backtrace": ((int,), "int"),
}
# The same for Faktory's Failure struct: the retry rules read these back at the next FAIL.
_FAILURE_FIELDS: dict[str, tuple[tuple[type, ...], str]] = {
    "retry_count": ((int,), "int"),
    "remaining": ((int,), "int"),
    "failed_at": ((str,), "string"),
    "next_at": ((str,), "string"),
    "message": ((str,), "string"),
    "errtype": ((str,), "string"),
    "backtrace": ((list,), "[]string"),
}


def loads(payload: bytes, what: str = "JSON") -> Any:
    """orjson.loads with a JobError naming ``what`` on malformed input."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc):  # orjson decodes 1024 levels: far past what we store
            raise JobError(TOO_DEEP) from None
        raise JobError(f"invalid {what}: {exc}") from None


def _type_error(field: str, value: Any, gotype: str, struct: str = "Job") -> JobError:
    kind = _JSON_KIND.get(type(value), "value")
    if isinstance(value, float):
        kind = f"number {value!r}"
    return JobError(f"invalid JSON: json: cannot unmarshal {kind} into Go struct field "
                    f"{struct}.{field} of type {gotype}")


def check_types(job: Any) -> dict:
    """Reject what Go's decoder would reject for Faktory's Job struct."""
    if not isinstance(job, dict):
        kind = _JSON_KIND.get(type(job), "value")
        raise JobError(f"invalid JSON: json: cannot unmarshal {kind} into Go value of type client.Job")
    for name, value in job.items():  # a job has fewer keys than _FIELDS
        spec = _FIELDS.get(name)
        if spec is not None and value is not None and type(value) not in spec[0]:
            raise _type_error(name, value, spec[1])  # bool is not an int to Go; nor is 5.0
    failure = job.get("failure")
    if failure:
        for name, value in failure.items():
            spec = _FAILURE_FIELDS.get(name)
            if spec is not None and value is not None and type(value) not in spec[0]:
                raise _type_error("failure." + name, value, spec[1], "Failure")
        for line in failure.get("backtrace") or ():
            if type(line) is not str:
                raise _type_error("failure.backtrace", line, "string", "Failure")
    return job


def priority_of(job: dict) -> int:
    """Our priority extension: an integer 1-9 (clamped), anything else is the default 5."""
    p = job.get("priority")
    if type(p) is not int:
        return DEFAULT_PRIORITY
    return min(9, max(1, p))


#: The custom keys the Lua hooks read (lua/batch.lua, lua/ent.lua). ``encode`` writes them
#: first in the custom object, in this order, when their values are scalars; Redis reads them
#: there with anchored matches (``job_head`` in lua/jobs.lua) and never decodes a job.
HOOK_KEYS = ("bid", "_bid", "track", "unique_for", "unique_until", "expires_at")
_SCALARS = (str, int, float, bool, type(None))


def encode(job: dict) -> bytes:
    """The job as stored: unknown top-level keys dropped, Faktory's omit-empty rules, and an
    order Redis can read without decoding it: ``{"jid":..,"retry":..`` first, then
    ``"reserve_for"`` if set, then ``"custom"`` (its HOOK_KEYS first). A ``"`` inside the jid
    or a hook key's string is written ``\\u0022``, so each of them ends at the next ``"``."""
    jid = job.get("jid") or ""
    out: dict[str, Any] = {"jid": jid, "retry": job.get("retry")}
    if job.get("reserve_for"):
        out["reserve_for"] = job["reserve_for"]
    quoted = [jid] if '"' in jid else []
    custom = job.get("custom")
    if custom:
        hooks = {k: custom[k] for k in HOOK_KEYS if k in custom and type(custom[k]) in _SCALARS}
        if hooks:
            custom = {**hooks, **{k: v for k, v in custom.items() if k not in hooks}}
            quoted += [v for v in hooks.values() if type(v) is str and '"' in v]
        out["custom"] = custom
    if job.get("failure"):
        out["failure"] = job["failure"]
    out["queue"] = job.get("queue") or ""
    out["jobtype"] = job.get("jobtype") or ""
    for key in ("created_at", "enqueued_at", "at"):
        if job.get(key):
            out[key] = job[key]
    out["args"] = job.get("args")
    if job.get("backtrace"):
        out["backtrace"] = job["backtrace"]
    prio = priority_of(job)
    if prio != DEFAULT_PRIORITY:
        out["priority"] = prio
    try:
        if not quoted:
            return orjson.dumps(out)
        return _quote_safe(out, quoted)
    except orjson.JSONEncodeError as exc:  # from decoded JSON only nesting can cause this
        raise JobError(TOO_DEEP if "ecursion" in str(exc) else f"invalid JSON: {exc}") from None


def _quote_safe(out: dict[str, Any], texts: list[str]) -> bytes:
    """orjson's encoding of ``out`` with the strings ``texts`` (the jid, hook values) written
    with ``\\u0022`` for ``"``: each is swapped for a random token, and the token's text for
    theirs. (Every ``"`` inside orjson's escaped text is the end of a ``\\"``.)"""
    tokens = {text: secrets.token_hex(16) for text in texts}
    def swap(v: Any) -> Any:
        return tokens.get(v, v) if type(v) is str else v
    out = dict(out, jid=swap(out["jid"]))
    if "custom" in out:
        out["custom"] = {k: swap(v) if k in HOOK_KEYS else v for k, v in out["custom"].items()}
    raw = orjson.dumps(out)
    for text, token in tokens.items():
        safe = orjson.dumps(text)[1:-1].replace(b'"', b"u0022")
        raw = raw.replace(b'"' + token.encode() + b'"', b'"' + safe + b'"')
    return raw


# -- unique jobs: the lock's name ---------------------------------------------------------------

def unique_name(jobtype: str, queue: str, args: Any) -> str:
    """The name of a unique job's lock (``keys.unique_lock``): sha1 of jobtype, queue and the
    args' canonical text, NUL-separated.

    The canonical text is what servers before this one computed in Redis (lua/ent.lua's legacy
    path), so their locks are this one's: object keys sorted, in Lua cjson's encoding (14
    significant digits, ``\\/``, ``{}`` for an empty array); args holding a number that 14
    digits would change are their JSON text instead (every digit kept), keys sorted. (Those
    servers sorted such objects' members by their text: the same order unless one key is
    another followed by a space, a ``!`` or an escaped character.) Built from orjson's text
    with regular expressions: C speed, linear in the size of the args.
    """
    text = orjson.dumps(args, option=orjson.OPT_SORT_KEYS)
    outside = _outside_strings(text)
    numbers = {t for t in set(outside.translate(_SEPARATORS).split()) if t[0] in _NUMBER_START}
    if all(_fits_cjson(n) for n in numbers):
        text = _as_cjson(text, outside, numbers)
    return hashlib.sha1(b"\0".join((jobtype.encode(), queue.encode(), text))).hexdigest()


_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"')
_SEPARATORS = bytes.maketrans(b",:[]{}", b"      ")
_NUMBER_START = b"-0123456789"


def _outside_strings(text: bytes) -> bytes:
    """JSON text with each string emptied (split at each quote where no escape can hide one)."""
    if b"\\" not in text:
        return b'""'.join(text.split(b'"')[0::2])
    return _STRING.sub(b'""', text)


def _cjson_number(token: bytes) -> bytes:
    """A number as Lua cjson writes the double Redis decodes it into."""
    return b"%.14g" % float(token)


def _fits_cjson(token: bytes) -> bool:
    """Does cjson's encoding (14 significant digits) keep this number's value? One that needs
    more (an id of 15 digits and up) does not: two that differ past the 14th digit would
    name one lock."""
    return float(_cjson_number(token)) == float(token)


def _as_cjson(text: bytes, outside: bytes, numbers: set[bytes]) -> bytes:
    """orjson's text of a value as Lua cjson writes the value Redis decodes it into: ``\\/``
    and ``\\u007f`` in strings, ``{}`` for an empty array (an empty Lua table), numbers with
    14 significant digits; the other escapes are the same. (``outside``: the text without its
    strings, for where a token may be replaced everywhere.)"""
    text = text.replace(b"/", b"\\/").replace(b"\x7f", b"\\u007f")  # in strings only
    redo = {n: c for n in numbers if (c := _cjson_number(n)) != n}
    if b"[]" in outside:
        if text.count(b"[]") != outside.count(b"[]"):  # a string holds one too: token by token
            return _tokens_as_cjson(text, redo)
        text = text.replace(b"[]", b"{}")
    for token, written in redo.items():
        if text.count(token) != outside.count(token):
            return _tokens_as_cjson(text, redo)
        text = re.sub(rb"(?<![0-9.eE+-])" + re.escape(token) + rb"(?![0-9.eE+-])", written, text)
    return text


_TOKEN = re.compile(rb'"(?:[^"\\]++|\\.)*+"|(-?[0-9][0-9.eE+-]*)|\[\]')


def _tokens_as_cjson(text: bytes, redo: dict[bytes, bytes]) -> bytes:
    """``_as_cjson``'s tokens replaced one by one, strings skipped (slower: a call a token)."""
    def cjson_token(m: re.Match[bytes]) -> bytes:
        token = m.group(0)
        if token == b"[]":
            return b"{}"
        return redo.get(token, token) if m.group(1) else token
    return _TOKEN.sub(cjson_token, text)


@dataclass(slots=True)
class Prepared:
    """A validated job ready for the store: where it goes and its bytes."""

    jid: str
    queue: str
    priority: int
    payload: bytes
    at_score: str  # '' = enqueue now
    reserve_for: int = 0  # the job's reserve_for (0: the server's default)
    plain: bool = True  # no custom object: no Enterprise feature concerns it
    unique: str = ""  # a unique job's lock name (``unique_name``); '' if not unique
    unique_ms: int = 0  # how long its lock lasts: unique_for, plus the delay of a scheduled job


def prepare(job: Any, now_ns: int, created_at: str | None = None) -> Prepared:
    """Validate and normalise one pushed job (PUSH and each job of PUSHB)."""
    check_types(job)
    if job.get("retry") is None:
        job["retry"] = DEFAULT_RETRY
    jid = job.get("jid") or ""
    if len(jid.encode()) < 8:
        raise JobError("jobs must have a reasonable jid parameter")
    if not job.get("jobtype"):
        raise JobError("jobs must have a jobtype parameter")
    if job.get("args") is None:
        raise JobError("jobs must have an args parameter")
    if (job.get("reserve_for") or 0) > MAX_RESERVE:
        raise JobError("jobs cannot be reserved for more than one day")
    custom = job.get("custom")
    unique = 0.0  # unique_for, in seconds
    if custom:  # an object: check_types saw to it
        if "expires_in" in custom or "expires_at" in custom:
            expiring(custom, now_ns)
        if "unique_for" in custom:
            unique = check_unique(custom)
        bid = custom.get("bid")
        if bid is not None and type(bid) is not str:
            raise JobError("custom.bid must be a string")
    stamp = created_at or rfc3339(now_ns)  # created_at is rfc3339(now_ns) when given
    if not job.get("created_at"):
        job["created_at"] = stamp
    if not job.get("queue"):
        job["queue"] = "default"
    at_score = ""
    at = job.get("at")
    if at:
        try:
            at_ns = parse_rfc3339(at)
        except ValueError as exc:
            raise JobError(f"invalid timestamp for 'at': \"{at}\": {exc}") from None
        if at_ns > now_ns:
            at_score = score(at_ns)
    queue = job["queue"]
    if not at_score:
        check_queue(queue)
        job["enqueued_at"] = stamp
    prepared = Prepared(jid, queue, priority_of(job), encode(job), at_score,
                        job.get("reserve_for") or 0, "custom" not in job)
    if unique:
        prepared.unique = unique_name(job["jobtype"], queue, job["args"])
        delay = max(at_ns - now_ns, 0) if at_score else 0
        prepared.unique_ms = math.ceil(unique * 1000 + delay / 1_000_000)
    return prepared


def check_unique(custom: dict) -> float:
    """Enterprise unique jobs: ``custom.unique_for`` is a number of seconds (a numeric string
    too, as Rails sends; anything else, or zero or less: the job is not unique). Its seconds
    (0 if the job is not unique); JobError for one beyond MAX_ENT_SECONDS (the lock's expiry
    would overflow Redis's)."""
    value = custom.get("unique_for")
    if not isinstance(value, (int, float, str)) or isinstance(value, bool):
        return 0.0
    try:
        secs = float(value)
    except ValueError:
        return 0.0
    if not secs <= MAX_ENT_SECONDS:  # NaN fails too
        raise JobError(f"invalid custom.unique_for {value!r}: must be a number of seconds "
                       f"up to {MAX_ENT_SECONDS}")
    return max(secs, 0.0)


def expiring(custom: dict, now_ns: int) -> None:
    """Enterprise expiring jobs: ``custom.expires_in`` (seconds) gives ``custom.expires_at``
    (RFC 3339, UTC) counted from now, unless the job has one; JobError for a value that is
    neither. ``ff_fetch`` discards the job once that time has passed."""
    if custom.get("expires_at") is None and custom.get("expires_in") is not None:
        secs = custom["expires_in"]
        if type(secs) not in (int, float) or not abs(secs) <= MAX_ENT_SECONDS:
            raise JobError(f"invalid custom.expires_in {secs!r}: must be a number of seconds "
                           f"up to {MAX_ENT_SECONDS}")
        custom["expires_at"] = rfc3339(now_ns + int(secs * 1_000_000_000))
        return
    at = custom.get("expires_at")
    if at is not None:
        try:
            parse_rfc3339(at if type(at) is str else repr(at))
        except ValueError as exc:
            raise JobError(f"invalid custom.expires_at: {exc}") from None


def check_queue(name: str) -> None:
    """Faktory's queue-name rule."""
    if not QUEUE_NAME.fullmatch(name):
        raise JobError(f'cannot get "{name}" queue: queue names must match \\A[a-zA-Z0-9._-]+\\z')


def stored_job(raw: bytes) -> dict:
    """A job read back from Redis, checked as PUSH checks one; JobError says what is wrong.

    Whatever PUSH accepted passes. What fails was written some other way (by hand, an older
    server, another tool) and is set aside by whoever finds it (see ``aside_entry``).
    """
    job = check_types(loads(raw))
    if type(job.get("jid")) is not str or not job["jid"]:
        raise JobError("jobs must have a reasonable jid parameter")
    if not job.get("jobtype"):
        raise JobError("jobs must have a jobtype parameter")
    if job.get("args") is None:
        raise JobError("jobs must have an args parameter")
    return job


def requeue(member: bytes, now_ns: int) -> tuple[str, int, bytes]:
    """A job leaving a sorted set for its queue, with a fresh ``enqueued_at``: the one rule
    for the scheduler, MUTATE's requeue and the web UI's buttons.

    Returns (queue, priority, payload); JobError when the entry is not a job that can be
    enqueued (the caller sets it aside, or leaves it where it is).
    """
    job = stored_job(member)
    queue = job.get("queue") or "default"
    check_queue(queue)
    job["enqueued_at"] = rfc3339(now_ns)
    return queue, priority_of(job), encode(job)


#: A sorted-set member on its way to a queue: (member, queue, priority, payload).
Move = tuple[bytes, str, int, bytes]


def requeue_moves(members: Iterable[bytes], now_ns: int
                  ) -> tuple[list[Move], list[tuple[bytes, JobError]]]:
    """``requeue`` for each member: the moves (for the store's ``enqueue_from``), and the
    members that cannot be enqueued, with why."""
    moves: list[Move] = []
    refused: list[tuple[bytes, JobError]] = []
    for member in members:
        try:
            moves.append((member, *requeue(member, now_ns)))
        except JobError as exc:
            refused.append((member, exc))
    return moves, refused


def aside_entry(raw: bytes, reason: str, now_ns: int) -> bytes:
    """The dead-set entry for a stored record the server cannot use, or b'' if none fits.

    A job object with a jid goes to the dead set, where the web UI shows it, with a failure
    (errtype ``InvalidJob``) whose message is ``reason``; its own failure's counts are kept
    when they are readable. Anything else (not JSON, no jid, wrong field types, too deep)
    gets b'': the caller keeps the raw record in ``keys.BAD_RECORDS``.
    """
    try:
        job = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return b""
    if not isinstance(job, dict) or type(job.get("jid")) is not str or not job["jid"]:
        return b""
    kept: dict[str, Any] = {"failed_at": rfc3339(now_ns), "retry_count": 0, "remaining": 0}
    old = job.get("failure")
    if isinstance(old, dict):
        try:
            check_types({"failure": old})
            for k in kept:
                if old.get(k):
                    kept[k] = old[k]
        except JobError:
            pass
    job["failure"] = {"failed_at": kept["failed_at"], "message": reason[:1000],
                      "errtype": INVALID_JOB, "retry_count": kept["retry_count"],
                      "remaining": kept["remaining"]}
    try:
        check_types(job)
        return encode(job)
    except JobError:
        return b""


# -- failures ---------------------------------------------------------------------------------

@dataclass(slots=True)
class FailInfo:
    """What a FAIL (or an expired reservation) says went wrong, already cleansed."""

    errtype: str
    message: str
    backtrace: list[str]


def _clip(text: str, limit: int) -> str:
    text = text.strip() or "unknown"
    raw = text.encode()
    if len(raw) > limit:
        text = raw[:limit].decode(errors="ignore")
    return text


def fail_info(payload: bytes) -> tuple[str, FailInfo]:
    """Parse and cleanse a FAIL payload; returns (jid, info)."""
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise JobError(f"invalid FAIL {payload.decode(errors='replace')}") from None
    if not isinstance(data, dict):
        raise JobError(f"invalid FAIL {payload.decode(errors='replace')}")
    for key in ("jid", "errtype", "message"):
        if data.get(key) is not None and type(data[key]) is not str:
            raise JobError(f"invalid FAIL {payload.decode(errors='replace')}")
    bt = data.get("backtrace")
    if bt is not None and (type(bt) is not list or any(type(x) is not str for x in bt)):
        raise JobError(f"invalid FAIL {payload.decode(errors='replace')}")
    jid = data.get("jid") or ""
    if not jid:
        raise JobError("missing JID")
    info = FailInfo(_clip(data.get("errtype") or "", 100), _clip(data.get("message") or "", 1000),
                    (bt or [])[:50])
    return jid, info


EXPIRED = FailInfo("ReservationExpired", "Faktory job reservation expired", [])


def backoff(count: int, rng: random.Random | None = None) -> int:
    """Seconds until retry number ``count`` (0-based): count^4 + 15 + R*(count+1), R in [0, 29]."""
    r = (rng or random).randint(0, 29)
    return count**4 + 15 + r * (count + 1)


def apply_failure(job_bytes: bytes, info: FailInfo, now_ns: int,
                  rng: random.Random | None = None) -> tuple[str, bytes, str]:
    """Faktory's retry rules for one failed job: (outcome, payload, score).

    outcome is ``retry`` (score = next attempt), ``dead`` (score = now + 180 days) or
    ``discard`` (retry 0: the job vanishes). JobError if the job is not one PUSH would accept.
    """
    job = stored_job(job_bytes)
    retry = job.get("retry")
    if type(retry) is not int:
        retry = DEFAULT_RETRY if retry is None else 0
    now = rfc3339(now_ns)
    old = job.get("failure") if isinstance(job.get("failure"), dict) else None
    if old is None:
        count, remaining, failed_at = 0, retry, now
    else:
        count = int(old.get("retry_count") or 0) + 1
        remaining = int(old.get("remaining") or 0)
        if remaining > 0:
            remaining -= 1
        failed_at = old.get("failed_at") or now
    failure: dict[str, Any] = {"failed_at": failed_at}
    if retry == 0:
        outcome, at = "discard", score(now_ns)
    elif count < retry:
        outcome = "retry"
        at_ns = now_ns + backoff(count, rng) * 1_000_000_000
        failure["next_at"] = rfc3339(at_ns)
        at = score(at_ns)
    else:
        outcome, at = "dead", dead_score(now_ns)
    failure["message"] = info.message
    failure["errtype"] = info.errtype
    if info.backtrace:
        failure["backtrace"] = info.backtrace
    failure["retry_count"] = count
    failure["remaining"] = remaining
    job["failure"] = failure
    return outcome, encode(job), at
