"""Workers and server processes (``lua/workers.lua``): the connection registry and the workers'
registry (HELLO, a connection's end, BEAT, quiet and terminate, reaping), and the task stats."""
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
    cursor_and,
    paged,
    pairs,
)


def _over(reply: Any) -> int | None:
    return reply or None


def _state(reply: Any) -> str | None:
    return as_text(reply) if reply else None


def _worker_page(reply: Any) -> tuple[str, list[dict[str, str]]]:
    return as_text(reply[0]), [{as_text(k): as_text(v) for k, v in pairs(h)} for h in reply[1] if h]


FF_HELLO = Fn("ff_hello", (keys.CONNECTIONS, keys.WORKER_BEATS), _over)
FF_BYE = Fn("ff_bye", (keys.CONNECTIONS, keys.WORKER_BEATS, keys.QUIET_WORKERS), as_none)
FF_BEAT = Fn("ff_beat", (keys.WORKER_BEATS, keys.QUIET_WORKERS), _state)
FF_SIGNAL = Fn("ff_signal", (keys.WORKER_BEATS, keys.QUIET_WORKERS), cursor_and)
FF_REAP_WORKERS = Fn("ff_reap_workers", (keys.WORKER_BEATS, keys.QUIET_WORKERS), as_int)
FF_PROCESS_GONE = Fn("ff_process_gone", (keys.CONNECTIONS, keys.COMMANDS), as_none)
FF_WORKERS = Fn("ff_workers", (keys.WORKER_BEATS,), _worker_page)
FF_QUIET_STATES = Fn("ff_quiet_states", (keys.QUIET_WORKERS,), cursor_and)
FF_QUIET_MIRROR = Fn("ff_quiet_mirror", (keys.QUIET_WORKERS,), as_none)


class WorkerOps:
    """The operations on workers and server processes."""

    @Op
    def hello(self, proc_id: str, max_conns: int, wid: str, hostname: str, pid: int,
              labels: bytes, v: int, now: str, addr: str = "") -> Call[int | None]:
        """Count an identified connection of server process ``proc_id`` (and register worker
        ``wid``): None, or the connection count that would pass ``max_conns`` (then nothing
        is counted). ``addr``: the client's address (shown on the Busy page)."""
        return FF_HELLO.call((keys.worker(wid),), proc_id, max_conns, wid, hostname, pid, labels, v,
                             now, addr)

    @Op
    def bye(self, proc_id: str, wid: str) -> Call[None]:
        """An identified connection closed; its worker goes with its last one."""
        return FF_BYE.call((keys.worker(wid),), proc_id, wid)

    @Op
    def beat(self, wid: str, now: str, state: str, rss_kb: int | None) -> Call[str | None]:
        """The worker's state after this heartbeat, or None for an unknown wid."""
        return FF_BEAT.call((keys.worker(wid),), wid, now, state, "" if rss_kb is None else rss_kb)

    @paged(sum)
    def signal_workers(self, cursor: str, state: str, wids: Sequence[str]
                       ) -> Call[tuple[str, int]]:
        """Quiet or terminate workers (``*`` = all); how many."""
        return FF_SIGNAL.call([keys.worker(w) for w in wids if w != "*"], state, cursor, PAGE,
                              *wids)

    @paged(sum)
    def reap_workers(self, more: str, cutoff: str) -> Call[tuple[str, int]]:
        """Forget workers whose last heartbeat is older than ``cutoff`` (PAGE a call); how
        many."""
        def reaped(reply: Any) -> tuple[str, int]:
            return ("1" if reply == PAGE else "0"), reply
        return Call(FF_REAP_WORKERS.args((), (cutoff, PAGE)), reaped)

    @paged(concat)
    def quiet_states(self, cursor: str) -> Call[tuple[str, list[bytes]]]:
        """The quiet and terminating workers: [wid, state, ...] (a page of PAGE a call)."""
        return FF_QUIET_STATES.call((), cursor, PAGE)

    @Op
    def mirror_quiet(self, ttl: int, first: bool, states: Sequence[bytes | str]) -> Call[None]:
        """Copy ``quiet_states``' [wid, state, ...] here, in a partition other than the home
        one (``first``: the copy starts over); each lasts ``ttl`` seconds unless copied again."""
        return FF_QUIET_MIRROR.call((), ttl, "1" if first else "", *states)

    @paged(concat)
    def workers(self, cursor: str) -> Call[tuple[str, list[dict[str, str]]]]:
        """Every registered worker as a dict of its fields."""
        return FF_WORKERS.call((), cursor, PAGE)

    @Op
    def count_commands(self, proc_id: str, n: int) -> Call[None]:
        return Call(("HINCRBY", keys.COMMANDS, proc_id, n), as_none, keyed=1)

    @Op
    def registered_processes(self) -> Call[list[str]]:
        """Ids of the server processes counted in the connection registry."""
        def ids(reply: Any) -> list[str]:
            return [as_text(i) for i in reply]
        return Call(("HKEYS", keys.CONNECTIONS), ids, keyed=1)

    @Op
    def process_gone(self, proc_id: str) -> Call[None]:
        return FF_PROCESS_GONE.call((), proc_id)

    @Op
    def set_task_stats(self, fields: dict[str, float]) -> Call[None]:
        args: list[Any] = []
        for k, v in fields.items():
            args += (k, repr(float(v)) if isinstance(v, float) else v)
        return Call(("HSET", keys.TASKS, *args), as_none, keyed=1)
