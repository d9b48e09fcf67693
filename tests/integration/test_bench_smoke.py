"""Smoke test of the ``bench`` load-test harness (``python -m bench <scenario>``).

Each scenario runs with tiny sizes against a real faktory_fast server (password-protected, so
every run exercises the HELLO hash) and ``baseline`` against a real child Redis. ``bench faktory``
starts faktory_fast and Faktory 1.9.4 itself; its scenarios that need the Faktory binaries
(not in the repository, not in CI) are skipped without them. These prove the harness works; the
figures themselves are measured by hand (docs/performance.md).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from bench.client import Conn, parse_faktory_url, parse_redis_url, pwdhash
from bench.resp import OK, ErrorReply, encode_command, parse
from bench.servers import Floor
from faktory_fast.master.redis_child import RedisChild
from faktory_fast.storage.store import library_source
from tests.support import FaktoryServer, write_conf

ROOT = Path(__file__).resolve().parents[2]

PASSWORD = "smoke-pw"


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A real faktory_fast server with a password: (url, master pid)."""
    srv = FaktoryServer(str(tmp_path_factory.mktemp("bench")), processes=1, password=PASSWORD,
                        args=["--max-connections", "500"]).start()
    assert srv.proc is not None
    yield srv.url, srv.proc.pid
    srv.stop()


def bench(*args: str, out: Path, timeout: float = 60) -> dict[str, Any]:
    """Run ``python -m bench ARGS --out OUT`` from the repo root; return the result JSON."""
    res = subprocess.run([sys.executable, "-m", "bench", *args, "--out", str(out)], cwd=ROOT,
                         capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"stdout:\n{res.stdout}\nstderr:\n{res.stderr}"
    assert "results:" in res.stdout
    doc = json.loads(out.read_text())
    assert doc["scenario"] == args[0]
    assert doc["runs"] and doc["summary"][doc["runs"][0]["target"]]  # "first", or --ent's "plain"
    return doc


@pytest.fixture(scope="module")
def load_doc(server_url: tuple[str, int], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    url, pid = server_url
    out = tmp_path_factory.mktemp("load") / "load.json"
    return bench("load", "--url", url, "-j", "200", "-t", "4", "--server-pid", str(pid),
                 "--label", "processes=1", out=out)


def test_protocol_helpers() -> None:
    # Faktory's own test vectors (docs: shared faktory-reference.md §2).
    assert pwdhash("foobar", "55104dc76695721d", 1545) == \
        "6d877f8e5544b1f2598768f817413ab8a357afffa924dedae99eb91472d4ec30"
    assert pwdhash("foobar", "123456789abc", 1) == \
        "d30ae2acf55b9e6896725c3b4a2c1d26554ad2e1111c1b29056aa909f8260e39"
    ep = parse_faktory_url("tcp://:s3cret@example.test:7500")
    assert (ep.host, ep.port, ep.password, ep.redacted()) == ("example.test", 7500, "s3cret",
                                                              "tcp://:***@example.test:7500")
    assert parse_redis_url("unix:///tmp/r.sock").path == "/tmp/r.sock"
    assert parse(b"$-1\r\n") == (None, 5)
    assert parse(b"$3\r\nab") is None  # incomplete bulk
    assert parse(b"*2\r\n$1\r\nk\r\n$2\r\nvv\r\n") == ([b"k", b"vv"], 19)
    err = (parse(b"-ERR Invalid password\r\n") or (None, 0))[0]
    assert type(err) is ErrorReply and err == "ERR Invalid password"
    assert encode_command("INCR", "x") == b"*2\r\n$4\r\nINCR\r\n$1\r\nx\r\n"


def test_load(load_doc: dict[str, Any]) -> None:
    r = load_doc["summary"]["first"]
    p = load_doc["params"]
    assert (p["jobs"], p["threads"], p["fail_rate"]) == (200, 4, 0.01) and 1 <= p["procs"] <= 4
    assert load_doc["label"] == {"processes": 1}
    assert r["pushed"] == 200 and r["fetched"] == 200 and 0 <= r["failed"] < 200
    assert r["jobs_per_s"] > 0 and r["elapsed_s"] > 0
    assert 0 < r["client_cpu_us_per_job"] < 1e6
    assert r["server_cpu_us_per_job"] is not None and r["server_cpu_us_per_job"] >= 0
    assert r["server_procs"] == 3  # the master, its one server process and the child Redis
    parts = [r[f"{part}_{mode}_us_per_job"] for part in ("server", "redis") for mode in ("user", "sys")]
    assert min(parts) >= 0 and sum(parts) == pytest.approx(r["server_cpu_us_per_job"])  # one round


def test_load_ent_unique_against_plain(tmp_path: Path) -> None:
    """--ent: plain jobs and unique (or throttled) ones alternate on one server."""
    srv = FaktoryServer(str(tmp_path / "ff"), processes=1)
    write_conf(srv.data_dir, "throttles.toml", "[throttles]\n" + "".join(
        f"tqueue{i} = {{ concurrency = 2, timeout = 60 }}\n" for i in range(5)))
    srv.start()
    try:
        for kind in ("unique", "throttle"):
            doc = bench("load", "--url", srv.url, "-j", "100", "-t", "4", "--ent", kind,
                        out=tmp_path / f"{kind}.json")
            assert doc["params"]["ent"] == kind
            assert [r["target"] for r in doc["runs"]] == ["plain", kind]
            for name in ("plain", kind):
                assert doc["summary"][name]["fetched"] == 100
            assert doc["summary"]["ratio"]["jobs_per_s"] > 0
            # The last run was the Enterprise one: its traces are still in Redis.
            r = srv.redis()
            if kind == "unique":  # one lock per job, released at ACK (a failed job keeps it)
                assert len(r.keys("ff:uniq:*")) == doc["summary"]["unique"]["failed"]
            else:
                assert {q.decode() for q in r.smembers("queues")} == \
                    {f"tqueue{i}" for i in range(5)}
    finally:
        srv.stop()


def test_load_compare(server_url: tuple[str, int], tmp_path: Path) -> None:
    url, pid = server_url
    doc = bench("load", "--url", url, "-j", "100", "-t", "2", "--compare", url, "--pid2", str(pid),
                "--rounds", "2", out=tmp_path / "cmp.json")
    assert [(r["target"], r["round"]) for r in doc["runs"]] == \
        [("first", 0), ("second", 0), ("second", 1), ("first", 1)]
    assert doc["summary"]["ratio"]["jobs_per_s"] > 0
    assert doc["summary"]["second"]["server_cpu_us_per_job"] is not None
    # the ratio within each round, as well as the ratio of the medians
    runs = {(r["target"], r["round"]): r["jobs_per_s"] for r in doc["runs"]}
    assert doc["summary"]["ratio_by_round"]["jobs_per_s"] == pytest.approx(
        [runs["first", n] / runs["second", n] for n in (0, 1)])


def test_latency(server_url: tuple[str, int], tmp_path: Path) -> None:
    url, pid = server_url
    r = bench("latency", "--url", url, "-n", "50", "-w", "4", "--rate", "250", "--server-pid", str(pid),
              out=tmp_path / "lat.json")["summary"]["first"]
    assert r["received"] == 50 and r["lost"] == 0
    assert 0 <= r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] <= r["max_ms"] < 5000
    assert r["push_rate"] > 0


def test_pylibs(server_url: tuple[str, int], tmp_path: Path) -> None:
    """Every library pushes and works (each push checked in the queue by bench itself)."""
    url, pid = server_url
    res = subprocess.run([sys.executable, "-m", "bench", "pylibs", "--url", url, "--server-pid",
                          str(pid), "-j", "60", "--push-jobs", "40", "-c", "2", "--out",
                          str(tmp_path / "pylibs.json")], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, f"stdout:\n{res.stdout}\nstderr:\n{res.stderr}"
    assert "results:" in res.stdout
    doc = json.loads((tmp_path / "pylibs.json").read_text())
    assert doc["scenario"] == "pylibs"
    assert set(doc["summary"]) == {"faktory", "pyfaktory", "ffc", "ffc-async"}
    for lib, metrics in doc["summary"].items():
        assert set(metrics) == {"push 1", "push 10", "work 2"}, lib
        for figures in metrics.values():
            # CPU from /proc ticks (10 ms): a tiny run may show none
            assert figures["jobs_per_s"] > 0 and figures["client_cpu_us"] >= 0, lib
            assert figures["server_cpu_us"] is not None and figures["server_cpu_us"] >= 0, lib
    assert sum(f["server_cpu_us"] for m in doc["summary"].values() for f in m.values()) > 0
    assert set(doc["ratio"]) == {"ffc", "ffc-async"}


def test_bigjob(tmp_path: Path) -> None:
    """A 100 KB and a 1 MB nested unique job beside another client: their round trips, the
    other client's, and (--redis) the Redis CPU the big calls took."""
    srv = FaktoryServer(str(tmp_path / "srv"), processes=1).start()
    try:
        doc = bench("bigjob", "--url", srv.url, "--redis", "unix://" + srv.redis_socket,
                    out=tmp_path / "bigjob.json", timeout=120)
    finally:
        srv.stop()
    r = doc["summary"]["first"]
    assert all(r[f"{step}_ms_{size}"] > 0 for step in ("push", "fetch", "ack")
               for size in ("100k", "1m"))
    for step in ("push", "fetch", "ack"):  # ~0.3 and ~2 ms here
        assert 0 <= r[f"redis_{step}_ms_100k"] < 50 and 0 <= r[f"redis_{step}_ms_1m"] < 200
    assert 0 < r["other_base_p99_ms"] and 0 < r["other_p99_ms"] <= r["other_max_ms"]


def test_idle(server_url: tuple[str, int], tmp_path: Path) -> None:
    url, pid = server_url
    # -d 3: longer than one 2 s FETCH wait, so every loop gets replies
    r = bench("idle", "--url", url, "-n", "50", "-d", "3", "--server-pid", str(pid),
              out=tmp_path / "idle.json")["summary"]["first"]
    assert r["connected"] == 50 and r["failed"] == 0
    assert r["server_cpu_pct"] is not None and 0 <= r["server_cpu_pct"] < 400
    assert r["server_rss_kb_per_conn"] is not None and r["server_rss_mb_connected"] > 0
    assert r["fetch_replies_per_s"] > 0  # the loops really were FETCHing


def test_bulk(server_url: tuple[str, int], tmp_path: Path) -> None:
    url, pid = server_url
    r = bench("bulk", "--url", url, "-j", "2000", "--scheduled", "1000", "--at-delay", "1",
              "--server-pid", str(pid), out=tmp_path / "bulk.json")["summary"]["first"]
    assert r["jobs_per_s"] > 0 and r["elapsed_s"] > 0
    assert r["scheduled"] == 1000 and r["sched_acked"] == 1000
    assert r["sched_pushed_before_at"] is True
    assert 0 < r["sched_drain_s"] < 30 and r["sched_jobs_per_s"] > 0


def test_batch(server_url: tuple[str, int], tmp_path: Path) -> None:
    url, pid = server_url
    doc = bench("batch", "--url", url, "-j", "1000", "-b", "300", "--server-pid", str(pid),
                out=tmp_path / "batch.json")
    r = doc["summary"]["first"]
    assert r["batches"] == 4 and r["callbacks"] == 8  # complete and success of each batch
    assert r["plain_jobs_per_s"] > 0 and r["batch_jobs_per_s"] > 0
    assert r["ratio"] == pytest.approx(r["batch_jobs_per_s"] / r["plain_jobs_per_s"])
    assert r["batch_server_cpu_us_per_job"] is not None
    assert doc["params"]["batch_size"] == 300


def test_chart(load_doc: dict[str, Any], tmp_path: Path) -> None:
    files = []
    for n, scale in ((1, 1.0), (2, 1.8)):  # a second point, as if re-run with --label processes=2
        doc = json.loads(json.dumps(load_doc))
        doc["label"] = {"processes": n}
        doc["summary"]["first"]["jobs_per_s"] *= scale
        files.append(tmp_path / f"load-{n}.json")
        files[-1].write_text(json.dumps(doc))
    svg = tmp_path / "chart.svg"
    res = subprocess.run([sys.executable, "-m", "bench", "chart", *map(str, files), "-o", str(svg)],
                         cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    text = svg.read_text()
    assert text.startswith("<svg") and "<polyline" in text and text.count("<circle") == 2


def test_wrong_password_is_reported(server_url: tuple[str, int], tmp_path: Path) -> None:
    url, _ = server_url
    res = subprocess.run([sys.executable, "-m", "bench", "load", "--url", url.replace(PASSWORD, "nope"),
                          "-j", "10", "-t", "2", "--out", str(tmp_path / "x.json")],
                         cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert res.returncode == 1 and "Invalid password" in res.stderr


def test_installed_as_faktory_fast_bench(server_url: tuple[str, int], tmp_path: Path) -> None:
    """The install holds bench/ as ``faktory_fast.bench``, not as a top-level ``bench``; its
    ``faktory-bench`` command runs a scenario from any directory."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = ("import importlib.util as u; print(u.find_spec('bench') is None, "
            "u.find_spec('faktory_fast.bench.load').origin)")
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["True", str(ROOT / "bench" / "load.py")]

    url, _ = server_url
    command = Path(sys.executable).with_name("faktory-bench")
    res = subprocess.run([str(command), "load", "--url", url, "-j", "20", "-t", "2",
                          "--out", str(tmp_path / "load.json")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "load.json").read_text())["summary"]["first"]["fetched"] == 20


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A real Redis (the server's child-Redis launcher): (url, pid)."""
    child = RedisChild(str(tmp_path))
    child.start()
    assert child.proc is not None
    yield child.url, child.proc.pid
    child.stop()


def test_baseline(redis_url: tuple[str, int], tmp_path: Path) -> None:
    url, pid = redis_url
    doc = bench("baseline", "--redis", url, "-j", "500", "-t", "4", "--server-pid", str(pid),
                out=tmp_path / "base.json")
    r = doc["summary"]["first"]
    assert r["pushed"] == 500 and r["fetched"] == 500
    assert r["jobs_per_s"] > 0 and r["redis_ops_per_s"] > r["jobs_per_s"]
    assert r["server_cpu_us_per_job"] is not None



@pytest.mark.parametrize("extra", [[], ["--unique"], ["--floor", "--batch", "50"],
                                   ["--batch", "10", "--group"]])
def test_lua_cost(extra: list[str]) -> None:
    res = subprocess.run([sys.executable, "-m", "bench.lab.lua_cost", "-n", "200", *extra], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    costs = {line.rsplit(None, 2)[0]: float(line.split()[-2]) for line in res.stdout.splitlines()}
    floor = {"floor push", "floor fetch", "floor ack"} if "--floor" in extra else set()
    assert set(costs) == {"ff_push", "ff_fetch", "ff_ack", "fetch empty"} | floor
    assert all(0 < v < 10_000 for v in costs.values())


@pytest.mark.parametrize("tool, args, want", [
    ("metrics_memory", ["--types", "3"], r"3 job types, 3 histogram buckets each: \d+ keys"),
    ("web_metrics", ["--types", "3"], r"72h job type: median \d+ ms a request, \d+ reads"),
    ("web_find", ["--jobs", "3000"], r"find a jid that is nowhere: median \d+ ms"),
])
def test_web_and_metrics_labs(tool: str, args: list[str], want: str) -> None:
    res = subprocess.run([sys.executable, "-m", f"bench.lab.{tool}", *args], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert re.search(want, res.stdout), res.stdout


def test_lua_worst(tmp_path: Path) -> None:
    out = tmp_path / "worst.json"
    res = subprocess.run([sys.executable, "-m", "bench.lab.lua_worst", "--scale", "0.001",
                          "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, f"stdout:\n{res.stdout}\nstderr:\n{res.stderr}"
    doc = json.loads(out.read_text())
    # every function the library registers (read from its source), each with a figure
    names = set(re.findall(r"^(?:register|read_only)\('(\w+)'", library_source(), re.M))
    assert len(names) > 40 and set(doc["functions"]) == names == set(doc["registered"])
    for name, entry in doc["functions"].items():
        assert entry["input"] and entry["cases"], name
        assert all(len(c["ms"]) == 3 and 0 < c["worst_ms"] == max(c["ms"])
                   for c in entry["cases"]), name
        assert entry["worst_ms"] == max(c["worst_ms"] for c in entry["cases"]), name


# ---- bench faktory: both servers started by bench, the Go clients from the anchor binaries ----

ANCHOR_BIN = os.path.join(os.environ.get("ANCHOR") or "/tmp/anchor", "bin")
HAVE_ANCHOR = all(os.access(os.path.join(ANCHOR_BIN, n), os.X_OK)
                  for n in ("faktory", "faktory-load", "fwgo-drain")) and shutil.which("redis-server")
needs_anchor = pytest.mark.skipif(
    not HAVE_ANCHOR, reason=f"Faktory 1.9.4 anchor binaries (faktory, faktory-load, fwgo-drain) not in "
                            f"{ANCHOR_BIN}, or no redis-server on PATH: build them with "
                            f"/work/shared/anchor/build.sh (bench/README.md); CI has none")


def versus(tmp_path: Path, *args: str, timeout: float = 120) -> dict[str, Any]:
    """``python -m bench faktory ARGS`` with this interpreter's faktory_fast; the result JSON,
    after checking that every process of both servers is gone."""
    out = tmp_path / "vs.json"
    res = subprocess.run([sys.executable, "-m", "bench", "faktory", *args, "--out", str(out),
                          "--fast-python", sys.executable, "--anchor-bin", ANCHOR_BIN],
                         cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"stdout:\n{res.stdout}\nstderr:\n{res.stderr}"
    doc = json.loads(out.read_text())
    assert doc["scenario"] == f"faktory-{args[0]}"
    names = [args[args.index("--only") + 1]] if "--only" in args else ["faktory_fast", "faktory"]
    if "--floor" in args:
        names.append("floor")
    assert list(doc["servers"]) == names and list(doc["summary"])[:len(names)] == names
    assert ("ratio" in doc["summary"]) == (len(names) >= 2)
    if len(names) >= 2:
        assert "ratio = faktory_fast / faktory" in res.stdout
        # A B, then B A
        assert [(r["target"], r["round"]) for r in doc["runs"][:2]] == [("faktory_fast", 0), ("faktory", 0)]
    for name, info in doc["servers"].items():
        assert info["pids"] and set(info["pids"]) <= set(info["tree"])
        if name == "faktory_fast":
            assert info["hot_path"] in ("cython", "python") and len(info["tree"]) >= 3  # master, worker, Redis
        elif name == "floor":
            assert len(info["tree"]) == 2  # the floor server and its child Redis
        else:
            assert info["version"] == "Faktory 1.9.4" and len(info["tree"]) == 2  # faktory and its Redis
        left = [p for p in info["tree"] if os.path.exists(f"/proc/{p}")]
        assert not left, f"{name} processes still running after bench: {left}"
    return doc


def test_versus_skips_without_binaries(tmp_path: Path) -> None:
    empty = tmp_path / "no-anchor"
    empty.mkdir()
    for args, missing in ((["load"], "faktory, faktory-load"),
                          (["drain", "--only", "faktory_fast"], "faktory-load, fwgo-drain"),
                          (["push"], "faktory,")):
        out = tmp_path / "skipped.json"
        res = subprocess.run([sys.executable, "-m", "bench", "faktory", *args, "-j" if args[0] != "push" else "-n",
                              "300", "--anchor-bin", str(empty), "--out", str(out)],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        assert res.stdout.startswith("SKIPPED: bench faktory " + args[0]), res.stdout
        assert f"needs {missing}" in res.stdout and str(empty) in res.stdout and "build.sh" in res.stdout
        assert not out.exists()


def test_versus_push_fast_only(tmp_path: Path) -> None:
    # Needs no anchor binary: bench's own client against faktory_fast alone (runs in CI too).
    r = versus(tmp_path, "push", "--only", "faktory_fast", "-n", "300", "--warmup", "10",
               "--fast-args", "--processes 1")["summary"]["faktory_fast"]
    assert 0 < r["p50_us"] <= r["p90_us"] <= r["p99_us"] <= r["p999_us"] <= r["max_us"] < 1e6
    assert r["pushes_per_s"] > 0 and r["server_cpu_us_per_push"] is not None
    # what its Redis did per push: one FCALL (ff_push) each, read from the Redis in its -d
    assert 1 <= r["redis_commands_by_name_per_job"]["fcall"] < 1.2
    assert 0 < r["redis_reads_per_job"] and r["redis_commands_per_job"] >= 2  # FCALL, LPUSH


def test_floor_server_serves_a_job(tmp_path: Path) -> None:
    # bench's floor server (bench/lab/floor.py) through bench's own client: PUSH, FETCH, ACK, FLUSH.
    floor = Floor(sys.executable).start()
    try:
        conn = Conn(floor.endpoint)
        job = b'{"jid":"f1","queue":"low","jobtype":"SomeJob","args":[1]}'
        assert conn.call("PUSH", job) == OK
        assert conn.call("FETCH", "default low") == job
        assert conn.call("ACK", '{"jid":"f1"}') == OK
        assert conn.call("FLUSH") == OK
        assert conn.call_raw(b"NOPE\r\n") == ErrorReply("ERR unknown command")
        conn.close()
        family = floor.info["tree"]
    finally:
        floor.stop()
    assert isinstance(family, list) and not [p for p in family if os.path.exists(f"/proc/{p}")]


def test_floor_server_prefetching_keeps_the_queue_order(tmp_path: Path) -> None:
    # --prefetch: jobs taken from Redis several at a time, handed out in queue order.
    floor = Floor(sys.executable, ["--prefetch", "5"]).start()
    try:
        conn = Conn(floor.endpoint)
        pushed = {q: [b'{"jid":"%s%d","queue":"%s","jobtype":"J","args":[]}' % (q.encode(), n, q.encode())
                      for n in range(3)] for q in ("a", "b")}
        for q in ("a", "b"):
            for job in pushed[q]:
                assert conn.call("PUSH", job) == OK
        got = [conn.call("FETCH", "b a") for _ in range(6)]
        assert got == pushed["b"] + pushed["a"]  # FIFO within a queue, b before a
        assert conn.call("ACK", '{"jid":"b0"}') == OK
        conn.close()
    finally:
        floor.stop()


def test_floor_server_with_faktory_fasts_functions(tmp_path: Path) -> None:
    # --functions: the jobs go through jobs.prepare and ff_push/ff_fetch/ff_ack, so what Redis
    # holds is faktory_fast's data model (enqueued_at, the reservation record, the counters).
    floor = Floor(sys.executable, ["--functions"]).start()
    try:
        conn = Conn(floor.endpoint)
        assert conn.call("PUSH", '{"jid":"fn000001","queue":"low","jobtype":"J","args":[1]}') == OK
        assert conn.call_raw(b'PUSH {"jid":"x","jobtype":"J","args":[]}\r\n') == \
            ErrorReply("ERR jobs must have a reasonable jid parameter")
        job = json.loads(conn.call("FETCH", "default low"))
        assert job["jid"] == "fn000001" and job["enqueued_at"] and job["retry"] == 25
        with redis.Redis(unix_socket_path=os.path.join(floor.dir, "data", "redis.sock")) as r:
            assert r.hexists("ff:res", "fn000001") and r.zscore("working", "fn000001")
            assert conn.call("ACK", '{"jid":"fn000001"}') == OK
            assert not r.hexists("ff:res", "fn000001") and r.get("processed") == b"1"
        conn.close()
    finally:
        floor.stop()


def test_versus_push_floor_only(tmp_path: Path) -> None:
    # Needs no anchor binary: the floor server alone, as `--only floor` runs it.
    r = versus(tmp_path, "push", "--only", "floor", "-n", "300", "--warmup", "10")["summary"]["floor"]
    assert 0 < r["p50_us"] <= r["p99_us"] and r["server_cpu_us_per_push"] is not None


@needs_anchor
def test_versus_load_with_the_floor(tmp_path: Path) -> None:
    doc = versus(tmp_path, "load", "-j", "300", "-t", "10", "--floor")
    assert doc["summary"]["ratio floor"]["jobs_per_s"] > 0 and doc["summary"]["floor"]["pops"] >= 300


@needs_anchor
def test_versus_load(tmp_path: Path) -> None:
    doc = versus(tmp_path, "load", "-j", "300", "-t", "10")
    for name in ("faktory_fast", "faktory"):
        r = doc["summary"][name]
        assert r["jobs_per_s"] > 0 and r["pushes"] >= 300 and r["pops"] >= 300
        assert r["server_cpu_us_per_job"] is not None and r["client_cpu_us_per_job"] > 0
        # Faktory's Redis is its child: the split counts it as Redis
        assert r["server_procs"] == len(doc["servers"][name]["tree"])
        assert {"redis_user_us_per_job", "server_user_us_per_job"} <= set(r)
        assert r["redis_reads_per_job"] > 0 and r["redis_commands_per_job"] > 1
    # Faktory's LPUSH per PUSH, in its own Redis
    assert doc["summary"]["faktory"]["redis_commands_by_name_per_job"]["lpush"] >= 1
    assert doc["summary"]["ratio"]["jobs_per_s"] > 0


@needs_anchor
def test_versus_drain(tmp_path: Path) -> None:
    doc = versus(tmp_path, "drain", "-j", "300", "-c", "10")
    for name in ("faktory_fast", "faktory"):
        r = doc["summary"][name]
        assert r["processed"] == 300 and r["jobs_per_s"] > 0 and r["preload_jobs_per_s"] > 0
        assert r["server_cpu_us_per_job"] is not None


@needs_anchor
def test_versus_push(tmp_path: Path) -> None:
    doc = versus(tmp_path, "push", "-n", "300", "--warmup", "10")
    assert all(doc["summary"][n]["p50_us"] > 0 for n in ("faktory_fast", "faktory"))
    assert doc["summary"]["ratio"]["p99_us"] > 0


@needs_anchor
def test_versus_own_scenarios(tmp_path: Path) -> None:
    # bench's own scenarios against both servers, tiny
    r = versus(tmp_path, "bulk", "-j", "2000", "--scheduled", "300", "--at-delay", "1")["summary"]
    assert r["faktory"]["sched_acked"] == r["faktory_fast"]["sched_acked"] == 300
    r = versus(tmp_path, "latency", "-n", "50", "-w", "4", "--rate", "250")["summary"]
    assert r["faktory"]["received"] == r["faktory_fast"]["received"] == 50
    r = versus(tmp_path, "idle", "-n", "20", "-d", "2.5")["summary"]
    assert r["faktory"]["connected"] == r["faktory_fast"]["connected"] == 20


BURNER = r"""
import os, sys, time
def burn(s):
    end = time.process_time() + s
    while time.process_time() < end:
        pass
r, w = os.pipe()
pid = os.fork()
if pid == 0:                      # the child: 0.2 s of CPU before the window, 0.3 s in it
    burn(0.2)
    os.write(1, b"ready\n")
    os.read(r, 1)
    burn(0.3)
    os._exit(0)
sys.stdin.readline()              # the window has started
os.write(w, b"x")
os.waitpid(pid, 0)                # reaped: its CPU is now in our cutime/cstime
os.write(1, b"reaped\n")
sys.stdin.readline()
"""


def test_meter_counts_children_reaped_in_the_window() -> None:
    # A Redis's BGSAVE child that ends between two snapshots: its CPU in the window counts (via
    # the parent's reaped-children times), the CPU it had used before the window does not.
    from bench.procstat import ServerMeter
    with subprocess.Popen([sys.executable, "-c", BURNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        meter = ServerMeter([proc.pid])
        meter.start()
        assert len(meter.before) == 2  # the parent and its child
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == b"reaped\n"
        meter.stop()
        proc.stdin.close()
    assert len(meter.after) == 1
    cpu = meter.cpu_s()
    assert cpu is not None and 0.25 <= cpu <= 0.45, cpu


def _versus_fails(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``bench faktory ARGS`` with TMPDIR in ``tmp_path``; it must fail cleanly and leave
    no server directory behind (each server stopped)."""
    tmp = Path(tempfile.mkdtemp(prefix="bv", dir="/tmp"))  # short: a unix socket path has < 108 bytes
    res = subprocess.run([sys.executable, "-m", "bench", "faktory", *args, "--fast-python", sys.executable,
                          "--anchor-bin", ANCHOR_BIN, "--out", str(tmp_path / "x.json")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, env=dict(os.environ, TMPDIR=str(tmp)))
    try:
        assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
        assert list(tmp.iterdir()) == []
    finally:
        shutil.rmtree(tmp)
    assert not (tmp_path / "x.json").exists()
    return res


def test_versus_server_that_cannot_start(tmp_path: Path) -> None:
    res = _versus_fails(tmp_path, "push", "--only", "faktory_fast", "--fast-args", "--processes nope")
    assert "faktory_fast exited with code 2 while starting" in res.stderr and "--processes" in res.stderr


@needs_anchor
def test_versus_second_server_that_cannot_start(tmp_path: Path) -> None:
    # faktory_fast is up when Faktory fails: it is stopped too
    res = _versus_fails(tmp_path, "push", "--faktory-args=--no-such-flag")
    assert "faktory exited with code" in res.stderr
