"""A tiny RESP2 reply parser and command encoder (Faktory replies and raw Redis traffic)."""
from __future__ import annotations

from typing import Any

OK = b"OK"
OK_LINE = b"+OK\r\n"


class ErrorReply(str):
    """A ``-CODE message`` reply; a str subclass so generators can test it with ``type(x) is ErrorReply``."""


class ProtocolError(Exception):
    """The peer sent something that is not RESP."""


def parse(buf: bytes, pos: int = 0) -> tuple[Any, int] | None:
    """Parse one reply from ``buf`` at ``pos``.

    Returns ``(value, next_pos)`` or ``None`` when the reply is incomplete. Values: simple string →
    bytes, bulk → bytes (nil → None), error → ErrorReply, integer → int, array → list (nil → None).
    """
    nl = buf.find(b"\r\n", pos)
    if nl < 0:
        return None
    kind = buf[pos]
    if kind == 36:  # '$'
        n = int(buf[pos + 1:nl])
        if n < 0:
            return None, nl + 2
        end = nl + 2 + n
        if len(buf) < end + 2:
            return None
        return buf[nl + 2:end], end + 2
    if kind == 43:  # '+'
        return buf[pos + 1:nl], nl + 2
    if kind == 45:  # '-'
        return ErrorReply(buf[pos + 1:nl].decode("utf-8", "replace")), nl + 2
    if kind == 58:  # ':'
        return int(buf[pos + 1:nl]), nl + 2
    if kind == 42:  # '*'
        n = int(buf[pos + 1:nl])
        pos = nl + 2
        if n < 0:
            return None, pos
        items = []
        for _ in range(n):
            r = parse(buf, pos)
            if r is None:
                return None
            items.append(r[0])
            pos = r[1]
        return items, pos
    raise ProtocolError(f"unexpected reply byte {bytes([kind])!r} in {buf[pos:pos + 80]!r}")


def encode_command(*args: bytes | str | int | float) -> bytes:
    """Encode a Redis command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if not isinstance(a, bytes):
            a = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)
