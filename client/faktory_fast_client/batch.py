"""Enterprise batches, in the Go client's shape (``client/batch.go``).

A batch groups jobs; when all have run the server pushes the ``complete`` callback job, and
when all have succeeded the ``success`` one (after ``complete`` has succeeded). Jobs join by
``custom.bid``, which :meth:`Batch.push` sets. Typical use::

    batch = client.new_batch(success=Job("AllDone", [order_id]), description="order 42")
    with batch.jobs():              # BATCH NEW now, BATCH COMMIT when the block ends
        for item in items:
            batch.push(Job("Ship", [item]))
"""
from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import BatchError
from .job import Job

if TYPE_CHECKING:
    from .aio import AsyncClient
    from .client import Client


@dataclass
class BatchStatus:
    """BATCH STATUS: counts and callback states (``""`` pending, ``"1"`` callback pushed,
    ``"2"`` callback succeeded)."""

    bid: str
    total: int = 0
    pending: int = 0
    failed: int = 0
    created_at: str = ""
    complete_st: str = ""
    success_st: str = ""
    parent_bid: str | None = None
    description: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchStatus:
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class BatchDefinition:
    """What BATCH NEW sends; ``bid`` is set by the server."""

    success: Job | None = None
    complete: Job | None = None
    description: str | None = None
    parent_bid: str | None = None
    bid: str = ""
    _state: str = field(default="new", repr=False)  # new -> open -> committed

    def to_dict(self) -> dict[str, Any]:
        if self.success is None and self.complete is None:
            raise BatchError("a batch needs a success or a complete callback job")
        out: dict[str, Any] = {"bid": ""}
        if self.success is not None:
            out["success"] = self.success.to_dict()
        if self.complete is not None:
            out["complete"] = self.complete.to_dict()
        if self.parent_bid:
            out["parent_bid"] = self.parent_bid
        if self.description:
            out["description"] = self.description
        return out

    def _check_open(self) -> None:
        if self._state == "new":
            raise BatchError("batch must be opened (created) before it can be used")
        if self._state == "committed":
            raise BatchError("batch has already been committed, open it again to add jobs")

    def _join(self, jobs: Iterable[Job]) -> list[Job]:
        self._check_open()
        joined = list(jobs)
        for job in joined:
            job.set_custom("bid", self.bid)
        return joined


class Batch(BatchDefinition):
    """A batch on a sync :class:`~faktory_fast_client.Client`."""

    def __init__(self, client: Client, **definition: Any) -> None:
        super().__init__(**definition)
        self._client = client

    def create(self) -> Batch:
        """BATCH NEW: the server gives the batch its bid (``self.bid``)."""
        self._client.batch_new(self)
        return self

    def push(self, job: Job) -> None:
        """Push ``job`` as a member of this batch (sets ``custom.bid``)."""
        [job] = self._join([job])
        self._client.push(job)

    def push_bulk(self, jobs: Iterable[Job]) -> dict[str, str]:
        """PUSHB the jobs as members of this batch; jid -> error for those refused."""
        return self._client.push_bulk(self._join(jobs))

    def commit(self) -> None:
        """BATCH COMMIT: the callbacks may fire from now on. Once per opening."""
        self._check_open()
        self._client.batch_commit(self.bid)
        self._state = "committed"

    def status(self) -> BatchStatus:
        """BATCH STATUS of this batch."""
        return self._client.batch_status(self.bid)

    def new_child(self, **definition: Any) -> Batch:
        """A batch definition whose parent is this batch (its callbacks fire first)."""
        return Batch(self._client, parent_bid=self.bid, **definition)

    @contextlib.contextmanager
    def jobs(self) -> Iterator[Batch]:
        """Create the batch if new, let the block push into it, commit when it ends without
        an exception (Go's ``Batch.Jobs``)."""
        if self._state == "new":
            self.create()
        self._check_open()
        yield self
        self.commit()


class AsyncBatch(BatchDefinition):
    """A batch on an :class:`~faktory_fast_client.AsyncClient`; the methods of :class:`Batch`,
    awaited."""

    def __init__(self, client: AsyncClient, **definition: Any) -> None:
        super().__init__(**definition)
        self._client = client

    async def create(self) -> AsyncBatch:
        await self._client.batch_new(self)
        return self

    async def push(self, job: Job) -> None:
        [job] = self._join([job])
        await self._client.push(job)

    async def push_bulk(self, jobs: Iterable[Job]) -> dict[str, str]:
        return await self._client.push_bulk(self._join(jobs))

    async def commit(self) -> None:
        self._check_open()
        await self._client.batch_commit(self.bid)
        self._state = "committed"

    async def status(self) -> BatchStatus:
        return await self._client.batch_status(self.bid)

    def new_child(self, **definition: Any) -> AsyncBatch:
        return AsyncBatch(self._client, parent_bid=self.bid, **definition)

    @contextlib.asynccontextmanager
    async def jobs(self) -> AsyncIterator[AsyncBatch]:
        if self._state == "new":
            await self.create()
        self._check_open()
        yield self
        await self.commit()
