"""The command port's network edge: native TLS and the PROXY protocol's header.

* TLS, as Faktory 1.9 does it: when ``<config dir>/private.key.pem`` and
  ``<config dir>/public.cert.pem`` both exist, the command port and the web UI serve TLS only,
  TLS 1.2 or later (``tls_files``, ``server_context``).
* PROXY protocol v1 (text) and v2 (binary), as haproxy's ``send-proxy`` / ``send-proxy-v2`` and
  stunnel's ``protocol = proxy`` send it (``parse_proxy_header``); ``server.connection.ProxyHeader`` reads it
  on connections from ``--proxy-from`` addresses only.

The header parser is written here rather than taken from PyPI: the one library for it
(``proxy-protocol``) is marked alpha, has had no release since April 2024 and is built around
asyncio streams, while the two formats take some 80 lines (spec: haproxy's proxy-protocol.txt).
"""
from __future__ import annotations

import ipaddress
import os
import ssl
from collections.abc import Iterable, Sequence
from typing import Any

CERT_FILE = "public.cert.pem"
KEY_FILE = "private.key.pem"
#: Seconds a client has to finish its TLS handshake (a plain-TCP client is closed after it).
TLS_HANDSHAKE_TIMEOUT = 5.0
#: Trusted PROXY header senders unless ``--proxy-from`` says otherwise: this machine.
DEFAULT_PROXY_FROM = "127.0.0.0/8,::1/128"

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_PREFIX = b"PROXY "
V1_MAX = 107  # the longest v1 header, CRLF included (the spec's bound)
_AF_UNSPEC, _AF_INET, _AF_INET6, _AF_UNIX = 0, 1, 2, 3
_UNSPEC, _STREAM = 0, 1

Address = tuple[str, int]
Networks = Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]


class ProxyHeaderError(ValueError):
    """Not a PROXY protocol header, or a malformed one; the message says what is wrong."""


# -- TLS --------------------------------------------------------------------------------------

def tls_files(config_dir: str) -> tuple[str, str] | None:
    """``(cert, key)`` when both of Faktory's TLS files are in ``config_dir``, else None."""
    cert = os.path.join(config_dir, CERT_FILE)
    key = os.path.join(config_dir, KEY_FILE)
    return (cert, key) if os.path.exists(cert) and os.path.exists(key) else None


def server_context(cert: str, key: str) -> ssl.SSLContext:
    """A server-side context: TLS 1.2 or later, the certificate chain and its key.

    Raises ``ssl.SSLError`` or ``OSError`` when the files cannot be used."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


# -- trusted proxies --------------------------------------------------------------------------

def parse_networks(spec: str | Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """``"127.0.0.0/8,10.1.2.3"`` (or a list of such) into networks; ValueError names a bad one."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"{item!r} is not an address or CIDR network")
        item = item.strip()
        if not item:
            continue
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an address or CIDR network") from None
    if not out:
        raise ValueError("no address or network given")
    return out


def trusted(peer: Any, networks: Networks) -> bool:
    """Whether a socket peer (``getpeername()``) is in one of ``networks``."""
    if not isinstance(peer, tuple) or not peer:
        return False
    try:
        ip = ipaddress.ip_address(peer[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # a dual-stack socket's IPv4 client
    return any(ip in net for net in networks)


def address_text(addr: Any) -> str:
    """``host:port`` (``[v6]:port``) of a socket address; "" when there is none."""
    if not isinstance(addr, tuple) or len(addr) < 2:
        return ""
    host = addr[0]
    return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"


# -- the PROXY header -------------------------------------------------------------------------

def looks_like_proxy_header(data: bytes) -> bool:
    """Whether a connection's first bytes start a PROXY header (v1 or v2)."""
    return data.startswith(b"PROXY") or (len(data) >= 4 and V2_SIGNATURE.startswith(data[:12]))


def parse_proxy_header(data: bytes) -> tuple[int, Address | None] | None:
    """Parse the PROXY header at the start of ``data``.

    Returns None while the header is incomplete, else ``(length, client)``: the header's length
    in bytes and the client's address, None when the header gives none (v1 ``UNKNOWN``, v2
    ``LOCAL`` as health checks send it, or an address family other than TCP over IPv4/IPv6):
    the connection's own peer stands then. Raises ProxyHeaderError on anything else.
    """
    if data[:1] == b"\r":
        return _parse_v2(data)
    n = min(len(data), len(V1_PREFIX))
    if data[:n] != V1_PREFIX[:n]:
        raise ProxyHeaderError("the connection does not start with a PROXY header")
    end = data.find(b"\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX:
            raise ProxyHeaderError(f"v1 header longer than {V1_MAX} bytes")
        return None
    if data[end - 1:end] != b"\r":
        raise ProxyHeaderError("v1 header not ended by CRLF")
    try:
        text = data[len(V1_PREFIX):end - 1].decode("ascii")
    except UnicodeDecodeError:
        raise ProxyHeaderError("v1 header is not ASCII") from None
    parts = text.split(" ")
    if parts[0] == "UNKNOWN":
        return end + 1, None
    if len(parts) != 5 or parts[0] not in ("TCP4", "TCP6"):
        raise ProxyHeaderError(f"v1 header {text!r}: expected TCP4|TCP6 src dst sport dport")
    version = 4 if parts[0] == "TCP4" else 6
    for addr in parts[1:3]:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            ip = None
        if ip is None or ip.version != version:
            raise ProxyHeaderError(f"v1 header: {addr!r} is not an IPv{version} address")
    for port in parts[3:5]:
        if not (port.isdigit() and port.isascii()) or (port[0] == "0" and port != "0") \
                or int(port) > 65535:
            raise ProxyHeaderError(f"v1 header: {port!r} is not a port")
    return end + 1, (str(ipaddress.ip_address(parts[1])), int(parts[3]))


def _parse_v2(data: bytes) -> tuple[int, Address | None] | None:
    n = min(len(data), len(V2_SIGNATURE))
    if data[:n] != V2_SIGNATURE[:n]:
        raise ProxyHeaderError("the connection does not start with a PROXY header")
    if len(data) < 16:
        return None
    ver_cmd, fam = data[12], data[13]
    length = int.from_bytes(data[14:16], "big")
    if ver_cmd >> 4 != 2:
        raise ProxyHeaderError(f"v2 header of version {ver_cmd >> 4}")
    command = ver_cmd & 0x0F
    if command > 1:
        raise ProxyHeaderError(f"v2 header with unknown command {command}")
    end = 16 + length
    if len(data) < end:
        return None
    family, proto = fam >> 4, fam & 0x0F
    if command == 0 or family in (_AF_UNSPEC, _AF_UNIX):  # LOCAL (a health check), or no IP
        return end, None
    if family not in (_AF_INET, _AF_INET6) or proto not in (_UNSPEC, _STREAM):
        raise ProxyHeaderError(f"v2 header with unsupported address family/protocol 0x{fam:02x}")
    if proto == _UNSPEC:
        return end, None
    size = 4 if family == _AF_INET else 16
    if length < 2 * size + 4:
        raise ProxyHeaderError(f"v2 header's address block is {length} bytes, too short")
    src = ipaddress.ip_address(data[16:16 + size])
    port = int.from_bytes(data[16 + 2 * size:18 + 2 * size], "big")
    return end, (str(src), port)  # TLVs (after the addresses) are skipped


__all__ = ["tls_files", "server_context", "parse_networks", "trusted", "address_text",
           "parse_proxy_header", "looks_like_proxy_header", "ProxyHeaderError",
           "DEFAULT_PROXY_FROM", "TLS_HANDSHAKE_TIMEOUT", "V2_SIGNATURE"]
