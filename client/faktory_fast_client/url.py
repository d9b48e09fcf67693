"""Where the server is: ``FAKTORY_URL`` / ``FAKTORY_PROVIDER`` as every Faktory client reads them.

``tcp://host:port`` or ``tcp+tls://host:port``, optionally with ``:password@`` (or
``user:password@``; the password is URL-unescaped). With no URL: ``FAKTORY_PROVIDER`` names the
variable holding the URL, else ``FAKTORY_URL``, else ``tcp://localhost:7419``. ``FAKTORY_PASSWORD``
gives the password when the URL has none.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

DEFAULT_URL = "tcp://localhost:7419"
DEFAULT_PORT = 7419


@dataclass(frozen=True)
class ServerAddress:
    """A parsed Faktory URL."""

    host: str
    port: int
    tls: bool = False
    password: str | None = None
    username: str | None = None

    @property
    def url(self) -> str:
        """The URL without its credentials (safe to log)."""
        scheme = "tcp+tls" if self.tls else "tcp"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"


def resolve_url(url: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """The URL to use: ``url`` if given, else from the environment as described above."""
    if url:
        return url
    env = os.environ if env is None else env
    provider = env.get("FAKTORY_PROVIDER")
    if provider:
        if ":" in provider:  # as Go and Ruby: the provider names a variable, it is not a URL
            raise ValueError(f"FAKTORY_PROVIDER names an environment variable, not a URL: {provider!r}")
        found = env.get(provider)
        if not found:
            raise ValueError(f"FAKTORY_PROVIDER={provider} but ${provider} is not set")
        return found
    return env.get("FAKTORY_URL") or DEFAULT_URL


def parse_url(url: str | None = None, env: Mapping[str, str] | None = None) -> ServerAddress:
    """Parse a Faktory URL (``url`` or the environment's); raises ValueError when malformed."""
    env = os.environ if env is None else env
    text = resolve_url(url, env)
    if "://" not in text:  # "localhost:7419", as Go accepts
        text = "tcp://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("tcp", "tcp+tls"):
        raise ValueError(f"unsupported Faktory URL scheme {parts.scheme!r} (tcp:// or tcp+tls://)")
    password = unquote(parts.password) if parts.password else None
    username = unquote(parts.username) if parts.username else None
    return ServerAddress(host=parts.hostname or "localhost", port=parts.port or DEFAULT_PORT,
                         tls=parts.scheme == "tcp+tls",
                         password=password or env.get("FAKTORY_PASSWORD") or None,
                         username=username or None)
