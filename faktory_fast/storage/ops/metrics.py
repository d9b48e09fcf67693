"""Job metrics (``lua/metrics.lua``): a process's counts added, and read back by the web UI."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from faktory_fast.storage import keys
from faktory_fast.storage.fcall import Call, Fn, Op, as_int, as_text, pairs

FF_METRICS = Fn("ff_metrics", (keys.METRICS_TOTAL, keys.METRICS_PAIRS), as_int)


def _counts(reply: Any) -> dict[str, str]:
    return {as_text(k): as_text(v) for k, v in pairs(reply)}


class MetricsOps:
    """The operations of job metrics."""

    @Op
    def add_job_metrics(self, counts: Mapping[int, Mapping[str, str]], minute_ttl: int,
                        hour_ttl: int, max_pairs: int) -> Call[int]:
        """Add one process's counts: by unix minute, "<queue>|<jobtype>" -> its counts
        (``job_metrics.pack``), to their minute's and hour's buckets (kept ``minute_ttl`` and
        ``hour_ttl`` seconds) and to the lifetime totals (at most ``max_pairs`` pairs)."""
        item_keys: list[str] = []
        args: list[Any] = [minute_ttl, hour_ttl, max_pairs, len(counts)]
        for minute, fields in counts.items():
            item_keys += (keys.metrics_minute(minute), keys.metrics_hour(minute // 60))
            args.append(len(fields))
            for pair, packed in fields.items():
                args += (pair, packed)
        return FF_METRICS.call(item_keys, *args)

    @Op
    def job_metrics_total(self) -> Call[dict[str, str]]:
        """The lifetime totals: "<queue>|<jobtype>" -> its counts (``job_metrics.pack``)."""
        return Call(("HGETALL", keys.METRICS_TOTAL), _counts, keyed=1)

    @Op
    def job_metrics_bucket(self, key: str) -> Call[dict[str, str]]:
        """One minute's or hour's counts (``keys.metrics_minute``, ``keys.metrics_hour``)."""
        return Call(("HGETALL", key), _counts, keyed=1)

    @Op
    def job_metrics_fields(self, key: str, pairs: Sequence[str]) -> Call[dict[str, str]]:
        """The counts of some "<queue>|<jobtype>" pairs in one minute's or hour's bucket."""
        def decode(reply: Any) -> dict[str, str]:
            return {pair: as_text(v) for pair, v in zip(pairs, reply) if v is not None}
        return Call(("HMGET", key, *pairs), decode, keyed=1)
