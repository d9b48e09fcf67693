"""Several server processes sharing one Redis: hand-offs, worker registry, crashes, restarts."""
from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.support import (
    Client,
    FaktoryServer,
    ReplyError,
    clients_on_distinct_processes,
    job,
    serving_pid,
    wait_for,
)


def test_push_on_one_process_fetch_on_another(server: FaktoryServer) -> None:
    a, b = clients_on_distinct_processes(server)
    a.call("FLUSH")
    j = job(queue="handoff")
    a.push(j)
    got = b.fetch("handoff")
    assert got["jid"] == j["jid"]
    assert a.ack(j["jid"]) == "OK"  # ACK through the other process
    assert a.info()["faktory"]["sets"]["working"] == 0
    a.close(), b.close()


def test_waiting_fetch_on_one_process_wakes_for_a_push_on_another(server: FaktoryServer) -> None:
    a, b = clients_on_distinct_processes(server)
    a.call("FLUSH")
    b.send("FETCH crossq")
    wait_for(lambda: server.redis().exists("ff:wait:crossq"))  # b is parked
    j = job(queue="crossq")
    t0 = time.monotonic()
    a.push(j)
    got = json.loads(b.read_reply())
    assert got["jid"] == j["jid"] and time.monotonic() - t0 < 0.5
    a.close(), b.close()


def test_beat_for_a_worker_connected_elsewhere(server: FaktoryServer) -> None:
    a, b = clients_on_distinct_processes(server, wid="shared-wid")
    assert b.call('BEAT {"wid":"shared-wid"}') == "OK"
    assert a.call('BEAT {"wid":"shared-wid","current_state":"quiet"}') == '{"state":"quiet"}'
    assert b.call('BEAT {"wid":"shared-wid"}') == '{"state":"quiet"}'
    a.close(), b.close()


def test_killed_process_loses_nothing(tmp_path) -> None:
    srv = FaktoryServer(str(tmp_path), processes=2).start()
    try:
        a, b = clients_on_distinct_processes(srv)
        for i in range(20):
            a.push(job(jid=f"queued{i:04d}"))
        held = b.fetch()
        victim = srv.server_process_pids()
        pid = serving_pid(b, srv)
        os.kill(pid, signal.SIGKILL)
        assert b.closed_by_server()
        wait_for(lambda: len(srv.server_process_pids()) == 2
                 and pid not in srv.server_process_pids())
        assert set(srv.server_process_pids()) != set(victim)
        c = srv.client()
        info = c.info()["faktory"]
        assert info["queues"]["default"] == 19 and info["sets"]["working"] == 1
        r = srv.redis()
        r.zadd("working", {held["jid"]: time.time() - 1})  # its reservation time is up
        wait_for(lambda: r.zcard("retries") == 1)
        assert json.loads(r.zrange("retries", 0, -1)[0])["jid"] == held["jid"]
        a.close(), c.close()
    finally:
        srv.stop()


def test_restart_keeps_jobs_and_shutdown_tells_clients(tmp_path) -> None:
    srv = FaktoryServer(str(tmp_path), processes=1).start()
    c = Client("127.0.0.1", srv.port)  # not closed by srv.stop(): it must hear the shutdown
    for i in range(10):
        c.push(job(jid=f"durable{i:03d}"))
    c.fetch()
    assert srv.stop() == 0
    with pytest.raises(ReplyError, match="^ERR shutdown in progress$"):
        c.read_reply()
    c.close()
    assert not os.path.exists(os.path.join(srv.data_dir, "redis.sock"))
    srv.start()
    c = srv.client()
    info = c.info()["faktory"]
    assert info["queues"]["default"] == 9 and info["sets"]["working"] == 1
    c.close()
    srv.stop()


def test_crash_of_the_master_keeps_acknowledged_pushes(tmp_path) -> None:
    srv = FaktoryServer(str(tmp_path), processes=1).start()
    c = srv.client()
    for i in range(10):
        assert c.push(job(jid=f"crashsafe{i:03d}")) == "OK"
    srv.stop(signal.SIGKILL)
    sock = os.path.join(srv.data_dir, "redis.sock")
    wait_for(lambda: not _redis_alive(sock), timeout=15)
    srv.start()
    assert srv.client().info()["faktory"]["queues"]["default"] == 10
    srv.stop()


def test_restart_forgets_processes_of_an_earlier_run(tmp_path) -> None:
    srv = FaktoryServer(str(tmp_path), processes=1).start()
    r = srv.redis()
    r.hset("ff:conns", "ghost:1:dead", 5)  # as left by server processes killed with the master
    r.close()
    srv.stop()
    srv.start()
    try:
        assert srv.client().info()["server"]["connections"] == 1
    finally:
        srv.stop()


def _redis_alive(sock: str) -> bool:
    import socket

    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(sock)
            return True
    except OSError:
        return False


def test_redis_death_stops_the_server(tmp_path) -> None:
    srv = FaktoryServer(str(tmp_path), processes=1).start()
    r = srv.redis()
    r.shutdown(nosave=True)
    r.close()
    assert srv.proc.wait(20) != 0
    srv.stop()
    assert any("Redis died" in line or "Lost the connection to Redis" in line for line in srv.lines)


def test_redis_death_is_one_line_per_process_not_a_traceback_per_command(tmp_path) -> None:
    """The child Redis killed with hundreds of commands in flight on two server processes:
    each process says so in one line, the master in one, and the clients get -ERR replies."""
    srv = FaktoryServer(str(tmp_path), processes=2).start()
    try:
        r = srv.redis()
        redis_pid = r.info("server")["process_id"]
        r.close()
        clients = clients_on_distinct_processes(srv)
        clients += [srv.client() for _ in range(5)]
        clients.append(srv.client(wid="death-beats"))  # the worker every BEAT below names
        pushed = job(queue="deathq")
        assert clients[0].push(pushed) == "OK"
        assert clients[0].fetch("deathq")["jid"] == pushed["jid"]
        batch = []
        for _ in range(100):
            batch += ["PUSH " + json.dumps(job(queue="deathq")), "INFO", "FETCH deathq",
                      "PUSHB " + json.dumps([job(queue="deathq")]), "BEAT {\"wid\":\"death-beats\"}",
                      "ACK " + json.dumps({"jid": pushed["jid"]}), "QUEUE PAUSE deathq2"]
        data = ("\r\n".join(batch) + "\r\n").encode()
        for c in clients:
            c.sock.sendall(data)
        os.kill(redis_pid, signal.SIGKILL)
        replies = []
        for c in clients:
            assert c.closed_by_server(timeout=20)
            replies += c.buf.split(b"\r\n")
        assert srv.proc.wait(20) != 0
    finally:
        srv.stop()
    errors = {line for line in replies if line.startswith(b"-")}
    assert b"-ERR lost the connection to Redis" in errors
    assert errors <= {b"-ERR lost the connection to Redis", b"-ERR shutdown in progress"}
    assert not [line for line in srv.lines if "Traceback" in line or "Unexpected error" in line
                or "RuntimeWarning" in line or "never awaited" in line]
    lost = [line for line in srv.lines if "Redis died" in line or "Lost the connection to Redis" in line]
    by_process = [line.rsplit("; process ", 1)[-1] for line in lost if "; process " in line]
    assert len(by_process) == len(set(by_process)) <= 2
    assert len(lost) - len(by_process) == 1  # the master's


def test_durability_always_and_debug_log_names_the_codecs(tmp_path) -> None:
    from faktory_fast.codec import resp, wire

    srv = FaktoryServer(str(tmp_path), processes=1, args=["--durability", "always", "-l", "debug"]).start()
    try:
        r = srv.redis()
        assert r.config_get("appendfsync")["appendfsync"] == "always"
        assert r.config_get("appendonly")["appendonly"] == "yes"
        r.close()
        c = srv.client()  # served, so the worker has logged its start-up line
        assert c.call("INFO")
        wanted = f"wire codec: {wire.IMPLEMENTATION}, RESP codec: {resp.IMPLEMENTATION}"
        wait_for(lambda: any(wanted in line for line in srv.lines))
    finally:
        srv.stop()


def test_production_flush_is_a_warning(tmp_path) -> None:
    srv = FaktoryServer(str(tmp_path), processes=1, password="prod-pw",
                        env={"FAKTORY_ENV": "production"}).start()
    try:
        assert srv.client().call("FLUSH") == "OK"
        wait_for(lambda: any(line.startswith("W ") and "FLUSH" in line for line in srv.lines))
    finally:
        srv.stop()


def test_shutdown_answers_a_parked_fetch_at_once(tmp_path) -> None:
    """A FETCH parked on an empty queue hears nil when the server stops, not at its 2 s end."""
    srv = FaktoryServer(str(tmp_path), processes=1).start()
    c = Client("127.0.0.1", srv.port)
    sent = time.monotonic()
    c.send("FETCH parkedq")
    r = srv.redis()
    wait_for(lambda: r.exists("ff:wait:parkedq"))  # parked
    r.close()
    assert srv.stop() == 0
    assert c.read_reply() is None
    assert time.monotonic() - sent < 1.5
    with pytest.raises(ReplyError, match="^ERR shutdown in progress$"):
        c.read_reply()
    c.close()
