"""Clients that do not read, pipeline hard, or send lines slowly (flow control, line limits).

Memory is measured where it is held: the RSS of the one server process (``VmRSS`` in
``/proc/<pid>/status``) while a raw socket misbehaves; the client then reads and the same
connection must go on working.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from faktory_fast import config
from faktory_fast.config import ConfigError
from tests.support import Client, FaktoryServer, ReplyError, job, load_config, wait_for

MiB = 1 << 20
BUDGET = 24 * MiB
LINE_TIMEOUT = 4


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaktoryServer]:
    """This module's server (conftest's ``srv`` flushes it per test): one server process (so
    its RSS is the connection's), a small line budget and timeout."""
    srv = FaktoryServer(str(tmp_path_factory.mktemp("flow")), processes=1,
                        args=["--line-budget", str(BUDGET), "--line-timeout", str(LINE_TIMEOUT),
                              "-l", "debug"]).start()
    yield srv
    srv.stop()


def rss(pid: int) -> int:
    """Resident memory of a process, in bytes."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def peak_growth(pid: int, base: int, seconds: float, limit: int) -> int:
    """Largest RSS growth over ``base`` seen in ``seconds`` (sampled; stops early past limit).

    A window, not a wait: what is measured is that memory does not grow while it lasts."""
    peak = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end and peak <= limit:
        peak = max(peak, rss(pid) - base)
        time.sleep(0.02)
    return peak


def send_in_background(sock: socket.socket, data: bytes, chunk: int = 1 << 20) -> threading.Thread:
    """sendall from a thread (the server may stop reading); a reset ends it quietly."""
    def run() -> None:
        try:
            for i in range(0, len(data), chunk):
                sock.sendall(data[i:i + chunk])
        except OSError:
            pass
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def read_lines(c: Client, n: int, timeout: float = 60) -> bytes:
    """Read until ``n`` reply lines (no reply here holds a newline of its own) have come."""
    c.sock.settimeout(timeout)
    data = bytearray(c.buf)
    count = data.count(b"\n")
    while count < n:
        chunk = c.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError(f"closed after {count} of {n} replies")
        count += chunk.count(b"\n")
        data += chunk
    c.buf = b""
    return bytes(data)


def server_unread(server: FaktoryServer, c: Client) -> int:
    """Bytes this client sent that the server has not read (its socket's receive queue)."""
    want = f"0100007F:{server.port:04X} 0100007F:{c.sock.getsockname()[1]:04X}"
    with open("/proc/net/tcp") as fh:
        for line in fh:
            parts = line.split()
            if f"{parts[1]} {parts[2]}" == want:
                return int(parts[4].split(":")[1], 16)
    raise AssertionError("connection not found in /proc/net/tcp")


# -- back-pressure -------------------------------------------------------------------------

def test_a_client_that_does_not_read_stops_being_read(srv: FaktoryServer) -> None:
    """128 MB of commands answered at once with ~8 KB each: replies nobody reads pile up no
    further than the transport's high-water mark; once the client reads, all come, in order."""
    pid = srv.server_process_pids()[0]
    c = srv.client()
    verb = b"Z" * 8000
    n = 16384
    base = rss(pid)
    sender = send_in_background(c.sock, (verb + b"\r\n") * n)
    growth = peak_growth(pid, base, 2.0, limit=16 * MiB)
    assert growth < 16 * MiB, f"the server process grew by {growth >> 20} MiB"
    data = read_lines(c, n)
    sender.join(30)
    assert not sender.is_alive()
    assert data == (b"-ERR unknown command " + verb + b"\r\n") * n
    assert c.info()["server"]["connections"] >= 1  # the same connection goes on
    assert not any("pause_writing" in line for line in srv.lines)


def test_info_over_and_over_never_read(srv: FaktoryServer) -> None:
    """The report's case: INFO over and over, no reply read. The process stays small; the
    client then leaves without reading and the process serves on."""
    pid = srv.server_process_pids()[0]
    c = srv.client()
    base = rss(pid)
    send_in_background(c.sock, b"INFO\r\n" * 200_000)
    growth = peak_growth(pid, base, 1.5, limit=16 * MiB)
    assert growth < 16 * MiB, f"the server process grew by {growth >> 20} MiB"
    c.close()
    assert srv.client().info()["faktory"]
    assert not any("pause_writing" in line for line in srv.lines)


def test_pipelined_commands_wait_in_the_socket(srv: FaktoryServer) -> None:
    """Half a million commands behind a FETCH that waits: the server reads one slice of them at
    a time, not all 1 MB of them into half a million parsed commands."""
    pid = srv.server_process_pids()[0]
    c = srv.client()
    n = 500_000
    base = rss(pid)
    c.send("FETCH flowq-empty")  # waits 2 s for a job that does not come
    sender = send_in_background(c.sock, b"X\n" * n)
    growth = peak_growth(pid, base, 1.5, limit=16 * MiB)
    assert growth < 16 * MiB, f"the server process grew by {growth >> 20} MiB"
    data = read_lines(c, n + 1)
    sender.join(30)
    assert data == b"$-1\r\n" + b"-ERR unknown command X\r\n" * n
    assert c.call("PUSH " + json.dumps(job(queue="flowq"))) == "OK"
    assert c.fetch("flowq")["queue"] == "flowq"


def test_pipelining_clients_do_not_notice(srv: FaktoryServer) -> None:
    """20,000 PUSHes sent in one go while the replies are read as they come, then FETCH+ACK."""
    c = srv.client()
    jobs = [job(queue="pipeq", args=[i]) for i in range(20000)]
    sender = send_in_background(c.sock, b"".join(b"PUSH " + json.dumps(j).encode() + b"\r\n"
                                                  for j in jobs), chunk=50000)
    assert read_lines(c, len(jobs)) == b"+OK\r\n" * len(jobs)
    sender.join(10)
    c.sock.sendall(b"FETCH pipeq\r\n" * 100)
    fetched = [json.loads(c.read_reply()) for _ in range(100)]
    assert [j["args"] for j in fetched] == [[i] for i in range(100)]
    assert c.info()["faktory"]["queues"]["pipeq"] == 19900


def test_congested_redis_stops_reading_from_clients(srv: FaktoryServer) -> None:
    """Redis stopped (SIGSTOP) while an 8 MiB job is written to it: the Redis connection's
    buffer passes its high-water mark, the process stops reading from its clients, and all
    goes on when Redis does."""
    r = srv.redis()
    redis_pid = r.info("server")["process_id"]
    a, b = srv.client(), srv.client()
    big = job(queue="bigq", args=["x" * (8 * MiB)])
    seen = len(srv.lines)
    os.kill(redis_pid, signal.SIGSTOP)
    try:
        sender = send_in_background(a.sock, b"PUSH " + json.dumps(big).encode() + b"\r\n")
        wait_for(lambda: any("reading from clients paused" in line for line in srv.lines[seen:]))
        b.send("INFO")
        wait_for(lambda: server_unread(srv, b) == len(b"INFO\r\n"))  # left in b's socket
    finally:
        os.kill(redis_pid, signal.SIGCONT)
    sender.join(10)
    assert a.read_reply() == "OK"
    assert json.loads(b.read_reply())["faktory"]  # b's INFO, read once Redis went on
    assert b.info()["faktory"]["queues"]["bigq"] == 1
    wait_for(lambda: any("reading from clients resumed" in line for line in srv.lines[seen:]))
    assert a.fetch("bigq")["args"] == big["args"]
    assert not any("pause_writing" in line for line in srv.lines)
    r.close()


# -- unfinished lines ----------------------------------------------------------------------

def closing_lines(srv: FaktoryServer, text: str) -> list[str]:
    return [line for line in srv.lines if line.startswith("W ") and "Closing the connection" in line
            and text in line]


def test_a_line_not_finished_in_time_closes_the_connection(srv: FaktoryServer) -> None:
    idle = srv.client()  # idle longer than the line timeout, with no line begun: left alone
    slow = srv.client()  # finishes its line in time, in three parts
    stuck = srv.client(wid="stuck-worker")
    before = len(closing_lines(srv, "--line-timeout"))
    started = time.monotonic()
    stuck.sock.sendall(b'PUSH {"jid":"stuck","jobtype":"J","args":[')
    line = ("PUSH " + json.dumps(job(queue="slowq"))).encode()
    slow.sock.sendall(line[:10])
    time.sleep(1)  # a client that takes its time, not synchronisation
    slow.sock.sendall(line[10:30])
    time.sleep(1)
    slow.sock.sendall(line[30:] + b"\r\n")
    assert slow.read_reply() == "OK"
    with pytest.raises(ReplyError, match=f"^ERR line not finished within {LINE_TIMEOUT} s$"):
        stuck.read_reply()
    assert LINE_TIMEOUT <= time.monotonic() - started < LINE_TIMEOUT + 3
    assert stuck.closed_by_server()
    wait_for(lambda: len(closing_lines(srv, "--line-timeout")) == before + 1)
    (logged,) = closing_lines(srv, "--line-timeout")[before:]
    assert "(worker stuck-worker)" in logged and f"a line unfinished after {LINE_TIMEOUT} s" in logged
    assert idle.call("INFO") and slow.call("INFO")
    assert idle.info()["faktory"]["queues"]["slowq"] == 1


def test_unfinished_lines_share_one_budget(srv: FaktoryServer) -> None:
    """Three 9 MiB lines begun against a 24 MiB budget: the one that does not fit is closed
    (one log line), the other two finish, and the budget is whole again afterwards."""
    clients = [srv.client() for _ in range(3)]
    jobs = [job(queue="budgetq", jid=f"budget-job-{i}", args=["y" * (9 * MiB)]) for i in range(3)]
    lines = [("PUSH " + json.dumps(j)).encode() for j in jobs]
    before = len(closing_lines(srv, "--line-budget"))
    for c, line in zip(clients, lines):
        try:
            c.sock.sendall(line[:-10])
        except OSError:
            pass  # closed while it sent: the one over the budget
    wait_for(lambda: len(closing_lines(srv, "--line-budget")) == before + 1)
    assert "does not fit in the budget of 25165824 bytes" in closing_lines(srv, "--line-budget")[-1]
    closed = [c for c in clients if c.closed_by_server(timeout=0.3)]
    assert len(closed) == 1
    for c, line in zip(clients, lines):
        if c not in closed:
            c.sock.sendall(line[-10:] + b"\r\n")
            assert c.read_reply() == "OK"
    # The budget was given back: 10 MiB more would not fit if the finished lines still counted.
    big = srv.client()
    assert big.call(b"PUSHB " + json.dumps([job(queue="budgetq", args=["z" * (10 * MiB)])]).encode()) == "{}"
    assert big.info()["faktory"]["queues"]["budgetq"] == 3
    assert len(closing_lines(srv, "--line-budget")) == before + 1


def test_a_big_pushb_at_loopback_speed_is_not_noticed(srv: FaktoryServer) -> None:
    c = srv.client()
    batch = [job(queue="bulkq", args=["b" * (1 * MiB)]) for _ in range(10)]  # 10 MiB
    assert c.call(b"PUSHB " + json.dumps(batch).encode()) == "{}"
    assert c.info()["faktory"]["queues"]["bulkq"] == 10


# -- configuration -------------------------------------------------------------------------

def load(tmp_path, *args: str, toml: str = "") -> config.Config:
    return load_config(str(tmp_path), *args, toml=toml)


def test_line_limit_flags(tmp_path) -> None:
    cfg = load(tmp_path)
    assert cfg.line_budget == 16 * cfg.max_line == 256 * MiB and cfg.line_timeout == 60
    cfg = load(tmp_path, "--max-line", "1000")
    assert cfg.line_budget == 16000
    cfg = load(tmp_path, "--line-budget", "50000000", "--line-timeout", "2.5")
    assert (cfg.line_budget, cfg.line_timeout) == (50000000, 2.5)
    cfg = load(tmp_path, toml="[faktory_fast]\nline_budget = 40000000\nline_timeout = 7\n")
    assert (cfg.line_budget, cfg.line_timeout) == (40000000, 7.0)
    with pytest.raises(ConfigError, match="line-budget.*at least --max-line"):
        load(tmp_path, "--line-budget", "1000")
    for bad in ("0", "-1", "nan", "inf"):
        with pytest.raises(ConfigError, match="invalid --line-timeout"):
            load(tmp_path, "--line-timeout", bad)
    with pytest.raises(ConfigError, match="invalid --line-timeout"):
        load(tmp_path, toml='[faktory_fast]\nline_timeout = "soon"\n')
