"""Data Faktory wrote, moved into this server's layout when the master starts
(``lua/migrations.lua``; ``master/migration.py`` runs them)."""
from __future__ import annotations

from typing import Any

from faktory_fast.storage import keys
from faktory_fast.storage.fcall import (
    Call,
    Fn,
    Op,
    Outcome,
    as_int,
    as_none,
    as_outcome,
    as_text,
    paged,
    pairs,
)

MIGRATE_PAGE = 2_000  # jobs of a Faktory 1.9 queue one migration call moves onto ours


FF_MIGRATE_RESERVATION = Fn("ff_migrate_reservation", (keys.WORKING, keys.RESERVATIONS), as_outcome)
FF_MIGRATE_QUEUE = Fn("ff_migrate_queue", (), as_int)


class MigrationOps:
    """The operations of the migration from Faktory's data."""

    @Op
    def legacy_reservations(self) -> Call[list[tuple[bytes, float]]]:
        """Faktory-format ``working`` members (reservation JSON) with scores, for migration."""
        def pick(flat: Any) -> list[tuple[bytes, float]]:
            return [(m, float(s)) for m, s in pairs(flat) if m[:1] == b"{"]
        return Call(("ZRANGE", keys.WORKING, 0, -1, "WITHSCORES"), pick, keyed=1)

    @Op
    def migrate_reservation(self, member: bytes, jid: str, record: bytes,
                            score: float) -> Call[Outcome]:
        """Replace a Faktory-format ``working`` entry by ours; GONE if it was not there."""
        return FF_MIGRATE_RESERVATION.call((), member, jid, record, repr(score))

    @paged(sum)
    def migrate_queue(self, more: str, name: str) -> Call[tuple[str, int]]:
        """Move Faktory 1.9's bare-named queue list to ``q:<name>``; the number of jobs moved
        (MIGRATE_PAGE a call onto an existing ``q:<name>``)."""
        def moved(reply: Any) -> tuple[str, int]:
            return ("1" if reply == MIGRATE_PAGE else "0"), reply
        return Call(FF_MIGRATE_QUEUE.args((name, keys.queue(name)), (MIGRATE_PAGE,)), moved)

    @Op
    def data_version(self) -> Call[int]:
        """Faktory's data-format version (the ``v`` key; 0 when absent)."""
        return Call(("INCRBY", keys.DATA_VERSION, 0), as_int, keyed=1)

    @Op
    def set_data_version(self, version: int) -> Call[None]:
        return Call(("SET", keys.DATA_VERSION, version), as_none, keyed=1)

    @Op
    def claim_layout(self, layout: str) -> Call[str]:
        """Record how the keys are spread over partitions (``partitions.layout_text``), unless
        a layout is recorded already: the recorded one (``layout`` if none was)."""
        return Call(("SET", keys.PARTITIONS, layout, "NX", "GET"),
                    lambda reply: layout if reply is None else as_text(reply), keyed=1)
