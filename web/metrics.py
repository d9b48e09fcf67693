"""``/metrics``: the server's state in Prometheus' text exposition format (version 0.0.4)."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _metric(name: str, kind: str, help_text: str,
            samples: Iterable[tuple[dict[str, str], float]]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        tag = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
        lines.append(f"{name}{{{tag}}} {value:g}" if tag else f"{name} {value:g}")
    return lines


def render(info: Mapping[str, Any], queues: list[tuple[str, int, bool, float]],
           batches: tuple[int, int] = (0, 0)) -> str:
    """Prometheus text from the store's ``info()``, (name, size, paused, latency) per queue and
    (batches open, batch callbacks fired) (``store.batch_stats()``)."""
    lines: list[str] = []
    lines += _metric("faktory_jobs_processed_total", "counter",
                     "Jobs processed (acknowledged or failed) since the data was created.",
                     [({}, info["processed"])])
    lines += _metric("faktory_jobs_failed_total", "counter", "Job failures since the data was created.",
                     [({}, info["failures"])])
    lines += _metric("faktory_jobs_expired_total", "counter",
                     "Expiring jobs discarded at FETCH since the data was created.",
                     [({}, info["expired"])])
    lines += _metric("faktory_queue_size", "gauge", "Jobs waiting in each queue.",
                     [({"queue": n}, size) for n, size, _, _ in queues])
    lines += _metric("faktory_queue_latency_seconds", "gauge",
                     "Seconds the oldest job of each queue has waited.",
                     [({"queue": n}, lat) for n, _, _, lat in queues])
    lines += _metric("faktory_queue_paused", "gauge", "1 if the queue is paused.",
                     [({"queue": n}, int(p)) for n, _, p, _ in queues])
    lines += _metric("faktory_set_size", "gauge", "Jobs in each sorted set.",
                     [({"set": s}, info[k]) for s, k in (("scheduled", "scheduled"),
                      ("retries", "retries"), ("dead", "dead"), ("working", "working"))])
    lines += _metric("faktory_connections", "gauge", "Open identified client connections.",
                     [({}, info["connections"])])
    lines += _metric("faktory_worker_processes", "gauge", "Registered worker processes.",
                     [({}, info["workers"])])
    lines += _metric("faktory_commands_total", "counter", "Commands served since start.",
                     [({}, info["commands"])])
    lines += _metric("faktory_batches_open", "gauge",
                     "Batches whose callbacks have not all succeeded (committed or not).",
                     [({}, batches[0])])
    lines += _metric("faktory_batch_callbacks_total", "counter", "Batch callback jobs enqueued.",
                     [({}, batches[1])])
    return "\n".join(lines) + "\n"
