"""Minimal, low-overhead Faktory and Redis clients used by the load processes.

Two shapes:

* :class:`Conn` — a blocking socket with ``call()``; used for setup (FLUSH, INFO) and paced pushers.
* :class:`Reactor` — one ``epoll`` loop driving many connections, each scripted by a generator that
  yields the next command line and receives the parsed reply. No asyncio, no futures, no per-op
  allocation beyond the bytes themselves: this is what keeps client CPU per job low.
"""
from __future__ import annotations

import hashlib
import os
import select
import socket
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson

from .resp import OK, OK_LINE, ErrorReply, ProtocolError, encode_command, parse

#: A connection script: yields command bytes, receives each parsed reply.
Script = Generator[bytes, Any, None]


class BenchError(RuntimeError):
    """The server answered something a correct server never would (aborts the run)."""


@dataclass(frozen=True)
class Endpoint:
    """Where to connect: TCP host/port or a unix socket path, plus an optional password."""

    kind: str  # "faktory" or "redis"
    host: str = ""
    port: int = 0
    path: str = ""
    password: str | None = None
    url: str = ""

    def redacted(self) -> str:
        """The URL with any password replaced by ``***`` (safe to print and store)."""
        if self.password is None:
            return self.url
        return self.url.replace(self.password, "***", 1)


def parse_faktory_url(url: str) -> Endpoint:
    """Parse ``tcp://[:password@]host:port`` (the FAKTORY_URL format)."""
    parts = urlsplit(url if "://" in url else "tcp://" + url)
    if parts.scheme != "tcp":
        raise ValueError(f"unsupported FAKTORY_URL scheme {parts.scheme!r} (only tcp://)")
    pw = unquote(parts.password) if parts.password is not None else None
    return Endpoint("faktory", parts.hostname or "localhost", parts.port or 7419, password=pw, url=url)


def parse_redis_url(url: str) -> Endpoint:
    """Parse ``redis://[:password@]host:port`` or ``unix:///path/to/redis.sock``."""
    parts = urlsplit(url)
    pw = unquote(parts.password) if parts.password is not None else None
    if parts.scheme == "unix":
        return Endpoint("redis", path=parts.path, password=pw, url=url)
    if parts.scheme == "redis":
        return Endpoint("redis", parts.hostname or "localhost", parts.port or 6379, password=pw, url=url)
    raise ValueError(f"unsupported redis URL scheme {parts.scheme!r} (redis:// or unix://)")


def pwdhash(password: str, salt: str, iterations: int) -> str:
    """Faktory password hash: sha256(password+salt), then ``iterations-1`` more rounds on the raw digest."""
    digest = hashlib.sha256((password + salt).encode()).digest()
    sha = hashlib.sha256
    for _ in range(iterations - 1):
        digest = sha(digest).digest()
    return digest.hex()


def hello_line(greeting: bytes, password: str | None, labels: tuple[str, ...] = ("bench",)) -> bytes:
    """Build the ``HELLO`` line answering a ``+HI {...}`` greeting (with pwdhash when asked)."""
    if not greeting.startswith(b"HI "):
        raise BenchError(f"unexpected greeting {greeting!r}")
    hi = orjson.loads(greeting[3:])
    hello: dict[str, Any] = {"hostname": socket.gethostname(), "pid": os.getpid(),
                             "labels": list(labels), "v": 2}
    if "s" in hi:
        if password is None:
            raise BenchError("server requires a password; put it in the URL: tcp://:PASSWORD@host:port")
        hello["pwdhash"] = pwdhash(password, hi["s"], int(hi.get("i", 1)))
    return b"HELLO " + orjson.dumps(hello) + b"\r\n"


def _open_socket(ep: Endpoint, timeout: float) -> socket.socket:
    if ep.path:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(ep.path)
    else:
        sock = socket.create_connection((ep.host, ep.port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class Conn:
    """A blocking request/response connection (Faktory after handshake, or Redis after AUTH)."""

    def __init__(self, ep: Endpoint, timeout: float = 30.0) -> None:
        self.ep = ep
        self.sock = _open_socket(ep, timeout)
        self.buf = b""
        try:
            if ep.kind == "faktory":
                greeting = self.read_reply()
                self.expect_ok(self.call_raw(hello_line(greeting, ep.password)))
            elif ep.password is not None:
                self.expect_ok(self.call_raw(encode_command("AUTH", ep.password)))
        except BaseException:
            self.sock.close()
            raise
        self.sock.settimeout(None)  # FETCH/BRPOP may legitimately block for seconds

    def read_reply(self) -> Any:
        """Read exactly one reply (buffering any partial data)."""
        while True:
            if self.buf:
                r = parse(self.buf)
                if r is not None:
                    self.buf = self.buf[r[1]:]
                    return r[0]
            data = self.sock.recv(1 << 20)
            if not data:
                raise ConnectionError("server closed the connection")
            self.buf += data

    def call_raw(self, line: bytes) -> Any:
        """Send one already-framed command and return its reply."""
        self.sock.sendall(line)
        return self.read_reply()

    def call(self, verb: str, payload: bytes | str | None = None) -> Any:
        """Send a Faktory command ``VERB [payload]`` and return the reply; ErrorReply raises."""
        line = verb.encode()
        if payload is not None:
            line += b" " + (payload.encode() if isinstance(payload, str) else payload)
        reply = self.call_raw(line + b"\r\n")
        if type(reply) is ErrorReply:
            raise BenchError(f"{verb}: -{reply}")
        return reply

    @staticmethod
    def expect_ok(reply: Any) -> None:
        """Raise unless the reply is ``+OK``."""
        if reply != OK:
            raise BenchError(f"expected +OK, got {reply!r}")

    def detach(self) -> socket.socket:
        """Hand the (handshaken) socket over to a Reactor."""
        if self.buf:
            raise ProtocolError("unread data on connection")
        return self.sock

    def close(self) -> None:
        """Send END (Faktory) and close."""
        try:
            if self.ep.kind == "faktory":
                self.sock.sendall(b"END\r\n")
        except OSError:
            pass
        self.sock.close()


class Reactor:
    """Drive many connections from one epoll loop; each connection is scripted by a generator.

    Sockets stay in blocking mode: ``recv`` is only called once epoll says readable (so it never
    blocks) and ``sendall`` of a large PUSHB simply blocks until the server has read it.
    """

    def __init__(self) -> None:
        self.ep = select.epoll()
        self.sessions: dict[int, list[Any]] = {}  # fd -> [sock, script, partial-buffer]
        self.socks: list[socket.socket] = []

    def add(self, sock: socket.socket, script: Script) -> None:
        """Register a connection and send the script's first command immediately."""
        self.socks.append(sock)
        try:
            first = next(script)
        except StopIteration:
            return
        sock.sendall(first)
        fd = sock.fileno()
        self.sessions[fd] = [sock, script, b""]
        self.ep.register(fd, select.EPOLLIN)

    def run(self, should_stop: Callable[[], bool] | None = None, poll_s: float = 0.05) -> None:
        """Run until every script has finished or ``should_stop()`` returns true (checked per wakeup)."""
        sessions = self.sessions
        poll = self.ep.poll
        while sessions:
            for fd, _ in poll(poll_s):
                sess = sessions[fd]
                data = sess[0].recv(1 << 20)
                if not data:
                    raise ConnectionError("server closed a connection")
                if sess[2]:
                    data = sess[2] + data
                if data == OK_LINE:  # fast path: most replies are +OK
                    value = OK
                    sess[2] = b""
                else:
                    r = parse(data)
                    if r is None:
                        sess[2] = data
                        continue
                    value = r[0]
                    sess[2] = data[r[1]:]
                try:
                    line = sess[1].send(value)
                except StopIteration:
                    self.ep.unregister(fd)
                    del sessions[fd]
                    continue
                sess[0].sendall(line)
            if should_stop is not None and should_stop():
                break

    def drain(self, timeout: float = 5.0) -> int:
        """Wait for the reply to every command still outstanding, without sending more; return their count.

        Closing a socket with a FETCH (or BRPOP) still pending would let the server pop a job for a
        client that is gone — a job pushed by the *next* run, which would then never finish. So after
        ``run`` stops we let each pending FETCH come back (a blocked one returns nil within ~2 s).
        """
        sessions = self.sessions
        pending = 0
        deadline = time.monotonic() + timeout
        while sessions and time.monotonic() < deadline:
            for fd, _ in self.ep.poll(0.1):
                sess = sessions[fd]
                data = sess[0].recv(1 << 20)
                if data:
                    data = sess[2] + data
                    if parse(data) is None:
                        sess[2] = data
                        continue
                self.ep.unregister(fd)
                del sessions[fd]
                pending += 1
        return pending

    def run_to_end(self, should_stop: Callable[[], bool] | None = None) -> None:
        """``run``, then ``drain`` the replies still outstanding; the sockets are closed in any
        case (how a load process ends its run)."""
        try:
            self.run(should_stop)
            self.drain()
        finally:
            self.close()

    def close(self) -> None:
        """Close every socket; call ``drain`` first unless abandoning pending calls is fine."""
        for s in self.socks:
            s.close()
        self.ep.close()


def check_ok(reply: Any, what: str) -> None:
    """Raise BenchError unless ``reply`` is ``+OK`` (used inside scripts)."""
    if reply != OK:
        raise BenchError(f"{what}: unexpected reply {reply!r}")


def now_us() -> int:
    """Wall-clock microseconds (fits a float64 exactly, so it survives JSON re-encoding by any server)."""
    return time.time_ns() // 1000


def run_pushers_and_fetchers(socks: list[socket.socket], quotas: list[int],
                             pusher: Callable[[int, int], Script], fetcher: Callable[[], Script],
                             done: Callable[[], bool]) -> None:
    """One reactor: the first ``len(quotas)`` sockets push their quota of jobs (numbered on
    from each other), the rest fetch, until ``done()``; then pending replies are drained."""
    reactor = Reactor()
    first = 0
    for sock, quota in zip(socks, quotas):
        reactor.add(sock, pusher(first, quota))
        first += quota
    for sock in socks[len(quotas):]:
        reactor.add(sock, fetcher())
    reactor.run_to_end(done)
