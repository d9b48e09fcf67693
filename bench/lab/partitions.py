"""Queues over a Redis Cluster's partitions (``redis+cluster://...?partitions=N``) against the
same cluster layout with one partition: Faktory's load test, and the Redis calls of a FETCH
over queues of several partitions.

Starts two clusters of 3 primaries + 3 replicas (tests/cluster.py: run from the repository
root) with no persistence, a fresh ``faktory-fast -w :0`` on each (the first without
partitions, the second with ``--partitions``), then:

* ``bench load`` against both, alternating (``--rounds``), each server metered with every
  Redis process of its cluster (``--server-pid``): jobs/s and CPU per job, Redis's included;
  each cluster's primaries' CPU per job is printed too (from /proc).
* FETCH over 1, 3 and 10 queues whose neighbours are in different partitions, the job in the
  last queue (every queue before it is asked first) and in the first: Redis function calls
  per FETCH, from ``INFO commandstats`` of every primary.

``python -m bench.lab.partitions [--partitions 3] [-j 30000] [-t 100] [--rounds 3] [--out F]``
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from faktory_fast.storage import keys

from ..client import Conn, parse_faktory_url
from ..procstat import cpu_delta, cpu_times
from ..servers import free_port

FETCHES = 300  # FETCHes a round-trip measurement averages over


def _start_server(data: Path, redis_url: str) -> tuple[subprocess.Popen[bytes], str]:
    url = f"tcp://127.0.0.1:{free_port()}"
    proc = subprocess.Popen([sys.executable, "-m", "faktory_fast", "-b", url[len("tcp://"):],
                             "-w", ":0", "-d", str(data)],
                            env={**os.environ, "REDIS_URL": redis_url},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            Conn(parse_faktory_url(url)).close()
            return proc, url
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError(f"faktory-fast on {redis_url} did not start") from None
            time.sleep(0.1)


def _fcalls(cluster: Any) -> int:
    """Function calls so far, over the cluster's primaries."""
    total = 0
    for node in cluster.primaries():
        stats = node.info("commandstats")
        total += int(stats.get("cmdstat_fcall", {}).get("calls", 0))
    return total


def _commands(cluster: Any) -> dict[str, int]:
    """Commands run so far by name (inside functions too), over the cluster's primaries."""
    out: dict[str, int] = {}
    for node in cluster.primaries():
        for name, stats in node.info("commandstats").items():
            out[name[len("cmdstat_"):]] = out.get(name[len("cmdstat_"):], 0) + int(stats["calls"])
        reads = node.info("stats")["total_reads_processed"]
        out["(reads)"] = out.get("(reads)", 0) + int(reads)
    return out


def _alternating(count: int, length: int) -> list[str]:
    """``length`` queue names, each in another partition than the one before."""
    names: list[str] = []
    i = 0
    while len(names) < length:
        name = f"rt{i}"
        i += 1
        if not names or keys.partition_of(name, count) != keys.partition_of(names[-1], count):
            names.append(name)
    return names


def fetch_calls(conn: Conn, cluster: Any, queues: list[str], where: str) -> tuple[int, float]:
    """Redis function calls of FETCHes of ``queues`` whose ``where`` ('first' or 'last') queue
    holds the job (the others empty): the first FETCH's, and the mean of FETCHES more (the
    process then knows the queues before it empty). The jobs are ACKed afterwards."""
    target = queues[0] if where == "first" else queues[-1]
    conn.call("FLUSH")  # (forgotten: what any process knew of empty queues)
    for i in range(FETCHES + 1):
        conn.call("PUSH", json.dumps({"jid": f"rt-{where}-{len(queues)}-{i}", "jobtype": "T",
                                      "args": [], "queue": target}))
    jids = []
    before = _fcalls(cluster)
    jids.append(json.loads(conn.call("FETCH", " ".join(queues)))["jid"])
    first = _fcalls(cluster) - before
    before = _fcalls(cluster)
    jids += [json.loads(conn.call("FETCH", " ".join(queues)))["jid"] for _ in range(FETCHES)]
    calls = (_fcalls(cluster) - before) / FETCHES
    for jid in jids:
        conn.call("ACK", json.dumps({"jid": jid}))
    return first, calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("-j", "--jobs", type=int, default=30000)
    parser.add_argument("-t", "--threads", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=None, help="bench load's result JSON")
    args = parser.parse_args()
    # The checkout's cluster harness (run from the repository root; not type-checked here).
    running_cluster = importlib.import_module("tests.cluster").running_cluster

    conf = ["appendonly no", "save \"\""]
    with tempfile.TemporaryDirectory() as tmp, \
            running_cluster(Path(tmp, "one"), conf) as one, \
            running_cluster(Path(tmp, "many"), conf) as many:
        servers = [_start_server(Path(tmp, "s1"), one.url),
                   _start_server(Path(tmp, "s2"), f"{many.url}?partitions={args.partitions}")]
        try:
            conn = Conn(parse_faktory_url(servers[1][1]))
            for length in (1, 3, 10):
                queues = _alternating(args.partitions, length)
                for where in ("first", "last"):
                    first, calls = fetch_calls(conn, many, queues, where)
                    print(f"FETCH over {length} queues (neighbours in different partitions), "
                          f"the job in the {where}: {first} function calls, then "
                          f"{calls:.2f} each")
            conn.call("FLUSH")
            conn.close()
            pids = [[proc.pid, *(n.proc.pid for n in cluster.nodes)]
                    for (proc, _), cluster in zip(servers, (one, many))]
            primaries = [[n.proc.pid for n in cl.primaries()] for cl in (one, many)]
            before = [cpu_times(ps) for ps in primaries]
            counted = [_commands(cl) for cl in (one, many)]
            cmd = [sys.executable, "-m", "bench", "load", "-j", str(args.jobs), "-t",
                   str(args.threads), "--rounds", str(args.rounds),
                   "--url", servers[0][1], "--server-pid", ",".join(map(str, pids[0])),
                   "--compare", servers[1][1], "--pid2", ",".join(map(str, pids[1])),
                   "--label", f"partitions={args.partitions}"]
            if args.out:
                cmd += ["--out", args.out]
            subprocess.run(cmd, check=True)
            jobs = args.jobs * args.rounds
            for name, ps, b in zip(("1 partition", f"{args.partitions} partitions"), primaries,
                                   before):
                after = cpu_times(ps)
                each = [sum(cpu_delta({p: b[p]}, {p: after[p]}).values()) / jobs * 1e6
                        for p in ps]
                print(f"{name}: each primary's CPU, µs per job of the load test: "
                      + ", ".join(f"{x:.1f}" for x in each) + f" (sum {sum(each):.1f})")
            for name, cl, was in zip(("1 partition", f"{args.partitions} partitions"),
                                     (one, many), counted):
                now = _commands(cl)
                per = sorted(((n - was.get(c, 0)) / jobs, c) for c, n in now.items())[::-1]
                print(f"{name}: commands per job: {sum(x for x, _ in per):.2f}: "
                      + ", ".join(f"{c} {x:.2f}" for x, c in per[:16] if x >= 0.005))
        finally:
            for proc, _ in servers:
                proc.terminate()
                proc.wait(timeout=30)


if __name__ == "__main__":
    main()
