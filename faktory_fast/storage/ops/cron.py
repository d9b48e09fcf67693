"""Cron (``lua/cron.lua``): the master's cron task's pushes, its table and its watermark."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from faktory_fast.jobs import JobError, Prepared
from faktory_fast.storage import keys
from faktory_fast.storage.fcall import Call, Fn, Op, as_text, pairs
from faktory_fast.storage.ops.ent import FF_REPLACE_HASH
from faktory_fast.storage.ops.jobs import hooks_of, queue_keys


def _cron_pushed(reply: Any) -> bool | JobError:
    """ff_cron_push: True (pushed), False (another process or node pushed this tick) or the
    refusal (a unique cron job whose previous run still holds the lock)."""
    if type(reply) is int:
        return bool(reply)
    return JobError.from_line(reply)


FF_CRON_PUSH = Fn("ff_cron_push", (keys.SCHEDULED, keys.QUEUES, keys.PRIORITY_QUEUES,
                                   keys.CRON_LAST), _cron_pushed)
FF_CRON_SEEN = Fn("ff_cron_seen", (keys.CRON_SEEN,), as_text)


class CronOps:
    """The operations of cron."""

    @Op
    def cron_push(self, entry: str, tick: int, claim_ttl: int, job: Prepared,
                  claim: bool = True) -> Call[bool | JobError]:
        """Push cron entry ``entry``'s job for ``tick`` unless some process or node already
        did (``claim`` False: push regardless, "enqueue now"). True if pushed here, False if
        it was pushed elsewhere, or the JobError that refused it."""
        claim_key = keys.cron_claim(entry, tick) if claim else ""
        item_keys = queue_keys(job.queue, job.priority) + ((claim_key,) if claim_key else ())
        return FF_CRON_PUSH.call(item_keys, claim_key, claim_ttl, entry, tick, job.queue,
                                 job.priority, job.payload, job.at_score, hooks_of(job))

    @Op
    def set_cron_entries(self, entries: Sequence[Any]) -> Call[int]:
        """Replace the cron table (``cron.CronEntry`` objects) the web UI shows."""
        args: list[Any] = []
        for e in entries:
            args += (e.id, orjson.dumps({"schedule": e.schedule, "job": e.job,
                                         "source": e.source}))
        return FF_REPLACE_HASH.call((), *args, lead=(keys.CRON_ENTRIES,))

    @Op
    def cron_entries(self) -> Call[dict[str, dict[str, Any]]]:
        """The cron table as the master published it: entry id -> {schedule, job, source}."""
        def decode(reply: Any) -> dict[str, dict[str, Any]]:
            return {as_text(k): orjson.loads(v) for k, v in pairs(reply)}
        return Call(("HGETALL", keys.CRON_ENTRIES), decode, keyed=1)

    @Op
    def cron_seen(self, now: int) -> Call[str]:
        """Move the cluster-wide cron watermark forward to ``now``; the previous one ('' if
        none)."""
        return FF_CRON_SEEN.call((), now)

    @Op
    def cron_last(self) -> Call[dict[str, tuple[int, str]]]:
        """Each cron entry's last push: entry id -> (tick, jid)."""
        def decode(reply: Any) -> dict[str, tuple[int, str]]:
            out = {}
            for k, v in pairs(reply):
                tick, _, jid = as_text(v).partition(" ")
                out[as_text(k)] = (int(tick), jid)
            return out
        return Call(("HGETALL", keys.CRON_LAST), decode, keyed=1)
