"""The partitions of a deployment: one store per key layout (``keys.partition_tags``).

On a single Redis, and on a Redis Cluster by default, there is one partition and one store. A
cluster's URL may ask for more (``redis+cluster://...?partitions=N``): each partition is a
whole key layout under its own hash tag, on whichever primary serves that tag's slot, and
holds the queues that fall to it (``keys.partition_of``) with their scheduled, retried, dead
and reserved jobs, unique locks and throttles. The home partition (``keys.HOME``) also holds
what is not a queue's: processes, workers, batches, tracking, cron and job metrics. Every
function call still touches one slot; a command over queues of several partitions makes one
call in each (``runs``).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import orjson

from faktory_fast.storage import keys
from faktory_fast.storage.redis_url import parse_redis_url
from faktory_fast.storage.store import SyncStore

S = TypeVar("S")
T = TypeVar("T")


class Partitions(Generic[S]):
    """The stores (``store.AsyncStore`` or ``store.SyncStore``) of a deployment's partitions,
    in partition order: ``home`` first."""

    def __init__(self, stores: Sequence[S], pinned: dict[str, int] | None = None) -> None:
        self.stores = list(stores)
        self.home = self.stores[keys.HOME]
        self.count = len(self.stores)
        self.pinned = pinned or {}  # queue -> its partition, as the URL says (queue.NAME=K)

    def of(self, queue: str) -> S:
        """The store of the partition that holds ``queue``: the one the URL pins it to, else
        the one its name hashes to (``keys.partition_of``)."""
        if self.count == 1:
            return self.home
        k = self.pinned.get(queue)
        return self.stores[keys.partition_of(queue, self.count) if k is None else k]

    def of_job(self, job: bytes) -> S:
        """The store of the partition that holds a job (its JSON): its queue's."""
        if self.count == 1:
            return self.home
        queue = orjson.loads(job).get("queue") or "default"
        return self.of(queue if isinstance(queue, str) else "default")

    def runs(self, queues: Sequence[str]) -> list[tuple[S, list[str]]]:
        """``queues`` in their order, cut where the partition changes: (store, its queues) for
        each run of consecutive queues of one partition. A FETCH asks the runs in this order,
        so that Faktory's rule (the first queue with a job wins) holds across partitions."""
        if self.count == 1:
            return [(self.home, list(queues))]
        out: list[tuple[S, list[str]]] = []
        for q in queues:
            store = self.of(q)
            if out and out[-1][0] is store:
                out[-1][1].append(q)
            else:
                out.append((store, [q]))
        return out

    def by_store(self, items: Sequence[T], queue: Callable[[T], str]) -> list[tuple[S, list[T]]]:
        """``items`` (queue names, jobs...) grouped by the partition of their ``queue`` (each
        group in the given order)."""
        groups: dict[int, tuple[S, list[T]]] = {}
        for item in items:
            store = self.of(queue(item))
            groups.setdefault(id(store), (store, []))[1].append(item)
        return list(groups.values())


def tags_of(url: str) -> list[str]:
    """The hash tags of our keys' partitions in the Redis at ``url``: ``keys.partition_tags``
    on a cluster (one by default; ``?partitions=N``), [""] on a single Redis."""
    target = parse_redis_url(url)
    return keys.partition_tags(target["partitions"]) if "cluster" in target else [""]


def pinned_of(url: str) -> dict[str, int]:
    """The queues the URL places in a partition of its choosing (``queue.NAME=K``)."""
    return parse_redis_url(url).get("pinned", {})


def layout_text(url: str) -> str:
    """The layout of the URL's partitions, as the cluster records it (``claim_layout``): a
    node with another would look for queues where they are not."""
    pins = ",".join(f"{q}={k}" for q, k in sorted(pinned_of(url).items()))
    return f"{len(tags_of(url))}" + (f" {pins}" if pins else "")


def connect_sync(url: str) -> Partitions[SyncStore]:
    """A ``SyncStore`` for each partition of the Redis at ``url``, sharing one client (the web
    UI's, the tests' and tools')."""
    home = SyncStore.connect(url)
    tags = tags_of(url)
    return Partitions([home, *(SyncStore(home.client, tag) for tag in tags[1:])],
                      pinned_of(url))
