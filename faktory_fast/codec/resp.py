"""Redis reply reader and command packer: a pure state machine, no I/O.

The reference implementation and the fallback of the compiled
``ext/faktory_fast/codec/resp.pyx`` (same module name, same API, same tests;
``faktory_fast.COMPILED``). RESP2 only: our client never sends
``HELLO 3``, so a RESP3 reply type is a ProtocolError like any other unknown type byte.
"""
from __future__ import annotations

from typing import Any, Literal

__all__ = ["IMPLEMENTATION", "ProtocolError", "ReplyError", "RespReader", "pack_command"]

#: Which implementation this module is: "python" here, "cython" in ``resp.pyx``.
IMPLEMENTATION: Literal["cython", "python"] = "python"


class ReplyError(Exception):
    """An error reply; ``str(e)`` is the text after ``-``, e.g. ``"ERR unknown command"``.

    ``RespReader.feed`` returns these as values (never raises them).
    """


class ProtocolError(Exception):
    """The input is not valid RESP. The reader's state is undefined afterwards: close the
    connection."""


def _int(line: bytearray) -> int:
    try:
        return int(line)
    except ValueError:
        raise ProtocolError(f"invalid integer {bytes(line)!r}") from None


def _length(line: bytearray) -> int:
    # Bulk/array sizes must fit a C ssize_t, as in the compiled reader.
    m = _int(line)
    if not -_MAX_LEN < m < _MAX_LEN:
        raise ProtocolError(f"length out of range {bytes(line)!r}")
    return m


_MAX_LEN = 1 << 61


class RespReader:
    """Incremental RESP2 reply parser: bytes in, Python values out.

    Values: ``+x`` -> bytes; ``-x`` -> ReplyError; ``:n`` -> int; ``$n`` -> bytes (``$-1`` ->
    None); ``*n`` -> list (``*-1`` -> None), nested to any depth.
    """

    __slots__ = ("_blen", "_buf", "_scan", "_stack")

    def __init__(self) -> None:
        self._buf = bytearray()
        # Open arrays, innermost last: [elements still expected, items so far].
        self._stack: list[list[Any]] = []
        # A bulk payload whose header is parsed but whose bytes have not all arrived (-1: none),
        # so a big reply costs O(1) per chunk instead of re-parsing.
        self._blen = -1
        # Bytes of the current line already searched for CRLF (long lines in many chunks).
        self._scan = 0

    def buffered(self) -> int:
        """Bytes received but not yet consumed by a complete value."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Any]:
        """Add ``data``; return every top-level reply it completes, in order.

        Partial replies (split at any byte, nested or not) are kept across calls. A big bulk
        reply costs O(1) per chunk until complete, and each line is searched once.
        Raises ProtocolError on malformed input.
        """
        buf = self._buf
        buf += data
        n = len(buf)
        out: list[Any] = []
        stack = self._stack
        pos = 0
        try:
            while pos < n:
                val: Any
                if self._blen >= 0:
                    end = pos + self._blen
                    if end + 2 > n:
                        break
                    if buf[end:end + 2] != b"\r\n":
                        raise ProtocolError("bulk string not terminated by CRLF")
                    val = bytes(buf[pos:end])
                    pos = end + 2
                    self._blen = -1
                else:
                    nl = buf.find(b"\r\n", pos + self._scan)
                    if nl < 0:
                        self._scan = max(n - pos - 1, 0)  # a trailing \r may start the CRLF
                        break
                    self._scan = 0
                    t = buf[pos]
                    line = buf[pos + 1:nl]
                    pos = nl + 2
                    if t == 36:  # $
                        m = _length(line)
                        if m >= 0:
                            self._blen = m
                            continue
                        val = None
                    elif t == 43:  # +
                        val = bytes(line)
                    elif t == 58:  # :
                        val = _int(line)
                    elif t == 45:  # -
                        val = ReplyError(line.decode("utf-8", "replace"))
                    elif t == 42:  # *
                        m = _length(line)
                        if m > 0:
                            stack.append([m, []])
                            continue
                        val = None if m < 0 else []
                    else:
                        raise ProtocolError(f"unknown reply type byte {bytes([t])!r}")
                # Hand the value to the innermost open array, closing finished ones.
                while stack:
                    top = stack[-1]
                    top[1].append(val)
                    top[0] -= 1
                    if top[0]:
                        break
                    stack.pop()
                    val = top[1]
                else:
                    out.append(val)
        finally:
            if pos:
                del buf[:pos]  # bytearray drops a prefix cheaply (moves its start)
        return out


def _arg(a: Any) -> bytes:
    t = type(a)
    if t is bytes:
        return a
    if t is str:
        return a.encode("utf-8")
    if t is int or (isinstance(a, int) and t is not bool):
        return b"%d" % a
    if isinstance(a, float):
        return float.__repr__(a).encode()
    if isinstance(a, (bytearray, memoryview)):
        return bytes(a)
    if isinstance(a, str):
        return str.encode(a, "utf-8")
    if isinstance(a, bytes):
        return bytes(a)
    raise TypeError(f"cannot send {t.__name__} to Redis: use bytes, str, int or float")


def pack_command(*args: bytes | bytearray | memoryview | str | int | float) -> bytes:
    """One command as a RESP array of bulk strings: str as UTF-8, int in decimal, float as
    ``repr`` (exact round trip). Other types (bool, None, ...) raise TypeError."""
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        b = _arg(a)
        parts.append(b"$%d\r\n" % len(b))
        parts.append(b)
        parts.append(b"\r\n")
    return b"".join(parts)
