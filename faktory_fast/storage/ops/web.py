"""The web UI's queries and edits (``lua/web.lua``), and the Redis facts its pages show."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from faktory_fast.storage import keys
from faktory_fast.storage.fcall import (
    PAGE,
    Call,
    Fn,
    Op,
    as_int,
    as_none,
    as_text,
    concat,
    paged,
    pairs,
)

#: What one call of the web UI's functions looks at (the caller goes on from where it stopped):
WEB_SAME_SCORE = 1_000  # members of one score read looking for a named entry (set_entries...)
WEB_SET_SCAN = 1_000  # entries of a sorted set a filter scans (set_filter)
WEB_QUEUE_SCAN = 2_000  # jobs of a queue a filter or a count of job types reads (queue_filter...)
WEB_BATCH_LOOKUP = 1_000  # batches looked in for a jid (batch_of)


def _scored(flat: Any) -> list[tuple[bytes, str]]:
    return [(m, as_text(sc)) for m, sc in pairs(flat)]


def _set_page(reply: Any) -> tuple[int, list[tuple[bytes, str]]]:
    return reply[0], _scored(reply[1])


def _set_filter(reply: Any) -> tuple[str, int, list[tuple[bytes, str]]]:
    return as_text(reply[0]), reply[1], _scored(reply[2])


def _named(flat: Any) -> list[tuple[str, str, str]]:
    return [(as_text(flat[i]), as_text(flat[i + 1]), as_text(flat[i + 2]))
            for i in range(0, len(flat) - 2, 3)]


def _set_get(reply: Any) -> tuple[list[tuple[bytes, str]], list[tuple[str, str, str]]]:
    return _scored(reply[0]), _named(reply[1])


def _set_remove(reply: Any) -> tuple[int, list[tuple[str, str, str]]]:
    return int(reply[0]), _named(reply[1])


def _queue_delete(reply: Any) -> tuple[bool, tuple[int, str] | None]:
    if len(reply) == 1:
        return bool(reply[0]), None
    return False, (int(reply[1]), as_text(reply[2]))


def _queue_page(reply: Any) -> tuple[int, list[tuple[int, bytes]]]:
    return reply[0], [(int(p), j) for p, j in pairs(reply[1])]


def _queue_filter(reply: Any) -> tuple[str, int, list[tuple[int, int, bytes]]]:
    flat = reply[2]
    return as_text(reply[0]), reply[1], [(int(flat[i]), int(flat[i + 1]), flat[i + 2])
                                         for i in range(0, len(flat) - 2, 3)]


def _queue_types(reply: Any) -> tuple[int, dict[str, int]]:
    return reply[0], {as_text(jobtype): n for jobtype, n in pairs(reply[1])}


def _batch_of(reply: Any) -> tuple[int, str, str]:
    return int(reply[0]), as_text(reply[1]), as_text(reply[2])


def _queue_rows(reply: Any) -> tuple[str, list[tuple[str, int, bool, list[bytes]]]]:
    return as_text(reply[0]), [(as_text(n), size, bool(p), heads) for n, size, p, heads in reply[1]]


FF_WEB_SET_PAGE = Fn("ff_web_set_page", (), _set_page)
FF_WEB_SET_GET = Fn("ff_web_set_get", (), _set_get)
FF_WEB_SET_REMOVE = Fn("ff_web_set_remove", (keys.DEAD,), _set_remove)
FF_WEB_SET_FILTER = Fn("ff_web_set_filter", (), _set_filter)
FF_WEB_QUEUE_PAGE = Fn("ff_web_queue_page", (keys.PRIORITY_QUEUES,), _queue_page)
FF_WEB_QUEUE_TYPES = Fn("ff_web_queue_types", (keys.PRIORITY_QUEUES,), _queue_types)
FF_WEB_QUEUE_FILTER = Fn("ff_web_queue_filter", (keys.PRIORITY_QUEUES,), _queue_filter)
FF_WEB_BATCH_OF = Fn("ff_web_batch_of", (keys.BATCHES,), _batch_of)
FF_WEB_QUEUE_DELETE = Fn("ff_web_queue_delete", (keys.PRIORITY_QUEUES,), _queue_delete)
FF_WEB_QUEUES = Fn("ff_web_queues", (keys.QUEUES, keys.PAUSED, keys.PRIORITY_QUEUES), _queue_rows)


class WebOps:
    """The web UI's operations."""

    @Op
    def set_page(self, zset: str, offset: int,
                 count: int) -> Call[tuple[int, list[tuple[bytes, str]]]]:
        """(size of ``zset``, [(member, score), ...]) for up to ``count`` entries from
        ``offset`` on in score order: fewer once they pass about 256 KB (go on from offset +
        the entries returned; ``web.bounded.set_page`` does)."""
        return FF_WEB_SET_PAGE.call((), offset, count, lead=(zset,))

    @Op
    def set_entries(self, zset: str, entries: Sequence[tuple[str, str, str]]
                    ) -> Call[tuple[list[tuple[bytes, str]], list[tuple[str, str, str]]]]:
        """The entries named by (score, jid, from: '' the first time) that still exist, reading
        about WEB_SAME_SCORE members of those scores: ([(member, score), ...], the entries to
        ask for again, with their next ``from``)."""
        return FF_WEB_SET_GET.call((), WEB_SAME_SCORE, *(x for entry in entries for x in entry),
                                   lead=(zset,))

    @Op
    def set_remove(self, zset: str, entries: Sequence[tuple[str, str, str]], kill_score: str = ""
                   ) -> Call[tuple[int, list[tuple[str, str, str]]]]:
        """Delete entries named by (score, jid, from), as ``set_entries`` finds them; with
        ``kill_score`` move them to ``dead``: (how many, the entries to ask for again)."""
        action = "kill" if kill_score else "delete"
        return FF_WEB_SET_REMOVE.call((), action, kill_score, WEB_SAME_SCORE,
                                      *(x for entry in entries for x in entry), lead=(zset,))

    @Op
    def set_filter(self, zset: str, cursor: str, scan_cap: int, want: int, jobtype: str,
                   queue: str, text: str, jid: str = ""
                   ) -> Call[tuple[str, int, list[tuple[bytes, str]]]]:
        """Scan ``zset`` from ``cursor`` for up to ``want`` matching entries, stopping after
        about ``scan_cap`` entries, or WEB_SET_SCAN if fewer (call again from the cursor).

        Returns (next cursor, '0' when the scan is complete; entries scanned; [(member, score)]).
        ``text`` matches case-insensitively; ``jid`` keeps the job with that jid.
        """
        return FF_WEB_SET_FILTER.call((), cursor, min(scan_cap, WEB_SET_SCAN), want, jobtype,
                                      queue, text.lower(), jid, lead=(zset,))

    @Op
    def queue_page(self, name: str, offset: int,
                   count: int) -> Call[tuple[int, list[tuple[int, bytes]]]]:
        """(size, [(priority, job), ...]) of up to ``count`` jobs of a queue from ``offset``
        on, in the order FETCH takes them: fewer once they pass about 256 KB (go on from
        offset + the jobs returned; ``web.bounded.queue_page`` does)."""
        return FF_WEB_QUEUE_PAGE.call((keys.queue(name),), name, offset, count)

    @Op
    def queue_types(self, name: str, offset: int,
                    count: int) -> Call[tuple[int, dict[str, int]]]:
        """(size, {job type: how many}) of up to ``count`` jobs (WEB_QUEUE_SCAN at most) of a
        queue from ``offset`` on in fetch order."""
        return FF_WEB_QUEUE_TYPES.call((keys.queue(name),), name, offset,
                                       min(count, WEB_QUEUE_SCAN))

    @Op
    def queue_filter(self, name: str, cursor: str, scan_cap: int, want: int, jid: str,
                     jobtype: str, text: str) -> Call[tuple[str, int, list[tuple[int, int, bytes]]]]:
        """Scan a queue newest first from ``cursor`` ('0' first) for up to ``want`` jobs with
        that jid, job type and text (any case; '' = any), stopping after ``scan_cap`` jobs, or
        WEB_QUEUE_SCAN if fewer (call again from the cursor).

        Returns (next cursor, '0' at the end of the queue; jobs scanned; [(priority, position
        in fetch order, job), ...]).
        """
        return FF_WEB_QUEUE_FILTER.call((keys.queue(name),), name, cursor,
                                        min(scan_cap, WEB_QUEUE_SCAN), want, jid, jobtype,
                                        text.lower())

    @Op
    def batch_of(self, jid: str, start: int) -> Call[tuple[int, str, str]]:
        """Look for the batch holding job ``jid`` among WEB_BATCH_LOOKUP batches, newest first
        from rank ``start``: (the rank to go on from, 0 when done; its bid, '' if not yet found;
        the job's state in it)."""
        return FF_WEB_BATCH_OF.call((), jid, start, WEB_BATCH_LOOKUP)

    @Op
    def reservation(self, jid: str) -> Call[bytes | None]:
        """The reservation record of job ``jid`` (in progress), None if it has none."""
        return Call(("HGET", keys.RESERVATIONS, jid), lambda reply: reply, keyed=1)

    @Op
    def queue_delete(self, name: str, priority: int, job: bytes, position: int,
                     half: str = "") -> Call[tuple[bool, tuple[int, str] | None]]:
        """Remove one occurrence of ``job`` from the queue's list of ``priority``, seen at
        ``position`` in fetch order, walking at most about half the list: (removed, None), or
        (False, (position, half)) to call again with."""
        return FF_WEB_QUEUE_DELETE.call((keys.queue_list(name, priority),), name, priority, job,
                                        position, half)

    @paged(concat)
    def queue_list(self, cursor: str) -> Call[tuple[str, list[tuple[str, int, bool, list[bytes]]]]]:
        """Every queue as (name, size, paused, [oldest job of each priority list])."""
        return FF_WEB_QUEUES.call((), cursor, PAGE // 4)  # ~20 Redis calls a queue

    @Op
    def daily_counts(self, days: Sequence[str]) -> Call[list[tuple[int, int]]]:
        """[(processed, failures), ...] for each ``YYYY-MM-DD`` in ``days``."""
        def decode(reply: Any) -> list[tuple[int, int]]:
            values = [int(v or 0) for v in reply]
            return list(zip(values[0::2], values[1::2]))
        names = [keys.daily(c, d) for d in days for c in (keys.PROCESSED, keys.FAILURES)]
        return Call(("MGET", *names), decode, keyed=len(names))

    @Op
    def redis_info(self) -> Call[dict[str, str]]:
        """Redis's full INFO as a dict of field -> text value."""
        def decode(reply: Any) -> dict[str, str]:
            out = {}
            for line in as_text(reply).splitlines():
                if line and not line.startswith("#") and ":" in line:
                    k, v = line.split(":", 1)
                    out[k] = v.strip()
            return out
        return Call(("INFO",), decode)

    @Op
    def redis_info_sections(self) -> Call[list[tuple[str, dict[str, str]]]]:
        """Redis's full INFO as [(section, {field: text value}), ...], in Redis's order."""
        def decode(reply: Any) -> list[tuple[str, dict[str, str]]]:
            sections: list[tuple[str, dict[str, str]]] = []
            for line in as_text(reply).splitlines():
                if line.startswith("# "):
                    sections.append((line[2:].strip(), {}))
                elif ":" in line and sections:
                    k, v = line.split(":", 1)
                    sections[-1][1][k] = v.strip()
            return sections
        return Call(("INFO",), decode)

    @Op
    def ping(self) -> Call[None]:
        """One bare round trip, timed by the web UI's debug page."""
        return Call(("PING",), as_none)

    @Op
    def server_processes(self) -> Call[int]:
        """How many server processes are in the connection registry (``ff:conns``)."""
        return Call(("HLEN", keys.CONNECTIONS), as_int, keyed=1)
