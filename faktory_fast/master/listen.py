"""The master's listening sockets (the server's port, the web UI's), and its start-up error."""
from __future__ import annotations

import socket


class StartupError(RuntimeError):
    """The server cannot start; the message says why."""


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port``, inherited by the children that accept on it."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:  # a name that does not resolve (now)
        raise StartupError(f"cannot listen on {host}:{port}: "
                           f"{getattr(exc, 'strerror', None) or exc}") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock
