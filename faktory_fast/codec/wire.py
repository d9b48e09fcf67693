"""Faktory client-command framer and reply serializers: a pure state machine, no I/O.

The reference implementation and the fallback of the compiled
``ext/faktory_fast/codec/wire.pyx`` (same module name, same API, same tests;
``faktory_fast.COMPILED``).
"""
from __future__ import annotations

from typing import Literal

__all__ = ["IMPLEMENTATION", "NIL", "OK", "CommandFramer", "bulk", "error"]

#: Which implementation this module is: "python" here, "cython" in ``wire.pyx``.
IMPLEMENTATION: Literal["cython", "python"] = "python"

OK = b"+OK\r\n"
NIL = b"$-1\r\n"  # the nil bulk string


class CommandFramer:
    """Incremental client-command framer: bytes in, ``(verb, payload)`` tuples out.

    A line ends at ``\\n``; a trailing ``\\r\\n`` or bare ``\\n`` is stripped. The verb is the
    bytes before the first space (case kept), the payload the bytes after it (``b""`` if none).

    ``max_line`` is the longest accepted line in bytes, not counting its terminator.
    ``overflow`` is set once a line (complete, or still arriving) exceeds it: ``feed`` still
    returns the lines completed before it, drops everything after, and from then on returns
    ``[]``; the caller should reply with an error and close the connection.
    """

    __slots__ = ("_buf", "max_line", "overflow")

    def __init__(self, max_line: int = 16 * 1024 * 1024) -> None:
        self.max_line: int = max_line
        self.overflow: bool = False
        # The incomplete last line; bytearray so appending chunks is amortized O(1).
        self._buf: bytearray = bytearray()

    def buffered(self) -> int:
        """Bytes of the incomplete last line currently held."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        """Add ``data``; return every line it completes as ``(verb, payload)``, in order.

        Incomplete data is buffered; each byte is searched once, so a long line arriving in
        many chunks costs O(n). Never raises for long lines: check ``overflow`` afterwards.
        """
        if self.overflow:
            return []
        if type(data) is not bytes:
            data = bytes(data)
        out: list[tuple[bytes, bytes]] = []
        buf = self._buf
        if buf:
            nl = data.find(b"\n")
            if nl < 0:
                buf += data
                self._check_tail()
                return out
            # Only the new data is searched, so a line arriving in many chunks costs O(n).
            buf += data[:nl]
            line = bytes(buf)
            buf.clear()
            if not self._line(line, out):
                return out
            data = data[nl + 1:]
        lines = data.split(b"\n")
        tail = lines.pop()
        for line in lines:
            if not self._line(line, out):
                return out
        if tail:
            buf += tail
            self._check_tail()
        return out

    def _line(self, line: bytes, out: list[tuple[bytes, bytes]]) -> bool:
        if line[-1:] == b"\r":
            line = line[:-1]
        if len(line) > self.max_line:
            self._overflowed()
            return False
        verb, _, payload = line.partition(b" ")
        out.append((verb, payload))
        return True

    def _check_tail(self) -> None:
        buf = self._buf
        n = len(buf)
        # A trailing \r may be half of the terminator, so it does not count yet.
        if n > self.max_line and (n - (buf[-1] == 13)) > self.max_line:
            self._overflowed()

    def _overflowed(self) -> None:
        self.overflow = True
        self._buf = bytearray()  # free the memory; the parser is done


def _one_line(s: str | bytes) -> bytes:
    if isinstance(s, str):
        s = s.encode("utf-8", "replace")
    else:
        s = bytes(s)
    if b"\r" in s or b"\n" in s:
        s = s.replace(b"\r", b" ").replace(b"\n", b" ")
    return s


def error(msg: str | bytes, code: str | bytes = "ERR") -> bytes:
    """A RESP error line ``-CODE msg\\r\\n``; CR/LF inside become spaces; str is UTF-8."""
    return b"-" + _one_line(code) + b" " + _one_line(msg) + b"\r\n"


def bulk(data: bytes | str | None) -> bytes:
    """A RESP bulk string ``$len\\r\\ndata\\r\\n`` (str as UTF-8); None gives the nil bulk
    ``$-1\\r\\n``."""
    if data is None:
        return NIL
    if isinstance(data, str):
        data = data.encode("utf-8")
    return b"$%d\r\n%b\r\n" % (len(data), data)
