"""The exceptions the client raises: every one is a :class:`FaktoryError`."""
from __future__ import annotations


class FaktoryError(Exception):
    """Base class of this package's errors."""


class ServerError(FaktoryError):
    """The server answered a command with an error line (``-CODE message``).

    ``code`` is the first word (``ERR``, ``NOTUNIQUE``...), ``message`` the rest; ``str()`` is
    the whole line after the dash, as the Go client reports it."""

    def __init__(self, line: str) -> None:
        super().__init__(line)
        code, _, message = line.partition(" ")
        self.code = code
        self.message = message

    @staticmethod
    def from_line(line: str) -> ServerError:
        """The error for a ``-`` line (the text after the dash): :class:`NotUniqueError` for
        ``NOTUNIQUE``, else ServerError."""
        if line.startswith("NOTUNIQUE"):
            return NotUniqueError(line)
        return ServerError(line)


class NotUniqueError(ServerError):
    """PUSH of a unique job (``unique_for``) while an equal one holds the lock: not pushed."""


class AuthenticationError(FaktoryError):
    """The handshake failed: a wrong or missing password (or the server closed the connection)."""


class FaktoryConnectionError(FaktoryError, ConnectionError):
    """The client could not reach the server, or the connection broke before a command was
    written: the command was *not* applied, and trying again is safe."""


class UnansweredError(FaktoryConnectionError):
    """The connection broke after a command was written and before its reply arrived.

    The server may or may not have applied it: a PUSH may or may not have landed (pushing the
    job again with the same jid may make a second copy unless the job is unique). The client
    never resends such a command by itself, except the idempotent reads and acknowledgements
    that its docstrings name, which it retries once on a new connection."""


class BatchError(FaktoryError):
    """A batch used out of order: pushed to before it was created or after it was committed."""
