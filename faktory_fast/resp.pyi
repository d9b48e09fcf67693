"""Redis RESP reply reader and command packer (compiled ``_resp`` or ``resp_py``)."""
from types import ModuleType
from typing import Any, Iterable, Literal

IMPLEMENTATION: Literal["cython", "python"]
cython_impl: ModuleType | None
python_impl: ModuleType

class ReplyError(Exception):
    """An error reply; ``str(e)`` is the text after ``-``, e.g. ``"ERR unknown command"``.

    ``RespReader.feed`` returns these as values (never raises them). One class for both
    implementations.
    """

class ProtocolError(Exception):
    """The input is not valid RESP. The reader's state is undefined afterwards: close the
    connection. One class for both implementations."""

class RespReader:
    """Incremental RESP2/RESP3 reply parser; a pure state machine (no I/O).

    Values: ``+x`` -> bytes; ``-x`` -> ReplyError; ``:n`` -> int; ``$n`` -> bytes (``$-1`` ->
    None); ``*n`` -> list (``*-1`` -> None), nested to any depth. RESP3: ``_`` -> None,
    ``#t``/``#f`` -> bool, ``,`` -> float, ``(`` -> int, ``%`` -> dict (array keys become
    tuples), ``~`` set and ``>`` push -> list, ``=`` verbatim -> bytes without the ``txt:``
    prefix, ``!`` -> ReplyError, ``|`` attributes are parsed and dropped.
    """

    def __init__(self) -> None: ...
    def feed(self, data: bytes) -> list[Any]:
        """Add ``data``; return every top-level reply it completes, in order.

        Partial replies (split at any byte, nested or not) are kept across calls. A big bulk
        reply costs O(1) per chunk until complete, and each line is searched once.
        Raises ProtocolError on malformed input.
        """
    def buffered(self) -> int:
        """Bytes received but not yet consumed by a complete value."""

def pack_command(*args: bytes | bytearray | memoryview | str | int | float) -> bytes:
    """One command as a RESP array of bulk strings: str as UTF-8, int in decimal, float as
    ``repr`` (exact round trip). Other types (bool, None, ...) raise TypeError."""

def pack_commands(cmds: Iterable[tuple[Any, ...]]) -> bytes:
    """Several commands concatenated, e.g. for a pipeline."""
