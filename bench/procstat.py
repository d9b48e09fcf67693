"""Server-side CPU and RSS from /proc, summed over a pid *tree* (master + forked workers + child redis)."""
from __future__ import annotations

import os
from collections.abc import Iterable

CLK_TCK = os.sysconf("SC_CLK_TCK")


def parse_pids(values: Iterable[str] | None) -> list[int]:
    """Flatten ``--server-pid 1,2 --server-pid 3`` into ``[1, 2, 3]``."""
    out: list[int] = []
    for v in values or ():
        out.extend(int(p) for p in v.split(",") if p.strip())
    return out


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode()
    except OSError:  # process gone
        return None
    # comm (field 2) may contain spaces and ')' — everything after the last ')' is fixed-format.
    return raw[raw.rindex(")") + 2:].split()


def tree(roots: Iterable[int]) -> list[int]:
    """``roots`` plus all their live descendants (walks the ppid links of every /proc/*/stat)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        f = _stat_fields(int(name))
        if f is not None:
            children.setdefault(int(f[1]), []).append(int(name))  # f[1] = ppid (field 4)
    seen: list[int] = []
    todo = [p for p in roots if os.path.exists(f"/proc/{p}")]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.append(p)
        todo.extend(children.get(p, ()))
    return seen


#: Process names counted as the server's Redis in the per-part split: the server itself and its
#: forked children (``redis-rdb-bgsave``, ``redis-aof-rewrite``: comm keeps 15 characters).
REDIS_PREFIXES = ("redis-", "valkey-", "keydb-")


def cpu_times(roots: Iterable[int]) -> dict[int, tuple[str, float, float]]:
    """(part, user s, system s) of every process in the tree, keyed by pid; part is "redis"
    for a Redis process, else "server". Each includes the CPU of the children it has reaped
    (a Redis's BGSAVE or AOF rewrite child that ended between two snapshots)."""
    out: dict[int, tuple[str, float, float]] = {}
    for pid in tree(roots):
        f = _stat_fields(pid)
        if f is None:
            continue
        try:
            with open(f"/proc/{pid}/comm") as c:
                part = "redis" if c.read().strip().startswith(REDIS_PREFIXES) else "server"
        except OSError:
            continue
        # fields 14-17: utime, stime, cutime, cstime
        out[pid] = (part, (int(f[11]) + int(f[13])) / CLK_TCK, (int(f[12]) + int(f[14])) / CLK_TCK)
    return out


def cpu_delta(before: dict[int, tuple[str, float, float]],
              after: dict[int, tuple[str, float, float]]) -> dict[str, float]:
    """CPU seconds used between two snapshots, as ``{"<part> user": s, "<part> sys": s}``;
    processes born in between count from zero. A process that ended in between has its whole
    CPU in its parent's (reaped children's) times by then, so its 'before' is taken off."""
    out: dict[str, float] = {}
    for pid, (part, user, system) in after.items():
        _, user0, system0 = before.get(pid, (part, 0.0, 0.0))
        out[part + " user"] = out.get(part + " user", 0.0) + user - user0
        out[part + " sys"] = out.get(part + " sys", 0.0) + system - system0
    for pid, (part, user0, system0) in before.items():
        if pid not in after:
            out[part + " user"] = out.get(part + " user", 0.0) - user0
            out[part + " sys"] = out.get(part + " sys", 0.0) - system0
    return out


def rss_kb(roots: Iterable[int]) -> int:
    """Sum of VmRSS (kB) over the tree."""
    total = 0
    for pid in tree(roots):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


class ServerMeter:
    """Snapshot server CPU before/after a measured window; no-op when no pids were given."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.before: dict[int, tuple[str, float, float]] = {}
        self.after: dict[int, tuple[str, float, float]] = {}

    def start(self) -> None:
        """Take the 'before' snapshot."""
        if self.pids:
            self.before = cpu_times(self.pids)

    def stop(self) -> None:
        """Take the 'after' snapshot."""
        if self.pids:
            self.after = cpu_times(self.pids)

    def cpu_s(self) -> float | None:
        """CPU seconds used by the server tree in the window, or None without pids."""
        return sum(self.parts().values()) if self.pids else None

    def parts(self) -> dict[str, float]:
        """CPU seconds by part and mode ("redis user", "server sys", ...); {} without pids."""
        return cpu_delta(self.before, self.after) if self.pids else {}

    def nprocs(self) -> int | None:
        """How many processes the tree had at the end."""
        return len(self.after) if self.pids else None
