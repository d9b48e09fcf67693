"""Queues and administration (``lua/queues.lua``): INFO, FLUSH, QUEUE and MUTATE."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypedDict

from faktory_fast.storage import keys
from faktory_fast.storage.fcall import (
    PAGE,
    Call,
    Fn,
    Op,
    as_text,
    concat,
    cursor_and,
    paged,
    pairs,
)

MUTATE_PAGE = 500  # sorted-set entries one MUTATE call looks at: no call holds Redis for a set


class Info(TypedDict):
    """Everything INFO reports that lives in Redis (``ff_info``)."""

    processed: int
    failures: int
    scheduled: int
    retries: int
    dead: int
    working: int
    workers: int
    connections: int
    commands: int
    tasks: dict[str, float]
    queues: dict[str, int]
    expired: int  # expiring jobs discarded at FETCH


def _info(reply: Any) -> tuple[str, Info]:
    (processed, failures, scheduled, retries, dead, working, workers, conns, cmds,
     tasks, queues, expired) = reply[1]
    return as_text(reply[0]), {
        "expired": expired,
        "processed": processed, "failures": failures, "scheduled": scheduled,
        "retries": retries, "dead": dead, "working": working, "workers": workers,
        "connections": conns, "commands": cmds,
        "tasks": {as_text(k): float(v) for k, v in pairs(tasks)},
        "queues": {as_text(k): v for k, v in pairs(queues)},
    }


def sum_info(parts: list[Info]) -> Info:
    """INFO of several partitions (``storage.partitions``): the counters and sizes summed, the
    queues of all (each queue is in one partition) and the task stats of all."""
    info = parts[0]
    for part in parts[1:]:
        for name in ("processed", "failures", "scheduled", "retries", "dead", "working",
                     "workers", "connections", "commands", "expired"):
            info[name] += part[name]
        info["queues"].update(part["queues"])
        for task, value in part["tasks"].items():
            info["tasks"][task] = info["tasks"].get(task, 0.0) + value
    return info


def _merge_info(parts: list[Info]) -> Info:
    """INFO from its pages: the counters of the first, the queues of all."""
    info = parts[0]
    for part in parts[1:]:
        info["queues"].update(part["queues"])
    return info


FF_INFO = Fn("ff_info", (keys.PROCESSED, keys.FAILURES, keys.SCHEDULED, keys.RETRIES, keys.DEAD,
                         keys.WORKING, keys.WORKER_BEATS, keys.CONNECTIONS, keys.COMMANDS,
                         keys.TASKS, keys.QUEUES, keys.PRIORITY_QUEUES, keys.EXPIRED), _info)
FF_FLUSH = Fn("ff_flush", (keys.CONNECTIONS, keys.COMMANDS, keys.TASKS, keys.WORKER_BEATS,
                           keys.QUIET_WORKERS, keys.THROTTLES, keys.CRON_ENTRIES,
                           keys.PARTITIONS), cursor_and)
FF_QUEUE = Fn("ff_queue", (keys.QUEUES, keys.PAUSED, keys.PRIORITY_QUEUES), cursor_and)
FF_QUEUE_HEADS = Fn("ff_queue_heads", (keys.PRIORITY_QUEUES,), list)
FF_MUTATE = Fn("ff_mutate", (keys.DEAD,), cursor_and)
FF_MUTATE_SELECT = Fn("ff_mutate_select", (), cursor_and)


class QueueOps:
    """The operations on queues and the administration commands."""

    @Op
    def known_queues(self) -> Call[list[str]]:
        """The names in the ``queues`` set (sorted)."""
        def names(reply: Any) -> list[str]:
            return sorted(as_text(n) for n in reply)
        return Call(("SMEMBERS", keys.QUEUES), names, keyed=1)

    @paged(sum)
    def queue_op(self, cursor: str, sub: str, names: Sequence[str]) -> Call[tuple[str, int]]:
        """QUEUE PAUSE | RESUME | REMOVE (``*`` = every queue); how many queues were named."""
        return FF_QUEUE.call([keys.queue(n) for n in names if n != "*"], sub, cursor, PAGE,
                             *names)

    @paged(concat)
    def queue_heads(self, start: str, names: Sequence[str]) -> Call[tuple[str, list[list[bytes]]]]:
        """Per queue, the next-to-run job of each of its priority lists (PAGE queues a call)."""
        at = int(start)
        part = names[at:at + PAGE]
        after = str(at + PAGE) if at + PAGE < len(names) else "0"
        def heads(reply: Any) -> tuple[str, list[list[bytes]]]:
            return after, list(reply)
        return Call(FF_QUEUE_HEADS.args([keys.queue(n) for n in part], part), heads)

    @paged(lambda parts: None)
    def flush(self, cursor: str) -> Call[tuple[str, Any]]:
        """Forget every job and queue (FLUSH); the live registry of processes and workers
        stays. One call on a single Redis (FLUSHDB); on a cluster, a call a page of keys."""
        return FF_FLUSH.call((), cursor, PAGE)

    @paged(_merge_info)
    def info(self, cursor: str) -> Call[tuple[str, Info]]:
        """Counters, set sizes, queue sizes, connections and task stats."""
        return FF_INFO.call((), cursor, PAGE)

    @Op
    def mutate(self, cmd: str, target: str, dead_score: str, mode: str, pattern: str,
               extra: Sequence[str], cursor: str = "0") -> Call[tuple[str, int]]:
        """MUTATE clear | discard | kill on the sorted set ``target``, over one page of its
        entries (MUTATE_PAGE, from ``cursor``) selected by ``mode`` (see ``ff_mutate``):
        (the next cursor, '0' at the end; how many were removed)."""
        return FF_MUTATE.call((), cmd, dead_score, cursor, MUTATE_PAGE, mode, pattern, *extra,
                              lead=(target,))

    @Op
    def mutate_select(self, target: str, mode: str, pattern: str, extra: Sequence[str],
                      cursor: str = "0") -> Call[tuple[str, list[bytes]]]:
        """One page of the members of ``target`` a MUTATE filter selects (for a requeue):
        (the next cursor, '0' at the end; the members)."""
        return FF_MUTATE_SELECT.call((), cursor, MUTATE_PAGE, mode, pattern, *extra,
                                     lead=(target,))
