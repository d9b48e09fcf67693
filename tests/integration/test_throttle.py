"""Enterprise queue throttling over the wire: conf.d [throttles] (docs/enterprise.md)."""
from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from faktory_fast.config import ConfigError
from tests.support import (
    Client,
    FaktoryServer,
    clients_on_distinct_processes,
    job,
    load_config,
    serving_pid,
    two_nodes,
    wait_for,
    write_conf,
)

THROTTLES = """
[throttles]
limited = { concurrency = 2, timeout = 60 }
single = { concurrency = 1, timeout = 60 }
perworker = { worker = 1, timeout = 60 }
short = { concurrency = 1, timeout = 1 }
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaktoryServer]:
    """This module's server: 2 processes, with THROTTLES."""
    srv = FaktoryServer(str(tmp_path_factory.mktemp("throttle")), processes=2)
    write_conf(srv.data_dir, "throttles.toml", THROTTLES)
    srv.start()
    yield srv
    srv.stop()


def fill(client: Client, queue: str, n: int) -> list[str]:
    jids = []
    for i in range(n):
        j = job(args=[i], queue=queue)
        assert client.push(j) == "OK"
        jids.append(j["jid"])
    return jids


def usage(srv: FaktoryServer) -> dict[str, Any]:
    return {t.queue: t for t in srv.store().throttle_usage()}


def test_concurrency_limit_skips_to_the_next_queue(srv: FaktoryServer, client: Client) -> None:
    fill(client, "limited", 4)
    other = fill(client, "other", 2)
    first, second = client.fetch("limited"), client.fetch("limited")
    assert first["queue"] == second["queue"] == "limited"
    # Full: the FETCH takes from the next queue instead.
    assert client.fetch("limited", "other")["jid"] == other[0]
    assert usage(srv)["limited"][4:] == (2, 0, 2)  # in use, workers, waiting
    assert client.ack(first["jid"]) == "OK"
    assert client.fetch("limited", "other")["queue"] == "limited"
    # FAIL releases too.
    assert client.fail(second["jid"]) == "OK"
    assert client.fetch("limited", "other")["queue"] == "limited"
    assert client.fetch("limited", "other")["jid"] == other[1]


def test_full_throttle_answers_nil_after_the_wait(client: Client) -> None:
    fill(client, "single", 2)
    assert client.fetch("single")["queue"] == "single"
    t0 = time.monotonic()
    assert client.fetch("single") is None
    assert time.monotonic() - t0 >= 1.5  # Faktory's 2 s blocking FETCH


def test_release_wakes_a_waiting_fetch(srv: FaktoryServer) -> None:
    a, b = clients_on_distinct_processes(srv, 2)
    fill(a, "single", 2)
    running = a.fetch("single")
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append((b.fetch("single"), time.monotonic())))
    waiter.start()
    time.sleep(0.3)  # let b's FETCH find the throttle full and park
    acked = time.monotonic()
    assert a.ack(running["jid"]) == "OK"
    waiter.join(5)
    job_, at = got[0]
    assert job_ is not None and job_["queue"] == "single"
    assert at - acked < 1.0  # woken by the release, not by the 2 s deadline


def test_push_is_not_handed_to_a_fetch_parked_on_a_full_throttle(srv: FaktoryServer) -> None:
    """A PUSH hands its job to a FETCH parked in the same process (ff_push_to), but not past
    a full throttle."""
    by_pid: dict[int, list[Client]] = {}
    while not any(len(v) == 2 for v in by_pid.values()):
        c = srv.client()
        by_pid.setdefault(serving_pid(c, srv), []).append(c)
    waiter, pusher = next(v for v in by_pid.values() if len(v) == 2)
    holder = srv.client()
    fill(holder, "single", 1)
    running = holder.fetch("single")
    got: list[Any] = []
    parked = threading.Thread(target=lambda: got.append(waiter.fetch("single")))
    parked.start()
    time.sleep(0.3)  # let the FETCH find the throttle full and park
    fill(pusher, "single", 1)
    parked.join(5)
    assert got == [None]  # the throttle held: nothing handed over
    assert holder.ack(running["jid"]) == "OK"
    assert waiter.fetch("single")["queue"] == "single"


def test_worker_limit_is_per_wid(srv: FaktoryServer) -> None:
    w1, w2 = srv.client(wid="thr-w1"), srv.client(wid="thr-w2")
    fill(w1, "perworker", 3)
    filler = fill(w1, "other", 1)
    held = w1.fetch("perworker")
    assert held["queue"] == "perworker"
    assert w1.fetch("perworker", "other")["jid"] == filler[0]  # w1 is at its limit
    assert w2.fetch("perworker")["queue"] == "perworker"  # w2 is not
    assert usage(srv)["perworker"][4:] == (2, 2, 1)
    assert w1.ack(held["jid"]) == "OK"
    assert w1.fetch("perworker")["queue"] == "perworker"
    # A wid that needs escaping in the reservation record: its lock is released all the same.
    odd = srv.client(wid='thr/"w3')
    fill(w1, "perworker", 1)
    got = odd.fetch("perworker")
    assert usage(srv)["perworker"].in_use == 3
    assert odd.ack(got["jid"]) == "OK"
    assert usage(srv)["perworker"].in_use == 2


def test_timeout_frees_a_lock_nobody_released(client: Client) -> None:
    fill(client, "short", 2)
    assert client.fetch("short")["queue"] == "short"  # never ACKed: its worker "vanished"
    fill(client, "other", 1)
    assert client.fetch("short", "other")["queue"] == "other"
    time.sleep(1.1)  # the throttle's own timeout (1 s) must pass
    assert client.fetch("short")["queue"] == "short"


def test_a_lapsed_lock_wakes_a_waiting_fetch(srv: FaktoryServer, client: Client) -> None:
    """A lock that lapses by its timeout (its job outran it) frees a place: a FETCH that found
    the throttle full is woken for it (by the reaper, every second), not left to trust "empty"
    for the 10 s a process otherwise does."""
    fill(client, "short", 2)
    assert client.fetch("short")["queue"] == "short"  # never ACKed; its lock lapses within 1 s
    waiter = srv.client()
    t0 = time.monotonic()
    got = waiter.fetch("short")  # the throttle is full: it waits
    while got is None and time.monotonic() - t0 < 15:
        got = waiter.fetch("short")
    assert got is not None and got["queue"] == "short"
    assert time.monotonic() - t0 < 4.0


def test_cluster_wide_limit_across_processes_and_nodes(tmp_path: Any) -> None:
    """16 workers on 2 nodes x 2 processes FETCH at once: only `concurrency` get a job."""
    with two_nodes(str(tmp_path), processes=2, conf=THROTTLES) as (a, b):
        clients = [*clients_on_distinct_processes(a, 2), *clients_on_distinct_processes(b, 2)]
        clients += [node.client() for node in (a, b) for _ in range(6)]
        fill(clients[0], "limited", 20)
        fill(clients[0], "other", 20)
        start = threading.Barrier(len(clients))
        got: list[str] = []

        def fetch(c: Client) -> None:
            start.wait()
            got.append(c.fetch("limited", "other")["queue"])
        threads = [threading.Thread(target=fetch, args=(c,)) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert got.count("limited") == 2 and got.count("other") == len(clients) - 2


def test_a_node_whose_tables_differ_from_anothers_says_so(tmp_path: Any) -> None:
    """Nodes on one Redis share one throttle table (the last written wins): a node that finds
    another node's different table there says so when it writes its own."""
    other = THROTTLES.replace("concurrency = 2", "concurrency = 3")
    warning = "Another node on this Redis"
    with two_nodes(str(tmp_path / "differ"), processes=1, conf=(THROTTLES, other)) as (a, b):
        told = [line for line in b.lines if warning in line]
        assert len(told) == 1 and "must share their conf.d" in told[0]
        assert not [line for line in a.lines if warning in line]  # it wrote first
    with two_nodes(str(tmp_path / "same"), processes=1, conf=THROTTLES) as (a, b):
        assert not [line for line in a.lines + b.lines if warning in line]
    # One node restarted with a changed conf.d is no other node.
    srv = FaktoryServer(str(tmp_path / "one"), processes=1)
    write_conf(srv.data_dir, "throttles.toml", THROTTLES)
    srv.start()
    srv.stop()
    write_conf(srv.data_dir, "throttles.toml", other)
    srv.start()
    try:
        assert usage(srv)["limited"].limit == 3  # it wrote its new table
        assert not [line for line in srv.lines if warning in line]
    finally:
        srv.stop()


def test_sighup_reloads_the_throttles(tmp_path: Any) -> None:
    srv = FaktoryServer(str(tmp_path / "ff"), processes=2)
    write_conf(srv.data_dir, "throttles.toml", "[throttles]\nq = { concurrency = 1 }\n")
    srv.start()
    try:
        c = srv.client()
        fill(c, "q", 3)
        assert c.fetch("q")["queue"] == "q"
        fill(c, "other", 1)
        assert c.fetch("q", "other")["queue"] == "other"
        write_conf(srv.data_dir, "throttles.toml", "[throttles]\nq = { concurrency = 2 }\n")
        assert srv.proc is not None
        os.kill(srv.proc.pid, signal.SIGHUP)
        wait_for(lambda: usage(srv)["q"].limit == 2)
        assert c.fetch("q")["queue"] == "q"
        # An invalid file on SIGHUP: logged, the throttles in force stay.
        write_conf(srv.data_dir, "throttles.toml", "[throttles]\nq = { concurrency = -1 }\n")
        os.kill(srv.proc.pid, signal.SIGHUP)
        wait_for(lambda: any("configuration not reloaded" in x and "'q'" in x
                             for x in srv.lines))
        assert usage(srv)["q"].limit == 2
        # Removed: no throttle.
        write_conf(srv.data_dir, "throttles.toml", "")
        os.kill(srv.proc.pid, signal.SIGHUP)
        wait_for(lambda: "q" not in usage(srv))
        assert c.fetch("q")["queue"] == "q"
    finally:
        srv.stop()


@pytest.mark.parametrize("text, message", [
    ("[throttles]\nq = 3\n", "must be { concurrency = N"),
    ("[throttles]\nq = { timeout = 5 }\n", "needs one of concurrency = N or worker = N"),
    ("[throttles]\nq = { concurrency = 1, worker = 1 }\n", "needs one of"),
    ("[throttles]\nq = { concurrency = 0 }\n", "concurrency must be a positive integer"),
    ("[throttles]\nq = { worker = 2, timeout = 1.5 }\n", "timeout must be a positive integer"),
    ("[throttles]\nq = { concurrency = 2, rate = 5 }\n", "unknown key 'rate'"),
    ('[throttles]\n"a:b" = { concurrency = 2 }\n', "queue names must match"),
])
def test_invalid_throttles_refuse_to_start(tmp_path: Any, text: str, message: str) -> None:
    write_conf(str(tmp_path), "t.toml", text)
    with pytest.raises(ConfigError, match=message.replace("{", r"\{").replace("(", r"\(")):
        load_config(str(tmp_path))


def test_throttles_default_timeout(tmp_path: Any) -> None:
    write_conf(str(tmp_path), "t.toml", "[throttles]\nq = { worker = 3 }\n")
    assert load_config(str(tmp_path)).throttles == {"q": ("worker", 3, 60)}
