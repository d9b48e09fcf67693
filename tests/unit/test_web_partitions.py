"""web/partitioned.py: the merged paging and filtering of a sorted set kept one a partition,
over in-memory sets (no Redis): every page of the union in order, none lost or repeated."""
from __future__ import annotations

import random

import pytest

from faktory_fast.web import partitioned
from faktory_fast.web.partitioned import Entry


class FakeSet:
    """A partition's sorted set as ``bounded.set_page`` reads it: counting its reads."""

    def __init__(self, entries: list[Entry]) -> None:
        self.entries = sorted(entries, key=partitioned.order)
        self.reads: list[tuple[int, int]] = []

    def read(self, offset: int, count: int) -> tuple[int, list[Entry]]:
        self.reads.append((offset, count))
        return len(self.entries), self.entries[offset:offset + count]


def sets_of(sizes: list[int], seed: int, ties: bool = False) -> list[FakeSet]:
    """Sets of these sizes with scores in one range (a few equal when ``ties``)."""
    rng = random.Random(seed)
    sets = []
    for k, size in enumerate(sizes):
        entries = []
        for i in range(size):
            score = rng.randrange(20) if ties else rng.uniform(1.7e9, 1.7e9 + 1000)
            entries.append((f'{{"jid":"p{k}-{i:04d}"}}'.encode(), repr(float(score))))
        sets.append(FakeSet(entries))
    return sets


@pytest.mark.parametrize("sizes", [[0, 0, 0], [30, 0, 0], [0, 7, 80], [26, 26, 26], [200, 3, 91],
                                   [1, 1]])
@pytest.mark.parametrize("ties", [False, True])
def test_every_page_of_the_union_in_order(sizes: list[int], ties: bool) -> None:
    sets = sets_of(sizes, sum(sizes), ties)
    union = sorted((e for s in sets for e in s.entries), key=partitioned.order)
    seen: list[Entry] = []
    for offset in range(0, len(union) + 30, 25):
        total, page = partitioned.merged_page([s.read for s in sets], offset, 25)
        assert total == len(union)
        assert page == union[offset:offset + 25], offset
        seen += page
    assert seen == union  # nothing lost, nothing repeated


def test_a_deep_page_reads_single_entries_not_the_pages_before() -> None:
    sets = sets_of([5000, 5000, 5000], 7)
    union = sorted((e for s in sets for e in s.entries), key=partitioned.order)
    _, page = partitioned.merged_page([s.read for s in sets], 10_000, 25)
    assert page == union[10_000:10_025]
    for s in sets:
        assert max(count for _, count in s.reads) == 25  # the page itself; probes read 1
        assert len(s.reads) < 150  # about P log(offset) probes, not offset / 25 pages


def test_one_partition_is_the_one_read() -> None:
    [only] = sets_of([40], 1)
    assert partitioned.merged_page([only.read], 25, 25) == (40, only.entries[25:40])
    assert only.reads == [(25, 25)]


def test_a_set_that_shrank_under_the_offset_gives_an_empty_page() -> None:
    sets = sets_of([10, 10], 3)
    sizes = iter([10, 10])

    def shrunk(offset: int, count: int) -> tuple[int, list[Entry]]:
        if count == 0:
            return next(sizes), []
        return 2, sets[1].entries[:2][offset:offset + count]
    total, page = partitioned.merged_page([sets[0].read, shrunk], 15, 25)
    assert total == 12 and page == []


def scanner(entries: list[str], match: str):
    """A partition's filter step over ``entries``: ``scan`` of them a call (the cursor an
    index), as bounded.set_filter: until the end, the cap or the matches wanted."""
    def step(cursor: str, cap: int, want: int) -> tuple[str, int, list[str]]:
        at, scanned, found = int(cursor), 0, []
        while True:
            part = entries[at:at + 3]
            at, scanned = at + len(part), scanned + len(part)
            found += [e for e in part if match in e]
            if at >= len(entries) or scanned >= cap or len(found) >= want:
                return ("0" if at >= len(entries) else str(at)), scanned, found
    return step


def test_a_filter_scans_each_partition_in_turn_with_one_cursor() -> None:
    parts = [[f"p{k}-{i}-{'x' if i % 4 == 0 else 'y'}" for i in range(n)]
             for k, n in enumerate((10, 0, 17))]
    steps = [scanner(entries, "x") for entries in parts]
    cursor, found, calls = "0", [], 0
    while True:
        cursor, scanned, part = partitioned.scan_partitions(steps, cursor, 6, 100)
        assert scanned <= 6 + 3  # about the cap (a step's last read may pass it)
        found += part
        calls += 1
        if cursor == "0":
            break
        assert partitioned.parse_cursor(cursor, 3)[0] in (0, 1, 2)
    assert found == [e for entries in parts for e in entries if e.endswith("x")]
    assert calls > 3


def test_a_filter_over_one_partition_keeps_its_bare_cursor() -> None:
    step = scanner([f"e{i}" for i in range(10)], "e")
    assert partitioned.scan_partitions([step], "0", 100, 4) == ("6", 6, [f"e{i}" for i in range(6)])
    assert partitioned.scan_partitions([step], "6", 100, 40)[0] == "0"


@pytest.mark.parametrize("cursor", ["x", "3:0", "-1", "1:", ":5", "12345:1"])
def test_bad_cursors(cursor: str) -> None:
    with pytest.raises(ValueError):
        partitioned.parse_cursor(cursor, 3)
    assert partitioned.parse_cursor("2:77", 3) == (2, "77")
    assert partitioned.parse_cursor("77", 3) == (0, "77")
