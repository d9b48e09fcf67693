"""``faktory push``: one connection pushing sequentially (a web app enqueueing inside a request):
the PUSH round trip, from sending the line to reading ``+OK``, with bench's own client."""
from __future__ import annotations

import argparse
import gc
import os
import time
from datetime import UTC, datetime
from typing import Any

from .client import BenchError, Conn
from .common import Target, flush
from .latency import percentile
from .procstat import ServerMeter
from .resp import OK

NAME = "push"
HELP = "one connection pushing sequentially: PUSH round trip p50/p99 (bench's own client)"
BINARIES: list[str] = []
METRICS = [
    ("p50_us", "PUSH round trip p50 µs"),
    ("p90_us", "p90 µs"),
    ("p99_us", "p99 µs"),
    ("p999_us", "p99.9 µs"),
    ("max_us", "max µs"),
    ("mean_us", "mean µs"),
    ("pushes_per_s", "pushes/s"),
    ("client_cpu_us_per_push", "client CPU µs/push"),
    ("server_cpu_us_per_push", "server CPU µs/push"),
]

# Field order and values as faktory_worker_go / the Go client's NewJob marshal them.
PUSH_TMPL = (b'PUSH {"retry":25,"jid":"%s%08x","queue":"default","jobtype":"SomeJob",'
             b'"created_at":"%s","args":[1,"string",3]}\r\n')


def add_args(p: argparse.ArgumentParser) -> None:
    """Options of the scenario."""
    p.add_argument("-n", "--pushes", type=int, default=10000, help="measured pushes (default 10000)")
    p.add_argument("--warmup", type=int, default=500, help="pushes before measuring (default 500)")


def params(args: argparse.Namespace) -> dict[str, Any]:
    """Parameters recorded in the result JSON."""
    return {"pushes": args.pushes, "warmup": args.warmup, "client": "bench.client.Conn (one connection)"}


def run_once(args: argparse.Namespace, target: Target) -> dict[str, Any]:
    """FLUSH, then ``warmup`` + ``pushes`` PUSHes one after the other on one connection."""
    flush(target.endpoint)
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()
    prefix = os.urandom(4).hex().encode()
    lines = [PUSH_TMPL % (prefix, i, created) for i in range(args.warmup + args.pushes)]
    conn = Conn(target.endpoint)
    rtt: list[int] = []
    meter = ServerMeter(target.pids)
    call, clock = conn.call_raw, time.perf_counter_ns
    gc.disable()  # no collector pause inside a measured round trip
    try:
        for line in lines[:args.warmup]:
            if call(line) != OK:
                raise BenchError(f"PUSH: unexpected reply to {line!r}")
        meter.start()
        cpu0, t0 = os.times(), time.monotonic()
        for line in lines[args.warmup:]:
            start = clock()
            reply = call(line)
            rtt.append(clock() - start)
            if reply != OK:
                raise BenchError(f"PUSH: unexpected reply {reply!r}")
        elapsed, cpu1 = time.monotonic() - t0, os.times()
        meter.stop()
    finally:
        gc.enable()
        conn.close()
    rtt.sort()
    server_cpu = meter.cpu_s()
    return {
        "p50_us": percentile(rtt, 50) / 1000,
        "p90_us": percentile(rtt, 90) / 1000,
        "p99_us": percentile(rtt, 99) / 1000,
        "p999_us": percentile(rtt, 99.9) / 1000,
        "max_us": rtt[-1] / 1000,
        "mean_us": sum(rtt) / len(rtt) / 1000,
        "pushes_per_s": args.pushes / elapsed,
        "client_cpu_us_per_push": (cpu1.user - cpu0.user + cpu1.system - cpu0.system) / args.pushes * 1e6,
        "server_cpu_us_per_push": None if server_cpu is None else server_cpu / args.pushes * 1e6,
        **{key.replace(" ", "_") + "_us_per_push": c / args.pushes * 1e6 for key, c in meter.parts().items()},
    }
