"""What INFO (and the web UI's /stats and pages) report: the document and its parts.

Not on the hot path: INFO is rare, and the web UI imports this without the server's modules.
"""
from __future__ import annotations

import os
import resource
import time
from typing import TYPE_CHECKING, Any

import orjson

from faktory_fast import FAKTORY_VERSION, jobs

if TYPE_CHECKING:
    from faktory_fast.storage.ops.queues import Info


def latency(heads: list[bytes], now_ns: int) -> float | int:
    """Seconds the oldest of these jobs has waited since ``enqueued_at`` (0 if none)."""
    best = 0.0
    for raw in heads:
        try:
            enq = orjson.loads(raw).get("enqueued_at")
            best = max(best, (now_ns - jobs.parse_rfc3339(enq)) / 1e9)
        except (ValueError, AttributeError, TypeError):
            continue
    return best if best > 0 else 0


def rss_bytes() -> int:
    """This process's resident memory (its peak where /proc cannot be read)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # peak, in KiB on Linux


def info_document(state: Info, started_at: float, local_commands: int = 0) -> dict[str, Any]:
    """INFO's JSON (also the web UI's /stats), from the store's ``info()``; ``local_commands``:
    commands this process dispatched that are not counted in Redis yet."""
    now_ns = time.time_ns()
    queues = dict(sorted(state["queues"].items()))
    tasks = state["tasks"]

    def task(name: str, *fields: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields:
            v = tasks.get(f"{name}.{f}", 0)
            out[f] = v if f == "wall_time_sec" else int(v)
        return out

    busy = task("Busy", "reaped")
    busy["size"] = state["working"]
    workers = task("Workers", "reaped")
    workers["size"] = state["workers"]
    sets = {"dead": state["dead"], "retries": state["retries"], "scheduled": state["scheduled"]}
    scanners = {}
    for name, key in (("Dead", "dead"), ("Retries", "retries"), ("Scheduled", "scheduled")):
        t = task(name, "cycles", "enqueued")
        t["size"] = sets[key]
        t["wall_time_sec"] = tasks.get(f"{name}.wall_time_sec", 0.0)
        scanners[name] = t
    return {
        "now": jobs.rfc3339(now_ns),
        "server_utc_time": time.strftime("%H:%M:%S UTC", time.gmtime(now_ns // 1_000_000_000)),
        "faktory": {
            "queues": queues,
            "sets": {**sets, "working": state["working"]},
            "tasks": {"Busy": busy, **scanners, "Workers": workers},
            "total_failures": state["failures"],
            "total_processed": state["processed"],
            "total_enqueued": sum(queues.values()),
            "total_queues": len(queues),
            "total_expired": state["expired"],  # Enterprise: expiring jobs discarded at FETCH
        },
        "server": {
            "description": "Faktory",
            "faktory_version": FAKTORY_VERSION,
            "uptime": int(time.time() - started_at),
            "connections": state["connections"],
            "command_count": state["commands"] + local_commands,
            "used_memory_mb": rss_bytes() // (1024 * 1024),
        },
    }
