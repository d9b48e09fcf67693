"""Redis URLs: the forms faktory_fast accepts for ``REDIS_URL`` (and its child Redis's socket),
split into what a client needs, and shown without their passwords. At the bottom of the
package: the storage layer, the configuration and the web UI all read them."""
from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import unquote, urlparse

from faktory_fast.log import show

MAX_PARTITIONS = 256  # of a cluster's URL: a server process opens a Redis connection for each

_LABEL = re.compile(r"[A-Za-z0-9_-]{1,63}")


def host_ok(host: str) -> bool:
    """An IP address, or a host name of ASCII labels (as getaddrinfo takes one)."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    name = host[:-1] if host.endswith(".") else host
    return len(name) <= 253 and all(_LABEL.fullmatch(label) for label in name.split("."))


def _shown(url: str) -> str:
    """A Redis URL as messages show it: its passwords (``:pw@``, ``sentinel_password=``)
    masked."""
    url = re.sub(r"(sentinel_password=)[^&]*", r"\1***", url)
    return show(re.sub(r"(//[^/@]*?:)[^/@]*@", r"\1***@", url))


def parse_redis_url(url: str) -> dict[str, Any]:
    """Split a Redis URL into its parts; ValueError (with the accepted forms) if it is none.

    ``unix:///path/redis.sock?db=0``, ``redis://[:pw@]host:port/db`` (``rediss://``: TLS), or
    ``redis+sentinel://[:pw@]host:port[,host:port...]/primary-name[/db]``: the Sentinels to ask
    for the current primary of ``primary-name`` (``sentinels``, ``service``); ``pw`` is the
    primary's password, ``?sentinel_password=`` the Sentinels' own, if they have one; or
    ``redis+cluster://[:pw@]host:port[,host:port...][?partitions=N[&queue.NAME=K...]]``
    (``rediss+cluster://``: TLS): nodes of a Redis Cluster to ask where the rest are
    (``cluster``; database 0, the only one a cluster has), how many partitions our keys are
    spread over (``partitions``, default 1: ``keys.partition_tags``) and the queues placed in
    a partition of the user's choosing (``pinned``: name -> K, from 0 to N - 1) rather than by
    their names' hash (``keys.partition_of``).
    """
    u = urlparse(url)
    out: dict[str, Any] = {"password": None, "db": 0}
    if u.scheme == "redis+sentinel":
        return _parse_sentinel_url(url, u.netloc, u.path, u.query, out)
    if u.scheme in ("redis+cluster", "rediss+cluster"):
        out["ssl"] = u.scheme == "rediss+cluster"
        return _parse_cluster_url(url, u.netloc, u.path, u.query, out)
    out["password"] = unquote(u.password) if u.password else None
    if u.scheme == "unix" or (not u.scheme and url.startswith("/")):
        if not u.path:
            raise ValueError(f"invalid Redis URL {_shown(url)}: the socket's path is missing")
        out["path"] = u.path
        for part in u.query.split("&"):
            if part.startswith("db="):
                out["db"] = _db(part[3:], url)
    elif u.scheme in ("redis", "rediss"):
        try:
            out["host"] = u.hostname or "localhost"
            out["port"] = u.port or 6379
        except ValueError:
            raise ValueError(f"invalid Redis URL {_shown(url)}: bad port") from None
        if not host_ok(out["host"]):
            raise ValueError(f"invalid Redis URL {_shown(url)}: {show(out['host'])} is not a host "
                             "name or address")
        out["ssl"] = u.scheme == "rediss"
        if u.path and u.path.strip("/"):
            out["db"] = _db(u.path.strip("/"), url)
    else:
        raise ValueError(f"unsupported Redis URL {_shown(url)}: use unix:///path, redis://host:port, "
                         "redis+sentinel://host:port[,host:port...]/primary-name or "
                         "redis+cluster://host:port[,host:port...]")
    return out


def _db(text: str, url: str) -> int:
    # SELECT takes a C int.
    if not re.fullmatch(r"[0-9]{1,10}", text) or int(text) > 2**31 - 1:
        raise ValueError(f"invalid Redis URL {_shown(url)}: the database must be a number from 0 to "
                         f"{2**31 - 1}, not {show(text)}")
    return int(text)


def _hosts(url: str, netloc: str, out: dict[str, Any], default_port: str, what: str
           ) -> list[tuple[str, int]]:
    """The ``host:port`` list of a Sentinel or cluster URL (the password, if any, into
    ``out``)."""
    auth, _, hosts = netloc.rpartition("@")
    if auth:
        out["password"] = unquote(auth.partition(":")[2] if ":" in auth else auth) or None
    found = []
    for part in hosts.split(","):
        host, sep, port = part.rpartition(":")
        if not sep:
            host, port = part, default_port
        host = host.strip("[]")
        if not host_ok(host) or not re.fullmatch(r"[0-9]{1,5}", port) or not 0 < int(port) < 65536:
            raise ValueError(f"invalid Redis URL {_shown(url)}: {part!r} is not {what}'s host:port")
        found.append((host, int(port)))
    return found


def _parse_cluster_url(url: str, netloc: str, path: str, query: str,
                       out: dict[str, Any]) -> dict[str, Any]:
    out["cluster"] = _hosts(url, netloc, out, "6379", "a cluster node")
    if path.strip("/") not in ("", "0"):
        raise ValueError(f"invalid Redis URL {_shown(url)}: a Redis Cluster has database 0 only")
    out["partitions"] = 1
    out["pinned"] = pinned = {}
    for part in query.split("&"):
        name, _, value = part.partition("=")
        name = unquote(name)
        if name == "partitions" or name.startswith("queue."):
            if not re.fullmatch(r"[0-9]{1,4}", value) or int(value) > MAX_PARTITIONS:
                raise ValueError(f"invalid Redis URL {_shown(url)}: {show(name)} must be a "
                                 f"number up to {MAX_PARTITIONS}, not {show(value)}")
            if name == "partitions":
                out["partitions"] = int(value)
            elif name != "queue.":
                pinned[name[len("queue."):]] = int(value)
        elif part:
            raise ValueError(f"invalid Redis URL {_shown(url)}: unknown parameter {show(name)} "
                             "(a cluster's URL takes partitions=N and queue.NAME=K)")
    if out["partitions"] < 1:
        raise ValueError(f"invalid Redis URL {_shown(url)}: partitions must be at least 1")
    for queue, k in pinned.items():
        if k >= out["partitions"]:
            raise ValueError(f"invalid Redis URL {_shown(url)}: {show('queue.' + queue)}={k}, "
                             f"but the partitions are 0 to {out['partitions'] - 1}")
    return out


def _parse_sentinel_url(url: str, netloc: str, path: str, query: str,
                        out: dict[str, Any]) -> dict[str, Any]:
    sentinels = _hosts(url, netloc, out, "26379", "a Sentinel")
    name, _, db = path.strip("/").partition("/")
    if not name:
        raise ValueError(f"invalid Redis URL {_shown(url)}: the primary's name is missing "
                         "(redis+sentinel://host:port/primary-name)")
    out["sentinels"] = sentinels
    out["service"] = unquote(name)
    out["db"] = _db(db.strip("/"), url) if db.strip("/") else 0
    out["sentinel_password"] = None
    for part in query.split("&"):
        if part.startswith("sentinel_password="):
            out["sentinel_password"] = unquote(part.partition("=")[2]) or None
    return out


def redis_location(url: str) -> str:
    """Where a Redis URL points, without its password (for logs and the web UI): the socket
    path, or the URL."""
    target = parse_redis_url(url)
    if "path" in target:
        return target["path"]
    if "sentinels" in target:
        hosts = ",".join(f"{h}:{p}" for h, p in target["sentinels"])
        return f"redis+sentinel://{hosts}/{target['service']}/{target['db']}"
    if "cluster" in target:
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in target["cluster"])
        query = "&".join([f"partitions={target['partitions']}"] * (target["partitions"] > 1)
                         + [f"queue.{q}={k}" for q, k in target["pinned"].items()])
        return f"{'rediss' if target['ssl'] else 'redis'}+cluster://{hosts}" + (
            f"?{query}" if query else "")
    scheme = "rediss" if target.get("ssl") else "redis"
    host = f"[{target['host']}]" if ":" in target["host"] else target["host"]
    return f"{scheme}://{host}:{target['port']}/{target['db']}"
