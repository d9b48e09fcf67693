"""The web UI's reads over every partition of a deployment (``storage.partitions``).

A sorted set (retries, scheduled, dead) is one set a partition; the pages show them as one, in
the set's order: by score, then by member, as Redis orders the members of one score. Each
function here takes what one partition's read does (a callable) so that it is tested without
Redis; with one partition each does exactly the one read it wraps.
"""
from __future__ import annotations

import heapq
import re
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")

Entry = tuple[bytes, str]  # (member, score as Redis gave it)
#: set_page of one partition: (offset, count) -> (size, entries from offset on in score order;
#: up to count, fewer only at the end: ``bounded.set_page``).
PageReader = Callable[[int, int], tuple[int, list[Entry]]]
#: set_filter of one partition: (cursor, entries it may scan, matches wanted) -> (next
#: cursor, '0' at the end; entries scanned; matches): ``bounded.set_filter``.
FilterStep = Callable[[str, int, int], tuple[str, int, list[T]]]
#: A cursor over the partitions' scans: ``<partition>:<its cursor>``; a bare cursor is the
#: first partition's (and with one partition the only form: the same as a single Redis's).
CURSOR = re.compile(r"(?:(\d{1,4}):)?(\d+)", re.ASCII)


def order(entry: Entry) -> tuple[float, bytes]:
    """A set entry's place in the set: by score, then member (Redis' order within a score)."""
    return float(entry[1]), entry[0]


def merged_page(readers: Sequence[PageReader], offset: int,
                count: int) -> tuple[int, list[Entry]]:
    """(the sets' total size, ``count`` entries from ``offset`` on in the order of the union of
    the sorted sets that ``readers`` read, one a partition).

    Reading ``offset + count`` entries of every set would grow with the page number; instead
    the place of the page's first entry in each set is found with single-entry reads (the k-th
    entry of the union, by rounds: probe each set ``k // P`` entries on; the smallest probe and
    those before it in its set are all among the first k, so that set advances by that many:
    k shrinks by a P-th a round), then ``count`` entries are read from there in each set and
    merged. With one reader, the one read of it.
    """
    if len(readers) == 1:
        return readers[0](offset, count)
    sizes = [read(0, 0)[0] for read in readers] if offset else []
    starts = [0] * len(readers)
    left = min(offset, sum(sizes))
    while left > 0:
        live = [i for i in range(len(readers)) if starts[i] < sizes[i]]
        if not live:  # the sets shrank below the offset since their sizes were read
            break
        step = max(1, left // len(live))
        probes: list[tuple[tuple[float, bytes], int, int]] = []
        for i in live:
            n = min(step, sizes[i] - starts[i])
            size, got = readers[i](starts[i] + n - 1, 1)
            if not got:  # the set shrank since: probe it again as it is now
                sizes[i] = size
                continue
            probes.append((order(got[0]), i, n))
        if not probes:
            continue
        _, i, n = min(probes)
        starts[i] += n
        left -= n
    pages = [readers[i](starts[i], count) for i in range(len(readers))]
    total = sum(size for size, _ in pages)
    return total, list(heapq.merge(*(entries for _, entries in pages), key=order))[:count]


def parse_cursor(cursor: str, partitions: int) -> tuple[int, str]:
    """(partition, its scan cursor) of a cursor ``scan_partitions`` wrote (a bare one: the
    first partition's); ValueError if it is not one (or names no partition)."""
    match = CURSOR.fullmatch(cursor)
    if match is None or int(match.group(1) or 0) >= partitions:
        raise ValueError(f"bad cursor {cursor!r}")
    return int(match.group(1) or 0), match.group(2)


def scan_partitions(steps: Sequence[FilterStep[T]], cursor: str, scan_cap: int,
                    want: int) -> tuple[str, int, list[T]]:
    """A filter's scan over every partition in turn, from ``cursor`` (``parse_cursor``'s
    form): ``steps[p](its cursor, entries it may still scan, matches still wanted)`` scans
    partition p (``bounded.set_filter``'s result), from where the last left off, until
    ``want`` matches or ``scan_cap`` entries in all. (next cursor, '0' when every partition
    is done; entries scanned; matches.)"""
    part, at = parse_cursor(cursor, len(steps))
    scanned = 0
    found: list[T] = []
    while True:
        at, n, got = steps[part](at, scan_cap - scanned, want - len(found))
        scanned += n
        found += got
        if at == "0":
            if part + 1 == len(steps):
                return "0", scanned, found
            part += 1
        if scanned >= scan_cap or len(found) >= want:
            return (at if len(steps) == 1 else f"{part}:{at}"), scanned, found
