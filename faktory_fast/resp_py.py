"""Pure-Python Redis reply reader and command packer (fallback for ``faktory_fast._resp``).

Same API and behaviour as the compiled module; ``faktory_fast.resp`` picks one. The exceptions
are defined here only, so both implementations use the same classes.
"""
from __future__ import annotations

from typing import Any

__all__ = ["ReplyError", "ProtocolError", "RespReader", "pack_command", "pack_commands"]


class ReplyError(Exception):
    """An error reply from Redis (``-ERR ...``); returned by ``RespReader.feed``, not raised."""


class ProtocolError(Exception):
    """The byte stream is not valid RESP; the reader is unusable afterwards."""


# Aggregate kinds kept on the stack while their elements arrive.
_ARRAY, _MAP, _ATTR = 0, 1, 2
_AGGREGATES = {42: _ARRAY, 126: _ARRAY, 62: _ARRAY, 37: _MAP, 124: _ATTR}  # * ~ > % |


def _hashable(key: Any) -> Any:
    # Map keys may be arrays in RESP3; a dict needs them hashable.
    if type(key) is list:
        return tuple(_hashable(k) for k in key)
    if type(key) is dict:
        return tuple((_hashable(k), _hashable(v)) for k, v in key.items())
    return key


def _to_map(items: list) -> dict:
    try:
        return dict(zip(items[::2], items[1::2]))
    except TypeError:
        return {_hashable(k): v for k, v in zip(items[::2], items[1::2])}


def _int(line: bytearray) -> int:
    try:
        return int(line)
    except ValueError:
        raise ProtocolError(f"invalid integer {bytes(line)!r}") from None


def _length(line: bytearray) -> int:
    # Bulk/aggregate sizes must fit a C ssize_t even when doubled (maps), as in the compiled reader.
    m = _int(line)
    if not -_MAX_LEN < m < _MAX_LEN:
        raise ProtocolError(f"length out of range {bytes(line)!r}")
    return m


_MAX_LEN = 1 << 61


class RespReader:
    """Incremental RESP2 (and RESP3) reply parser: bytes in, Python values out; no I/O."""

    __slots__ = ("_buf", "_stack", "_blen", "_bkind", "_scan")

    def __init__(self) -> None:
        self._buf = bytearray()
        # Open aggregates, innermost last: [kind, elements still expected, items so far].
        self._stack: list[list] = []
        # A bulk payload whose header is parsed but whose bytes have not all arrived (-1: none),
        # so a big reply costs O(1) per chunk instead of re-parsing.
        self._blen = -1
        self._bkind = 36
        # Bytes of the current line already searched for CRLF (long lines in many chunks).
        self._scan = 0

    def buffered(self) -> int:
        """Bytes received but not yet consumed by a complete value."""
        return len(self._buf)

    def feed(self, data: bytes) -> list:
        """Return all top-level replies completed by ``data`` (error replies as ReplyError)."""
        buf = self._buf
        buf += data
        n = len(buf)
        out: list = []
        stack = self._stack
        pos = 0
        try:
            while pos < n:
                if self._blen >= 0:
                    end = pos + self._blen
                    if end + 2 > n:
                        break
                    if buf[end:end + 2] != b"\r\n":
                        raise ProtocolError("bulk string not terminated by CRLF")
                    val: Any = bytes(buf[pos:end])
                    pos = end + 2
                    self._blen = -1
                    kind = self._bkind
                    if kind == 61:  # '=' verbatim: drop the "txt:" format prefix
                        val = val[4:]
                    elif kind == 33:  # '!' blob error
                        val = ReplyError(val.decode("utf-8", "replace"))
                else:
                    nl = buf.find(b"\r\n", pos + self._scan)
                    if nl < 0:
                        self._scan = max(n - pos - 1, 0)  # a trailing \r may start the CRLF
                        break
                    self._scan = 0
                    t = buf[pos]
                    line = buf[pos + 1:nl]
                    pos = nl + 2
                    if t == 36 or t == 61 or t == 33:  # $ = !
                        m = _length(line)
                        if m < 0:
                            val = None
                        else:
                            self._blen = m
                            self._bkind = t
                            continue
                    elif t == 43:  # +
                        val = bytes(line)
                    elif t == 58:  # :
                        val = _int(line)
                    elif t == 45:  # -
                        val = ReplyError(line.decode("utf-8", "replace"))
                    elif t in _AGGREGATES:
                        m = _length(line)
                        kind = _AGGREGATES[t]
                        if kind != _ARRAY:
                            m *= 2
                        if m < 0:
                            val = None
                        elif m == 0:
                            if kind == _ATTR:
                                continue
                            val = {} if kind == _MAP else []
                        else:
                            stack.append([kind, m, []])
                            continue
                    elif t == 95:  # _
                        val = None
                    elif t == 35:  # #
                        val = line == b"t"
                    elif t == 44:  # ,
                        try:
                            val = float(line)
                        except ValueError:
                            raise ProtocolError(f"invalid double {bytes(line)!r}") from None
                    elif t == 40:  # ( big number
                        val = _int(line)
                    else:
                        raise ProtocolError(f"unknown reply type byte {bytes([t])!r}")
                # Hand the value to the innermost open aggregate, closing finished ones.
                while stack:
                    top = stack[-1]
                    top[2].append(val)
                    top[1] -= 1
                    if top[1]:
                        break
                    stack.pop()
                    kind = top[0]
                    if kind == _ATTR:  # attributes annotate the next reply: discard them
                        break
                    val = _to_map(top[2]) if kind == _MAP else top[2]
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


def pack_command(*args: Any) -> bytes:
    """One command as a RESP array of bulk strings (bytes, str as UTF-8, int, float via repr)."""
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        b = _arg(a)
        parts.append(b"$%d\r\n" % len(b))
        parts.append(b)
        parts.append(b"\r\n")
    return b"".join(parts)


def pack_commands(cmds: list[tuple]) -> bytes:
    """Several commands (for a pipeline), concatenated."""
    return b"".join([pack_command(*c) for c in cmds])
