"""Each command as data: the line to send, whether resending it is harmless, how to read its
reply. The sync and asyncio clients run the same :class:`Command` objects."""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from .errors import FaktoryError
from .job import Job, timestamp
from .protocol import command, dumps

T = TypeVar("T")
Reply = str | int | None


@dataclass(frozen=True)
class Command(Generic[T]):
    """``line`` (CRLF-terminated); ``idempotent``: resent once on a new connection when the
    connection breaks before the reply; ``decode`` turns the reply into the result."""

    line: bytes
    decode: Callable[[Reply], T]
    idempotent: bool = False


def _ok(reply: Reply) -> None:
    if reply != "OK":
        raise FaktoryError(f"expected OK, got {reply!r}")


def _json(reply: Reply) -> Any:
    return None if reply is None else json.loads(reply)  # type: ignore[arg-type]


def _text(reply: Reply) -> str:
    if not isinstance(reply, str):
        raise FaktoryError(f"expected a string reply, got {reply!r}")
    return reply


def _job_dict(job: Job | dict[str, Any]) -> dict[str, Any]:
    return job.to_dict() if isinstance(job, Job) else job


def push(job: Job | dict[str, Any]) -> Command[None]:
    return Command(command("PUSH", dumps(_job_dict(job))), _ok)


def push_bulk(jobs: Iterable[Job | dict[str, Any]]) -> Command[dict[str, str]]:
    return Command(command("PUSHB", dumps([_job_dict(j) for j in jobs])),
                   lambda r: _json(r) or {})


def _fetched(reply: Reply) -> Job | None:
    data = _json(reply)
    return None if data is None else Job.from_dict(data)


def fetch(queues: Iterable[str]) -> Command[Job | None]:
    names = " ".join(queues)
    if not names:
        raise ValueError("fetch needs at least one queue")
    return Command(command("FETCH", names), _fetched)


def ack(jid: str) -> Command[None]:
    # ACK of a job already acknowledged answers OK: resending is harmless.
    return Command(command("ACK", dumps({"jid": jid})), _ok, idempotent=True)


def fail(jid: str, errtype: str, message: str, backtrace: list[str] | None = None) -> Command[None]:
    payload = {"jid": jid, "errtype": errtype, "message": message, "backtrace": backtrace or []}
    return Command(command("FAIL", dumps(payload)), _ok)


def _beat_state(reply: Reply) -> str | None:
    if reply == "OK" or reply is None:
        return None
    return str(_json(reply).get("state") or "") or None


def beat(wid: str, current_state: str | None = None, rss_kb: int | None = None) -> Command[str | None]:
    payload: dict[str, Any] = {"wid": wid}
    if current_state:
        payload["current_state"] = current_state
    if rss_kb is not None:
        payload["rss_kb"] = rss_kb
    return Command(command("BEAT", dumps(payload)), _beat_state, idempotent=True)


def info() -> Command[dict[str, Any]]:
    return Command(command("INFO"), _json, idempotent=True)


def flush() -> Command[None]:
    return Command(command("FLUSH"), _ok, idempotent=True)


def queue(sub: str, names: Iterable[str]) -> Command[None]:
    listed = " ".join(names)
    if not listed:
        raise ValueError(f"QUEUE {sub} needs at least one queue name (or '*')")
    # PAUSE and RESUME set a state: resending is harmless; REMOVE of a removed queue too.
    return Command(command("QUEUE", f"{sub} {listed}"), _ok, idempotent=True)


def queue_latency(names: Iterable[str]) -> Command[dict[str, float]]:
    listed = " ".join(names)
    if not listed:
        raise ValueError("QUEUE LATENCY needs at least one queue name")
    return Command(command("QUEUE", f"LATENCY {listed}"), _json, idempotent=True)


MUTATE_CMDS = ("clear", "kill", "discard", "requeue")
MUTATE_TARGETS = ("retries", "dead", "scheduled")


def mutate(cmd: str, target: str, jobtype: str | None = None, jids: list[str] | None = None,
           regexp: str | None = None) -> Command[None]:
    if cmd not in MUTATE_CMDS:
        raise ValueError(f"mutate cmd must be one of {MUTATE_CMDS}")
    if target not in MUTATE_TARGETS:
        raise ValueError(f"mutate target must be one of {MUTATE_TARGETS}")
    op: dict[str, Any] = {"cmd": cmd, "target": target}
    flt: dict[str, Any] = {}
    if jobtype:
        flt["jobtype"] = jobtype
    if jids:
        flt["jids"] = list(jids)
    if regexp:
        flt["regexp"] = regexp
    if flt:
        op["filter"] = flt
    line = dumps(op)
    if " " in line:  # the server splits MUTATE on spaces: a space anywhere is refused
        raise ValueError("MUTATE cannot carry a space (in a jobtype, jid or pattern)")
    return Command(command("MUTATE", line), _ok)


# -- Enterprise: batches and tracking --

def batch_new(definition: dict[str, Any]) -> Command[str]:
    return Command(command("BATCH NEW", dumps(definition)), _text)


def batch_open(bid: str) -> Command[str]:
    # Some servers answer OK, Go's expects the bid: either way the bid is the one asked for.
    return Command(command("BATCH OPEN", bid), lambda r: bid if r in ("OK", None) else _text(r),
                   idempotent=True)


def batch_commit(bid: str) -> Command[None]:
    return Command(command("BATCH COMMIT", bid), _ok)


def batch_status(bid: str) -> Command[dict[str, Any]]:
    return Command(command("BATCH STATUS", bid), _json, idempotent=True)


def track_get(jid: str) -> Command[dict[str, Any]]:
    return Command(command("TRACK GET", jid), _json, idempotent=True)


def track_set(jid: str, percent: int | None = None, desc: str | None = None,
              reserve_until: datetime | str | None = None) -> Command[None]:
    payload: dict[str, Any] = {"jid": jid}
    if percent is not None:
        payload["percent"] = int(percent)
    if desc is not None:
        payload["desc"] = desc
    if reserve_until is not None:
        if isinstance(reserve_until, datetime) and reserve_until <= datetime.now(UTC):
            pass  # as Go: a time already past would not extend anything
        else:
            payload["reserve_until"] = timestamp(reserve_until)
    return Command(command("TRACK SET", dumps(payload)), _ok, idempotent=True)
