"""The wire format, without I/O: command lines, reply lines, the HI/HELLO handshake.

Commands are one line each, ``VERB payload\\r\\n``. Replies are a RESP subset: ``+text``,
``-CODE message``, ``$n`` followed by n bytes (``$-1`` is nil), rarely ``:n``. The sync and
asyncio connections share this module and differ only in how they read bytes.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
from typing import Any

from .errors import AuthenticationError, FaktoryError, ServerError

PROTOCOL_VERSION = 2
CRLF = b"\r\n"

# JSON for the wire: compact (MUTATE refuses any space), non-ASCII sent as UTF-8.
_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def dumps(value: Any) -> str:
    """``value`` as compact JSON."""
    return _encoder.encode(value)


def command(verb: str, payload: str | None = None) -> bytes:
    """One command line, CRLF-terminated."""
    if payload is None:
        return verb.encode() + CRLF
    return f"{verb} {payload}".encode() + CRLF


class Bulk(int):
    """The length announced by a ``$n`` line: the caller reads n bytes and a CRLF next."""


NIL = None


def parse_line(line: bytes) -> str | int | Bulk | None:
    """One reply line (with or without its CRLF): the text of ``+``, a :class:`Bulk` length to
    read next for ``$n`` (None for ``$-1``), an int for ``:``; raises ServerError for ``-``."""
    if line.endswith(b"\n"):
        line = line[:-2] if line.endswith(CRLF) else line[:-1]
    if not line:
        raise FaktoryError("empty reply line from the server")
    kind, rest = line[:1], line[1:]
    if kind == b"+":
        return rest.decode()
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else Bulk(n)
    if kind == b"-":
        raise ServerError.from_line(rest.decode(errors="replace"))
    if kind == b":":
        return int(rest)
    raise FaktoryError(f"unexpected reply from the server: {line[:80]!r}")


def pwdhash(password: str, salt: str, iterations: int) -> str:
    """Faktory's password hash: SHA-256 of password+salt, then of the digest, ``iterations``
    applications in all, as lower-case hex."""
    digest = hashlib.sha256((password + salt).encode()).digest()
    for _ in range(iterations - 1):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()


def hello(greeting: str, *, password: str | None = None, wid: str | None = None,
          labels: list[str] | None = None, hostname: str | None = None,
          username: str | None = None, pid: int | None = None) -> bytes:
    """The HELLO line answering the server's ``HI {...}`` greeting (the text after ``+``)."""
    if not greeting.startswith("HI "):
        raise FaktoryError(f"unexpected greeting from the server: {greeting[:80]!r}")
    hi = json.loads(greeting[3:])
    payload: dict[str, Any] = {"v": PROTOCOL_VERSION, "hostname": hostname or socket.gethostname(),
                               "pid": os.getpid() if pid is None else pid,
                               "labels": labels if labels is not None else ["python"]}
    if wid:
        payload["wid"] = wid
    if username:
        payload["username"] = username
    if "s" in hi:
        if not password:
            raise AuthenticationError("the server requires a password (FAKTORY_URL "
                                      "tcp://:password@host:port, or FAKTORY_PASSWORD)")
        payload["pwdhash"] = pwdhash(password, hi["s"], int(hi.get("i", 1)))
    return command("HELLO", dumps(payload))
