"""``/metrics``: the server's state in Prometheus' text exposition format (version 0.0.4)."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from faktory_fast.job_metrics import BUCKETS_MS, summarize

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


def job_lines(totals: Mapping[str, str], top: int) -> list[str]:
    """``faktory_jobs_total`` and ``faktory_job_duration_seconds`` from the job metrics'
    lifetime totals (``store.job_metrics_total()``): by queue and job type, for the ``top``
    busiest job types (by executions, over all queues); the others' summed as job type
    "other"."""
    rows = summarize(totals)
    volume: dict[str, int] = {}
    for (_, jobtype), row in rows.items():
        volume[jobtype] = volume.get(jobtype, 0) + row.executions
    named = {t for t in sorted(volume, key=lambda t: (-volume[t], t))[:top] if t}
    merged: dict[tuple[str, str], list[Any]] = {}  # (queue, jobtype) -> [ok, failed, s, hist]
    for (queue, jobtype), row in sorted(rows.items()):
        label = jobtype if jobtype in named else "other"
        m = merged.setdefault((queue, label), [0, 0, 0.0, [0] * (len(BUCKETS_MS) + 1)])
        m[0] += row.executions - row.failures
        m[1] += row.failures
        m[2] += row.seconds
        m[3] = [a + b for a, b in zip(m[3], row.histogram or [])]
    lines = _metric("faktory_jobs_total", "counter",
                    "Reservations ended by queue and job type: outcome success (ACK) or failure "
                    "(FAIL, or expired).",
                    [({"jobtype": t, "queue": q, "outcome": o}, n)
                     for (q, t), m in merged.items()
                     for o, n in (("success", m[0]), ("failure", m[1]))])
    samples: list[tuple[str, dict[str, str], float]] = []
    for (q, t), (_, _, seconds, hist) in merged.items():
        labels = {"jobtype": t, "queue": q}
        seen = 0
        for bound, n in zip((*BUCKETS_MS, None), hist):
            seen += n
            le = "+Inf" if bound is None else f"{bound / 1000:g}"
            samples.append(("_bucket", {**labels, "le": le}, seen))
        samples += [("_sum", labels, seconds), ("_count", labels, seen)]
    name = "faktory_job_duration_seconds"
    lines += [f"# HELP {name} Seconds from reservation to ACK or FAIL, by queue and job type.",
              f"# TYPE {name} histogram"]
    for suffix, labels, value in samples:
        tag = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
        lines.append(f"{name}{suffix}{{{tag}}} {value:g}")
    return lines


def render(info: Mapping[str, Any], queues: list[tuple[str, int, bool, float]],
           batches: tuple[int, int] = (0, 0), job_totals: Mapping[str, str] | None = None,
           job_types: int = 100) -> str:
    """Prometheus text from the store's ``info()``, (name, size, paused, latency) per queue,
    (batches open, batch callbacks fired) (``store.batch_stats()``) and the job metrics'
    lifetime totals with the number of job types shown by name (``job_lines``)."""
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
    lines += job_lines(job_totals or {}, job_types)
    return "\n".join(lines) + "\n"
