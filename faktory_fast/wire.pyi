"""Faktory client-command framing and reply serializers (compiled ``_wire`` or ``wire_py``)."""
from types import ModuleType
from typing import Literal

IMPLEMENTATION: Literal["cython", "python"]
cython_impl: ModuleType | None
python_impl: ModuleType

OK: bytes
"""``b"+OK\\r\\n"``."""
NIL: bytes
"""``b"$-1\\r\\n"``, the nil bulk string."""

class LineTooLong(Exception):
    """A client line is longer than ``max_line`` (one class for both implementations).

    ``CommandParser.feed`` does not raise it (see ``CommandParser.overflow``); it is here for
    callers that want to turn an overflow into an exception.
    """

class CommandParser:
    """Incremental client-command framer; a pure state machine (no I/O).

    A line ends at ``\\n``; a trailing ``\\r\\n`` or bare ``\\n`` is stripped. The verb is the
    bytes before the first space (case kept), the payload the bytes after it (``b""`` if none).
    """

    max_line: int
    """Longest accepted line in bytes, not counting its ``\\r\\n``/``\\n`` terminator."""
    overflow: bool
    """Set once a line (complete, or still arriving) exceeds ``max_line``. ``feed`` still
    returns the lines completed before it, drops everything after, and from then on returns
    ``[]``: the caller should reply with an error and close the connection."""

    def __init__(self, max_line: int = 16 * 1024 * 1024) -> None: ...
    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        """Add ``data``; return every line it completes as ``(verb, payload)``, in order.

        Incomplete data is buffered; each byte is searched once, so a long line arriving in
        many chunks costs O(n). Never raises for long lines: check ``overflow`` afterwards.
        """
    def buffered(self) -> int:
        """Bytes of the incomplete last line currently held."""

def ok() -> bytes:
    """``b"+OK\\r\\n"``."""

def simple(s: bytes) -> bytes:
    """A simple-string reply ``b"+" + s + b"\\r\\n"``; ``s`` must not contain CR/LF."""

def error(msg: str | bytes, code: str | bytes = "ERR") -> bytes:
    """An error reply ``-CODE msg\\r\\n``; CR/LF inside become spaces; str is UTF-8."""

def bulk(data: bytes | str | None) -> bytes:
    """A bulk-string reply ``$<len>\\r\\n<data>\\r\\n`` (str as UTF-8); None gives ``$-1\\r\\n``."""
