"""Compatibility: the server driven by the unmodified npm ``faktory-worker`` (4.7.x), mixed with the
Python libraries (``faktory``, ``pyfaktory``).

Node runs as subprocesses: ``tests/node/worker.js`` (a ``Worker`` printing one JSON line per job and
per quiet/stop/fail/exit) and ``tests/node/client.js`` (a ``Client`` running a list of operations,
one JSON result line each). Tests wait on those lines, never on the clock; only the server's own
scans (scheduled/retry) are polled in Redis.
"""
from __future__ import annotations

import json
import os
import queue as queue_mod
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import faktory
import pytest

from tests.deployments import on_each_deployment
from tests.integration.test_compat_python import (
    Recorder,
    counter,
    faktory_worker,
    flush,
    make_due,
    pyfaktory,
    pyfaktory_consumer,
    pyfaktory_producer,
    queue_size,
    raw,
    set_jobs,
    signal_worker,
    worker_registered,
)
from tests.support import ROOT, FaktoryServer, job, wait_for

# The protocol of this module, on a single Redis and on a Redis Cluster.
server = on_each_deployment()


NODE_DIR = os.path.join(ROOT, "tests", "node")
NODE = shutil.which("node")


def _node_ready() -> str | None:
    if NODE is None:
        return "node is not installed"
    if not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "faktory-worker")):
        return "faktory-worker not installed (cd tests/node && npm install)"
    return None


pytestmark = pytest.mark.skipif(_node_ready() is not None, reason=str(_node_ready()))


class NodeWorker:
    """tests/node/worker.js as a subprocess; its stdout JSON lines are read by a thread."""

    def __init__(self, **cfg: Any) -> None:
        self.cfg = cfg
        self.proc = subprocess.Popen([NODE, "worker.js", json.dumps(cfg)], cwd=NODE_DIR,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.output: list[str] = []
        self.events: list[dict] = []
        self._queue: queue_mod.Queue = queue_mod.Queue()
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.output.append(line)
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict) and "event" in obj:
                self.events.append(obj)
                self._queue.put(obj)
        self._queue.put(None)  # EOF

    def expect(self, event: str, timeout: float = 15, **match: Any) -> dict:
        """The next line of this event kind (others are skipped; all stay in .events)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=max(left, 0.001))
            except queue_mod.Empty:
                raise AssertionError(f"no {event!r} from node within {timeout} s; output:\n"
                                     + "\n".join(self.output)) from None
            if item is None:
                self._queue.put(None)
                raise AssertionError(f"node exited before {event!r}; output:\n" + "\n".join(self.output))
            if item["event"] == event and all(item.get(k) == v for k, v in match.items()):
                return item

    def quiet_for(self, event: str, within: float) -> bool:
        """True if no line of this kind arrives within ``within`` seconds."""
        try:
            self.expect(event, timeout=within)
        except AssertionError:
            return True
        raise AssertionError(f"unexpected {event!r} from node: {self.events[-1]}")

    def wait_exit(self, timeout: float = 20) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(10)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # the library's own trap: Worker.stop()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def start_node_worker(node_workers: list[NodeWorker], url: str, **cfg: Any) -> NodeWorker:
    cfg.setdefault("wid", uuid.uuid4().hex[:16])
    w = NodeWorker(url=url, **cfg)
    node_workers.append(w)
    w.expect("ready")
    return w


def node_client(url: str, *ops: dict, check: bool = True) -> list[dict]:
    """Run ops through tests/node/client.js; each returns {"ok":..,"result"|"error":..}."""
    done = subprocess.run([NODE, "client.js", json.dumps({"url": url, "ops": list(ops)})],
                          cwd=NODE_DIR, capture_output=True, text=True, timeout=30)
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(results) == len(ops), done.stdout + done.stderr
    if check:
        for r in results:
            assert r["ok"], f"{r}\n{done.stderr}"
    return results


@pytest.fixture(scope="module")
def password_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaktoryServer]:
    s = FaktoryServer(str(tmp_path_factory.mktemp("faktory-pw-node")), processes=2,
                      password="n0de:pw").start()
    yield s
    s.stop()


# ---------------------------------------------------------------------------------------------
# cross-language flow


def test_python_faktory_push_node_worker(srv: FaktoryServer, node_workers: list) -> None:
    jid = uuid.uuid4().hex
    with faktory.connection(srv.url) as client:
        assert client.queue("NodeOk", args=[1, "py", {"nested": [True, None]}], queue="nq",
                            jid=jid, custom={"from": "python"}, retry=3)
    w = start_node_worker(node_workers, srv.url, queues=["nq"])
    got = w.expect("job")
    assert got["jid"] == jid
    assert got["args"] == [1, "py", {"nested": [True, None]}]
    assert got["queue"] == "nq" and got["custom"] == {"from": "python"} and got["retry"] == 3
    wait_for(lambda: counter(srv, "processed") == 1)  # node's ACK
    assert queue_size(srv, "nq") == 0
    assert counter(srv, "failures") == 0


def test_node_push_pyfaktory_consumer(srv: FaktoryServer) -> None:
    [res] = node_client(srv.url, {"op": "job", "jobtype": "PyOk", "args": [1, "two", {"3": 4}],
                                  "custom": {"from": "node"}, "queue": "from-node"})
    jid = res["result"]
    r = srv.redis()
    try:
        [payload] = [json.loads(m) for m in r.lrange("q:from-node", 0, -1)]
    finally:
        r.close()
    assert payload["jid"] == jid and payload["custom"] == {"from": "node"}
    assert "priority" not in payload or payload["priority"] == 5  # node's default priority 5
    with pyfaktory_consumer(srv, queues=["from-node"]) as pc:
        assert pc.next_event() == ("ok", [1, "two", {"3": 4}])
        wait_for(lambda: counter(srv, "processed") == 1)


def test_node_push_bulk_processed_by_faktory_worker(srv: FaktoryServer) -> None:
    jobs = [{"jobtype": "FkOk", "args": [i], "queue": "bulk"} for i in range(3)]
    jobs.append({"jid": "short", "jobtype": "FkOk", "args": [], "queue": "bulk"})
    [res] = node_client(srv.url, {"op": "pushBulk", "jobs": jobs})
    assert res["result"] == {"short": "jobs must have a reasonable jid parameter"}
    ok = Recorder()
    with faktory_worker(srv.url, {"FkOk": ok}, queues=["bulk"]):
        calls = ok.wait_calls(3)
        wait_for(lambda: counter(srv, "processed") == 3)
    assert sorted(calls) == [(0,), (1,), (2,)]


def test_pyfaktory_push_node_worker_and_node_info(srv: FaktoryServer, node_workers: list) -> None:
    with pyfaktory_producer(srv.url) as producer:
        job_ = pyfaktory.Job(jobtype="NodeOk", args=["pf"], queue="mixed", reserve_for=120)
        assert producer.push(job_)
    [info] = node_client(srv.url, {"op": "info"})
    assert info["result"]["faktory"]["queues"]["mixed"] == 1
    w = start_node_worker(node_workers, srv.url, queues=["mixed"])
    assert w.expect("job")["jid"] == job_.jid
    wait_for(lambda: counter(srv, "processed") == 1)


# ---------------------------------------------------------------------------------------------
# failures


def test_node_worker_failure_retry_then_dead(srv: FaktoryServer, node_workers: list) -> None:
    jid = uuid.uuid4().hex
    with faktory.connection(srv.url) as client:
        assert client.queue("NodeFail", args=["x"], jid=jid, retry=1)
    w = start_node_worker(node_workers, srv.url)
    assert w.expect("job")["jid"] == jid
    assert w.expect("fail")["jid"] == jid  # emitted after the FAIL command got OK
    job_, score = set_jobs(srv, "retries")[jid]
    failure = job_["failure"]
    assert failure["errtype"] == "NodeBoom"  # node sends error.code as errtype
    assert failure["message"] == "node boom x"
    assert failure["backtrace"][0].startswith("Error: node boom x")
    assert failure["retry_count"] == 0 and failure["remaining"] == 1
    assert score > time.time() + 5

    make_due(srv, "retries", jid)
    again = w.expect("job", timeout=15)
    assert again["jid"] == jid and again["failure"]["retry_count"] == 0
    w.expect("fail")
    dead = set_jobs(srv, "dead")
    assert dead[jid][0]["failure"]["retry_count"] == 1
    assert set_jobs(srv, "retries") == {}
    assert counter(srv, "failures") == 2


def test_node_worker_unknown_jobtype_fails(srv: FaktoryServer, node_workers: list) -> None:
    c = srv.client()
    j = job("NobodyHere", retry=2)
    assert c.push(j) == "OK"
    w = start_node_worker(node_workers, srv.url)
    assert w.expect("fail")["jid"] == j["jid"]
    failure = set_jobs(srv, "retries")[j["jid"]][0]["failure"]
    assert failure["message"] == "No jobtype registered: NobodyHere"
    assert failure["errtype"] == "undefined"  # node: `${e.code}` of a plain Error


# ---------------------------------------------------------------------------------------------
# scheduled


def test_node_scheduled_job_runs_when_due(srv: FaktoryServer, node_workers: list) -> None:
    [res] = node_client(srv.url, {"op": "job", "jobtype": "NodeOk", "args": ["sched"],
                                  "atInMs": 1200})
    jid = res["result"]
    payload, score = set_jobs(srv, "scheduled")[jid]
    assert payload["at"].endswith("Z")  # Date.toISOString()
    assert score > time.time()
    w = start_node_worker(node_workers, srv.url)
    got = w.expect("job", timeout=15)
    assert time.time() >= score - 0.05
    assert got["jid"] == jid and got["args"] == ["sched"] and got["at"] == payload["at"]
    assert set_jobs(srv, "scheduled") == {}


# ---------------------------------------------------------------------------------------------
# quiet / terminate


def test_node_worker_quiet_then_terminate(srv: FaktoryServer, node_workers: list) -> None:
    wid = uuid.uuid4().hex[:16]
    w = start_node_worker(node_workers, srv.url, wid=wid, beatInterval=0.2)
    assert worker_registered(srv, wid)
    signal_worker(srv, wid, "quiet")
    w.expect("quiet", timeout=10)  # the BEAT reply {"state":"quiet"} reached Worker.quiet()
    with faktory.connection(srv.url) as client:
        assert client.queue("NodeOk", args=["q"])
    assert w.quiet_for("job", within=2.0)
    assert queue_size(srv, "default") == 1
    assert w.proc.poll() is None  # quiet is not stop

    signal_worker(srv, wid, "terminate")
    w.expect("stop", timeout=10)  # Worker.stop() via the BEAT reply {"state":"terminate"}
    assert w.wait_exit(20) == 0
    assert w.events[-1] == {"event": "exit", "code": 0}
    wait_for(lambda: not worker_registered(srv, wid))
    assert queue_size(srv, "default") == 1  # never fetched


def test_node_worker_terminate_while_running(srv: FaktoryServer, node_workers: list) -> None:
    wid = uuid.uuid4().hex[:16]
    w = start_node_worker(node_workers, srv.url, wid=wid, beatInterval=0.2)
    # straight from running, by a BEAT on another connection (the wid is looked up globally)
    c = srv.client()
    assert c.call("BEAT " + json.dumps({"wid": wid, "current_state": "terminate"})) \
        == '{"state":"terminate"}'
    w.expect("stop", timeout=10)
    assert w.wait_exit(20) == 0
    wait_for(lambda: not worker_registered(srv, wid))


# ---------------------------------------------------------------------------------------------
# pause / resume


def test_paused_queue_starves_node_worker_until_resumed(srv: FaktoryServer,
                                                         node_workers: list) -> None:
    [res] = node_client(srv.url, {"op": "job", "jobtype": "NodeOk", "args": ["p"], "queue": "np"})
    assert raw(srv, "QUEUE PAUSE np") == "OK"
    w = start_node_worker(node_workers, srv.url, queues=["np"])
    assert w.quiet_for("job", within=2.0)
    assert queue_size(srv, "np") == 1
    assert raw(srv, "QUEUE RESUME np") == "OK"
    assert w.expect("job")["jid"] == res["result"]


# ---------------------------------------------------------------------------------------------
# MUTATE through node's Mutation API


def _seed_retries(server: FaktoryServer, jobs: list[dict]) -> None:
    c = server.client()
    for j in jobs:
        assert c.push(j) == "OK"
    for _ in jobs:
        got = c.fetch("default")
        assert c.fail(got["jid"], "Oops", "seeded") == "OK"


def test_node_mutate(srv: FaktoryServer) -> None:
    a = job("MutA", retry=5)
    b = job("MutB", retry=5)
    c = job("MutB", retry=5, args=["uid:42"])
    _seed_retries(srv, [a, b, c])
    s1 = job("SchedA", at="2099-01-01T00:00:00Z")
    s2 = job("SchedB", at="2099-01-01T00:00:00Z")
    cl = srv.client()
    assert cl.push(s1) == "OK" and cl.push(s2) == "OK"

    res = node_client(
        srv.url,
        {"op": "mutate", "target": "retries", "cmd": "kill", "ofType": "MutA"},
        {"op": "mutate", "target": "retries", "cmd": "requeue", "ofType": "MutB",
         "matching": "*uid:42*"},
        {"op": "mutate", "target": "scheduled", "cmd": "discard", "withJids": [s1["jid"]]},
    )
    assert [r["result"] for r in res] == ["OK", "OK", "OK"]
    assert set(set_jobs(srv, "dead")) == {a["jid"]}
    assert set(set_jobs(srv, "retries")) == {b["jid"]}
    assert set(set_jobs(srv, "scheduled")) == {s2["jid"]}
    requeued = cl.fetch("default")
    assert requeued["jid"] == c["jid"] and requeued["args"] == ["uid:42"]
    assert cl.ack(c["jid"]) == "OK"

    res = node_client(
        srv.url,
        {"op": "mutate", "target": "dead", "cmd": "requeue", "withJids": [a["jid"]]},
        {"op": "mutate", "target": "retries", "cmd": "clear"},
        {"op": "mutate", "target": "scheduled", "cmd": "kill"},
    )
    assert [r["result"] for r in res] == ["OK", "OK", "OK"]
    assert set_jobs(srv, "retries") == {}
    assert set_jobs(srv, "scheduled") == {}
    assert set(set_jobs(srv, "dead")) == {s2["jid"]}
    assert cl.fetch("default")["jid"] == a["jid"]


# ---------------------------------------------------------------------------------------------
# password


def test_node_password(password_server: FaktoryServer, node_workers: list) -> None:
    flush(password_server)
    url = password_server.url  # tcp://:n0de:pw@...: node URL-unescapes; ':' is legal there
    assert "%" not in url
    [res] = node_client(url, {"op": "job", "jobtype": "NodeOk", "args": ["secret"]})
    with pyfaktory_producer(url) as producer:
        assert producer.push(pyfaktory.Job(jobtype="NodeOk", args=["from-pyfaktory"]))
    w = start_node_worker(node_workers, url)
    got = sorted(tuple(w.expect("job")["args"]) for _ in range(2))
    assert got == [("from-pyfaktory",), ("secret",)]
    assert res["result"]

    bad = f"tcp://:wrong@127.0.0.1:{password_server.port}"
    [res] = node_client(bad, {"op": "connect"}, check=False)
    assert not res["ok"] and "Invalid password" in res["error"]
