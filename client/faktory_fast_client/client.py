"""The synchronous client: one connection, opened on first use and again after it breaks.

A :class:`Client` is for one thread at a time; threads share a :class:`~faktory_fast_client.Pool`.
"""
from __future__ import annotations

import select
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

from . import commands as cmds
from .batch import Batch, BatchStatus
from .errors import (
    AuthenticationError,
    FaktoryConnectionError,
    FaktoryError,
    ServerError,
    UnansweredError,
)
from .job import Job
from .protocol import Bulk, hello, parse_line
from .tracking import JobTrack
from .url import ServerAddress, parse_url

T = TypeVar("T")

# Errors after which the server closes the connection.
CLOSING_ERRORS = ("shutdown in progress", "too many connections")


@dataclass(frozen=True)
class Settings:
    """What a connection needs, shared by the sync and asyncio clients."""

    address: ServerAddress
    ssl_context: ssl.SSLContext | None
    timeout: float
    connect_timeout: float
    hello_fields: dict[str, Any]

    @classmethod
    def make(cls, url: str | None, *, password: str | None, ssl_context: ssl.SSLContext | None,
             timeout: float, connect_timeout: float, wid: str | None, labels: list[str] | None,
             hostname: str | None) -> Settings:
        """``url`` parsed (the environment's if None), ``password`` overriding its password;
        for ``tcp+tls`` without ``ssl_context``, the system's defaults (verifying)."""
        address = parse_url(url)
        if password is not None:
            address = replace(address, password=password)
        if ssl_context is None and address.tls:
            ssl_context = ssl.create_default_context()
        return cls(address, ssl_context if address.tls else None, timeout, connect_timeout,
                   {"wid": wid, "labels": labels, "hostname": hostname})


class Broken(Exception):
    """A connection broke while a command was under way (internal: becomes UnansweredError)."""


class Connection:
    """One handshaken socket. Errors leave it unusable; :class:`Client` replaces it."""

    def __init__(self, settings: Settings) -> None:
        address, ssl_context = settings.address, settings.ssl_context
        try:
            sock = socket.create_connection((address.host, address.port),
                                            timeout=settings.connect_timeout)
        except OSError as exc:
            raise FaktoryConnectionError(f"cannot connect to {address.url}: {exc}") from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if ssl_context is not None:
                sock = ssl_context.wrap_socket(sock, server_hostname=address.host)
            sock.settimeout(settings.timeout)
            self.sock = sock
            self.reader = sock.makefile("rb")
            greeting = self.read_reply()
            if not isinstance(greeting, str):
                raise FaktoryError(f"unexpected greeting {greeting!r}")
            sock.sendall(hello(greeting, password=address.password, username=address.username,
                               **settings.hello_fields))
            try:
                ok = self.read_reply()
            except ServerError as exc:
                raise AuthenticationError(str(exc)) from exc
            except ConnectionError as exc:  # a malformed HELLO is answered by a close
                raise AuthenticationError(f"the server closed the connection at HELLO: {exc}") from exc
            if ok != "OK":
                raise FaktoryError(f"unexpected HELLO reply {ok!r}")
        except BaseException as exc:
            if hasattr(self, "reader"):
                self.reader.close()  # the file holds the socket open too
            sock.close()
            if isinstance(exc, OSError) and not isinstance(exc, FaktoryError):
                raise FaktoryConnectionError(f"handshake with {address.url} failed: {exc}") from exc
            raise

    def read_reply(self) -> str | int | None:
        line = self.reader.readline()
        if not line:
            raise ConnectionResetError("connection closed by the server")
        reply = parse_line(line)
        if isinstance(reply, Bulk):
            data = self.reader.read(reply + 2)
            if len(data) < reply + 2:
                raise ConnectionResetError("connection closed by the server in a reply")
            return data[:reply].decode()
        return reply

    def call(self, line: bytes) -> str | int | None:
        self.sock.sendall(line)
        return self.read_reply()

    def closed_by_peer(self) -> bool:
        """True if the server has closed (or written unasked to) this idle connection."""
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return True
        try:
            if hasattr(select, "poll"):  # select() cannot watch a descriptor above 1023
                poller = select.poll()
                poller.register(self.sock, select.POLLIN)
                return bool(poller.poll(0))
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def close(self, send_end: bool = False) -> None:
        try:
            if send_end:  # END gets no reply: write it and close
                self.sock.sendall(b"END\r\n")
        except OSError:
            pass
        finally:
            self.reader.close()
            self.sock.close()


class Client:
    """A Faktory client over one connection (not thread-safe: use a Pool across threads).

    ``url``: ``tcp://[:password@]host:port`` or ``tcp+tls://...``; default from
    ``FAKTORY_PROVIDER`` / ``FAKTORY_URL`` (see :mod:`faktory_fast_client.url`). ``password``
    overrides the URL's. ``ssl_context``: for ``tcp+tls`` (default: the system's, verifying
    the server's certificate and host name). ``timeout``: seconds for each reply (FETCH waits
    up to 2 s on the server). ``wid``: a worker id, making this a worker connection.

    Connection failures: a command that could not be written raises
    :class:`FaktoryConnectionError` (not applied); one written but not answered raises
    :class:`UnansweredError` (perhaps applied), except the idempotent commands (INFO, ACK,
    BEAT, QUEUE, BATCH STATUS/OPEN, TRACK, FLUSH) which are retried once on a new connection.
    """

    def __init__(self, url: str | None = None, *, password: str | None = None,
                 ssl_context: ssl.SSLContext | None = None, timeout: float = 10.0,
                 connect_timeout: float = 5.0, wid: str | None = None,
                 labels: list[str] | None = None, hostname: str | None = None) -> None:
        self.settings = Settings.make(url, password=password, ssl_context=ssl_context,
                                      timeout=timeout, connect_timeout=connect_timeout, wid=wid,
                                      labels=labels, hostname=hostname)
        self.address = self.settings.address
        self.wid = wid
        self._conn: Connection | None = None

    # -- connection --

    def connect(self) -> Client:
        """Open the connection now (otherwise the first command does)."""
        if self._conn is None:
            self._conn = Connection(self.settings)
        return self

    def close(self) -> None:
        """Say END and close the connection (a later command opens a new one)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close(send_end=True)

    def __enter__(self) -> Client:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _ready(self) -> Connection:
        conn = self._conn
        # A connection the server closed while it was idle (a restart, a reaped worker) is
        # replaced before the command is written: a poll costs about a microsecond.
        if conn is not None and conn.closed_by_peer():
            self._drop()
            conn = None
        if conn is None:
            self.connect()
            assert self._conn is not None
            conn = self._conn
        return conn

    def _attempt(self, line: bytes) -> str | int | None:
        conn = self._ready()  # FaktoryConnectionError here: nothing was written
        try:
            return conn.call(line)
        except ServerError as exc:
            if exc.message.startswith(CLOSING_ERRORS):  # the server closes after these
                self._drop()
            raise
        except (OSError, ValueError, FaktoryError) as exc:  # a garbled reply loses the stream too
            self._drop()
            raise Broken(str(exc) or type(exc).__name__) from exc
        except BaseException:  # e.g. KeyboardInterrupt mid-reply: the stream is out of step
            self._drop()
            raise

    def run(self, command: cmds.Command[T]) -> T:
        """Send one command and decode its reply, reconnecting as the class docstring says."""
        try:
            reply = self._attempt(command.line)
        except Broken as exc:
            if not command.idempotent:
                raise UnansweredError(f"no reply from {self.address.url} to "
                                      f"{command.line[:40]!r}: {exc}") from exc
            try:
                reply = self._attempt(command.line)
            except Broken as again:
                raise UnansweredError(f"no reply from {self.address.url} to "
                                      f"{command.line[:40]!r}, twice: {again}") from again
        return command.decode(reply)

    # -- producing --

    def push(self, job: Job | dict[str, Any]) -> str:
        """PUSH one job; its jid. Raises ServerError if refused (e.g. ``NOTUNIQUE``) and
        :class:`UnansweredError` if the connection broke before the answer: the job may or may
        not have landed."""
        self.run(cmds.push(job))
        return job.jid if isinstance(job, Job) else str(job["jid"])

    def push_bulk(self, jobs: Iterable[Job | dict[str, Any]]) -> dict[str, str]:
        """PUSHB: the jobs in one command; a map jid -> error message of the jobs refused
        (empty when all were accepted). On :class:`UnansweredError` any subset may have landed."""
        return self.run(cmds.push_bulk(jobs))

    # -- consuming --

    def fetch(self, *queues: str) -> Job | None:
        """FETCH from the queues in this order (the server waits up to 2 s); None if none."""
        return self.run(cmds.fetch(queues or ("default",)))

    def ack(self, jid: str) -> None:
        """ACK: the job succeeded."""
        self.run(cmds.ack(jid))

    def fail(self, jid: str, errtype: str, message: str, backtrace: list[str] | None = None) -> None:
        """FAIL: the job failed; the server retries it or moves it to the dead set."""
        self.run(cmds.fail(jid, errtype, message, backtrace))

    def beat(self, current_state: str | None = None, rss_kb: int | None = None) -> str | None:
        """BEAT for this client's wid; the state the server asks for (``quiet``,
        ``terminate``) or None."""
        if not self.wid:
            raise FaktoryError("BEAT needs a client with a wid")
        return self.run(cmds.beat(self.wid, current_state, rss_kb))

    # -- administration --

    def info(self) -> dict[str, Any]:
        """INFO: the server's state (queues, sets, counters)."""
        return self.run(cmds.info())

    def flush(self) -> None:
        """FLUSH: delete every job and counter on the server."""
        self.run(cmds.flush())

    def queue_pause(self, *queues: str) -> None:
        """QUEUE PAUSE (``"*"``: every queue): FETCH skips them, PUSH still enqueues."""
        self.run(cmds.queue("PAUSE", queues))

    def queue_resume(self, *queues: str) -> None:
        """QUEUE RESUME."""
        self.run(cmds.queue("RESUME", queues))

    def queue_remove(self, *queues: str) -> None:
        """QUEUE REMOVE: delete the queues and their jobs."""
        self.run(cmds.queue("REMOVE", queues))

    def queue_latency(self, *queues: str) -> dict[str, float]:
        """QUEUE LATENCY: seconds since the oldest job of each queue was enqueued."""
        return self.run(cmds.queue_latency(queues))

    def mutate(self, cmd: str, target: str, *, jobtype: str | None = None,
               jids: list[str] | None = None, regexp: str | None = None) -> None:
        """MUTATE ``target`` (``retries``, ``dead``, ``scheduled``) with ``cmd`` (``clear``,
        ``kill``, ``discard``, ``requeue``) for the jobs the filter matches (all if none);
        ``regexp`` is a Redis glob over the job's JSON."""
        self.run(cmds.mutate(cmd, target, jobtype=jobtype, jids=jids, regexp=regexp))

    # -- Enterprise --

    def new_batch(self, *, success: Job | None = None, complete: Job | None = None,
                  description: str | None = None, parent_bid: str | None = None) -> Batch:
        """A batch definition (created by :meth:`Batch.jobs` or :meth:`Batch.create`)."""
        return Batch(self, success=success, complete=complete, description=description,
                     parent_bid=parent_bid)

    def batch_new(self, batch: Batch) -> Batch:
        """BATCH NEW: create ``batch`` on the server; sets its bid."""
        if batch.bid:
            raise FaktoryError("bid must be blank when creating a new batch")
        batch.bid = self.run(cmds.batch_new(batch.to_dict()))
        batch._state = "open"
        return batch

    def batch_open(self, bid: str) -> Batch:
        """BATCH OPEN: reopen a batch to push more jobs into it (commit it again after)."""
        batch = Batch(self, bid=self.run(cmds.batch_open(bid)))
        batch._state = "open"
        return batch

    def batch_commit(self, bid: str) -> None:
        """BATCH COMMIT."""
        self.run(cmds.batch_commit(bid))

    def batch_status(self, bid: str) -> BatchStatus:
        """BATCH STATUS."""
        return BatchStatus.from_dict(self.run(cmds.batch_status(bid)))

    def track_get(self, jid: str) -> JobTrack:
        """TRACK GET: a tracked job's state and progress."""
        return JobTrack.from_dict(self.run(cmds.track_get(jid)))

    def track_set(self, jid: str, percent: int | None = None, desc: str | None = None,
                  reserve_until: datetime | str | None = None) -> None:
        """TRACK SET: report progress; ``reserve_until`` extends the job's reservation."""
        self.run(cmds.track_set(jid, percent, desc, reserve_until))
