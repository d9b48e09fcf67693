"""Test support: run a real faktory_fast server (with its child Redis) and talk to it.

``FaktoryServer`` starts ``python -m faktory_fast`` as users do; ``Client`` is a deliberately
plain blocking socket client so tests see the exact bytes on the wire.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import redis

from faktory_fast import config
from faktory_fast.storage.store import SyncStore

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports (all held at once while picked, so none repeats)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class FaktoryServer:
    """A faktory_fast server process on a free port with its own storage dir."""

    def __init__(self, data_dir: str, processes: int = 2, password: str | None = None,
                 env: dict[str, str] | None = None, args: list[str] | None = None,
                 web: bool = False, command: list[str] | None = None) -> None:
        self.data_dir = data_dir
        self.command = command or [sys.executable, "-m", "faktory_fast"]  # e.g. an installed one
        self.port = free_port()
        self.web_port = free_port() if web else 0
        self.password = password
        self.processes = processes
        self.extra_env = env or {}
        self.args = args or []
        self.proc: subprocess.Popen | None = None
        self.lines: list[str] = []
        self._listening = threading.Event()
        self._pump_thread: threading.Thread | None = None
        self.clients: list[Client] = []  # closed by stop(), so no test leaks a socket

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"tcp://{auth}127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> FaktoryServer:
        env = dict(os.environ, **self.extra_env)
        env.pop("FAKTORY_PASSWORD", None)
        if self.password:
            env["FAKTORY_PASSWORD"] = self.password
        web = f"127.0.0.1:{self.web_port}" if self.web_port else ":0"
        cmd = [*self.command, "-b", f"127.0.0.1:{self.port}", "-w", web,
               "-d", self.data_dir, "-c", os.path.join(self.data_dir, "conf"),
               "--processes", str(self.processes), *self.args]
        self._listening.clear()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env=env, cwd=ROOT, text=True)
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()
        if not self._listening.wait(timeout) or not any("Listening on" in ln for ln in self.lines):
            self.stop()
            raise RuntimeError("server did not start:\n" + "\n".join(self.lines))
        return self

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if "Listening on" in line:
                self._listening.set()
        self._listening.set()  # its output ended: it will not listen (start() says so at once)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int | None:
        if self.proc is None:
            return None
        self.close_clients()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        if self._pump_thread is not None:
            self._pump_thread.join(10)  # EOF once every process holding the pipe is gone
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return code

    def close_clients(self) -> None:
        for c in self.clients:
            c.close()
        self.clients.clear()

    @property
    def redis_socket(self) -> str:
        """The socket of the server's Redis: its child's, or the one REDIS_URL names."""
        url = self.extra_env.get("REDIS_URL", "")
        if url.startswith("unix://"):
            return url[len("unix://"):]
        return os.path.join(self.data_dir, "redis.sock")

    def redis(self) -> redis.Redis:
        """A redis-py client on the server's Redis (for white-box assertions)."""
        return redis.Redis(unix_socket_path=self.redis_socket)

    def store(self) -> SyncStore:
        """The web UI's store on the server's Redis (the operations tests assert with)."""
        return SyncStore.connect("unix://" + self.redis_socket)

    def server_process_pids(self) -> list[int]:
        """Pids of the server processes: the master's children running
        faktory_fast.server.process."""
        assert self.proc is not None
        master = self.proc.pid
        return sorted(pid for pid, (ppid, cmdline) in processes().items()
                      if ppid == master and b"faktory_fast.server.process" in cmdline)

    def client(self, **kw: Any) -> Client:
        kw.setdefault("password", self.password)
        c = Client.__new__(Client)
        self.clients.append(c)
        c.__init__("127.0.0.1", self.port, **kw)  # registered first: closed even if HELLO fails
        return c


def processes() -> dict[int, tuple[int, bytes]]:
    """Every process: its parent's pid and its command line."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                found[int(entry)] = (ppid, fh.read())
        except (OSError, ValueError, IndexError):
            continue
    return found


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``."""
    procs = processes()
    found: list[int] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, (ppid, _) in procs.items() if ppid == parent]
        found += children
        frontier += children
    return found


def children(srv: FaktoryServer, marker: bytes) -> list[int]:
    """The server's child processes whose command line contains ``marker``."""
    assert srv.proc is not None
    return sorted(pid for pid, (ppid, cmd) in processes().items()
                  if ppid == srv.proc.pid and marker in cmd)


def get(url: str, timeout: float = 5) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def status_or_refused(url: str) -> int | None:
    """The status of GET ``url``, or None when nobody listens on its port. A request left
    waiting (a port bound that nobody serves) raises a timeout: the test fails."""
    try:
        return get(url, timeout=3)[0]
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ConnectionError):
            return None
        raise
    except ConnectionError:  # reset while the UI goes away
        return None



def stop_process(proc: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM, and SIGKILL if it is still there after ``timeout`` seconds; reaped either way."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class ReplyError(Exception):
    """A ``-`` line from the server; str() is the text after the dash."""


class Client:
    """A blocking Faktory protocol client that shows raw replies."""

    sock: socket.socket | None = None

    def __init__(self, host: str, port: int, password: str | None = None, wid: str | None = None,
                 hello: bool = True, timeout: float = 10, v: int | None = 2,
                 tls: ssl.SSLContext | None = None, source: str | None = None,
                 **hello_fields: Any) -> None:
        """``tls``: speak TLS (to ``localhost``); ``source``: the local address to connect from."""
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname="localhost")
        self.buf = b""
        self.hi = self.read_reply()
        if hello:
            payload: dict[str, Any] = {"hostname": "test", "pid": os.getpid(), "labels": ["pytest"]}
            if v is not None:
                payload["v"] = v
            if wid:
                payload["wid"] = wid
            payload.update(hello_fields)
            greeting = json.loads(self.hi[3:])
            if password and "s" in greeting:
                rounds = greeting["i"] if (v or 0) >= 2 else 1
                payload["pwdhash"] = pwdhash(password, greeting["s"], rounds)
            self.send("HELLO " + json.dumps(payload))
            ok = self.read_reply()
            if ok != "OK":
                raise ReplyError(f"handshake failed: {ok!r}")

    def send(self, line: str | bytes) -> None:
        data = line.encode() if isinstance(line, str) else line
        self.sock.sendall(data + b"\r\n")

    def _readline(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed by the server")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read_reply(self) -> Any:
        """'+X' -> 'X'; '-X' -> raises ReplyError; '$n' -> str or None."""
        line = self._readline()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise ReplyError(rest.decode())
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("connection closed by the server")
                self.buf += chunk
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data.decode()
        if kind == b":":
            return int(rest)
        raise AssertionError(f"unexpected reply {line!r}")

    def call(self, line: str | bytes) -> Any:
        self.send(line)
        return self.read_reply()

    def push(self, job: dict) -> Any:
        return self.call("PUSH " + json.dumps(job))

    def fetch(self, *queues: str) -> dict | None:
        reply = self.call("FETCH " + " ".join(queues or ("default",)))
        return json.loads(reply) if reply else None

    def ack(self, jid: str) -> Any:
        return self.call("ACK " + json.dumps({"jid": jid}))

    def fail(self, jid: str, errtype: str = "RuntimeError", message: str = "boom",
             backtrace: list[str] | None = None) -> Any:
        return self.call("FAIL " + json.dumps({"jid": jid, "errtype": errtype, "message": message,
                                                "backtrace": backtrace or []}))

    def info(self) -> dict:
        return json.loads(self.call("INFO"))

    def closed_by_server(self, timeout: float = 5) -> bool:
        """True if the server closes the connection (EOF) within ``timeout``."""
        self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
                self.buf += data
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()


def pwdhash(password: str, salt: str, iterations: int) -> str:
    digest = hashlib.sha256((password + salt).encode()).digest()
    for _ in range(iterations - 1):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()


def job(jobtype: str = "TestJob", args: list | None = None, **fields: Any) -> dict:
    """A job payload with a fresh jid."""
    out = {"jid": uuid.uuid4().hex, "jobtype": jobtype, "args": args if args is not None else [1, "x"]}
    out.update(fields)
    return out


def wait_for(predicate: Any, timeout: float = 10, interval: float = 0.02) -> Any:
    """Poll a condition the server changes on its own clock (scheduler, reaper) until true."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def serving_pid(client: Client, server: FaktoryServer) -> int:
    """Which server process holds the other end of this client's connection."""
    cport = client.sock.getsockname()[1]
    want = f"0100007F:{server.port:04X} 0100007F:{cport:04X}"
    inode = None
    with open("/proc/net/tcp") as fh:
        for line in fh:
            parts = line.split()
            if f"{parts[1]} {parts[2]}" == want:
                inode = parts[9]
    assert inode, "connection not found in /proc/net/tcp"
    for pid in server.server_process_pids():
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue
    raise AssertionError("no server process holds the connection")


def clients_on_distinct_processes(server: FaktoryServer, n: int = 2, **kw: Any) -> list[Client]:
    """Open connections until ``n`` of them are served by ``n`` different processes."""
    by_pid: dict[int, Client] = {}
    spare: list[Client] = []
    for _ in range(200):
        c = server.client(**kw)
        pid = serving_pid(c, server)
        if pid in by_pid:
            spare.append(c)
        else:
            by_pid[pid] = c
        if len(by_pid) == n:
            break
    for c in spare:
        c.close()
    assert len(by_pid) == n, "the kernel never spread connections over the processes"
    return list(by_pid.values())


@contextlib.contextmanager
def redis_commands(server: FaktoryServer) -> Iterator[list[str]]:
    """Record every command the server's Redis runs inside the block (Redis MONITOR)."""
    r = server.redis()
    seen: list[str] = []
    ready = threading.Event()

    def watch() -> None:
        with r.monitor() as m:
            ready.set()
            for cmd in m.listen():
                if "stop-monitor" in cmd["command"]:
                    return
                seen.append(cmd["command"])

    t = threading.Thread(target=watch)
    t.start()
    assert ready.wait(5)
    try:
        yield seen
    finally:
        r.echo("stop-monitor")
        t.join(5)
        r.close()


@contextlib.contextmanager
def slow_redis_calls(r: redis.Redis, over_ms: float) -> Iterator[list[dict[str, Any]]]:
    """The commands Redis ran for longer than ``over_ms`` inside the block (its SLOWLOG,
    filled in when the block ends): one request must not hold the Redis every client shares."""
    old = r.config_get("slowlog-log-slower-than")["slowlog-log-slower-than"]
    r.config_set("slowlog-log-slower-than", int(over_ms * 1000))
    r.slowlog_reset()
    found: list[dict[str, Any]] = []
    try:
        yield found
    finally:
        found.extend(r.slowlog_get(128))
        r.config_set("slowlog-log-slower-than", old)


def write_conf(data_dir: str, name: str, text: str) -> str:
    """Write ``<data_dir>/conf/conf.d/<name>`` (the config dir FaktoryServer passes with -c)."""
    conf_d = os.path.join(data_dir, "conf", "conf.d")
    os.makedirs(conf_d, exist_ok=True)
    path = os.path.join(conf_d, name)
    with open(path, "w") as fh:
        fh.write(text)
    return path


def load_config(data_dir: str, *args: str, toml: str = "", **env: str) -> config.Config:
    """The Config the server would load from flags ``args`` with ``-c <data_dir>/conf`` (its
    conf.d/test.toml replaced by ``toml``), HOME=data_dir and the environment ``env``."""
    write_conf(data_dir, "test.toml", toml)
    cfg = config.load(["-c", os.path.join(data_dir, "conf"), *args], {"HOME": data_dir, **env})
    assert cfg is not None
    return cfg


@contextlib.contextmanager
def two_nodes(base: str, processes: int = 2, conf: str | tuple[str, str] = "",
              env: dict[str, str] | None = None,
              args: list[str] | None = None) -> Iterator[tuple[FaktoryServer, FaktoryServer]]:
    """Two servers ("nodes") on one Redis of their own (REDIS_URL), so that either can stop
    and start again, started in order. ``conf``: conf.d/test.toml of both (or of each);
    ``env``, ``args``: of both."""
    from faktory_fast.master.redis_child import RedisChild

    shared = RedisChild(os.path.join(base, "redis"))
    shared.start()
    env = {**(env or {}), "REDIS_URL": shared.url}
    nodes = [FaktoryServer(os.path.join(base, name), processes=processes, env=env, args=args)
             for name in ("a", "b")]
    try:
        confs = conf if isinstance(conf, tuple) else (conf, conf)
        for node, text in zip(nodes, confs):
            write_conf(node.data_dir, "test.toml", text)
            node.start()
        yield nodes[0], nodes[1]
    finally:
        for node in nodes:
            node.stop()
        shared.stop()


def fetch_all(servers: list[FaktoryServer], queue: str) -> Counter[str]:
    """Every jid fetchable from ``queue``, fetched alternately through each server, with how
    many times each was fetched. The queue's size (INFO) says how many are left: a FETCH of an
    empty queue would wait 2 s for a job."""
    fetchers = [s.client() for s in servers]
    fetched: Counter[str] = Counter()
    i = 0
    while left := fetchers[0].info()["faktory"]["queues"].get(queue, 0):
        for _ in range(left):
            got = fetchers[i % len(fetchers)].fetch(queue)
            i += 1
            assert got is not None, f"{queue}: INFO said {left} jobs, fewer were fetched"
            fetched[got["jid"]] += 1
    return fetched
