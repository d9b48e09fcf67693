"""Command-line flags, environment and conf.d/*.toml, resolved into one Config (Faktory's rules)."""
from __future__ import annotations

import argparse
import glob
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlparse

from faktory_fast import FAKTORY_VERSION, __version__, net
from faktory_fast.cron import CronEntry, CronError, parse_entries
from faktory_fast.jobs import QUEUE_NAME

ENVIRONMENTS = ("development", "staging", "production")
LOG_LEVELS = ("error", "warn", "info", "debug")
DEFAULT_BINDING = "localhost:7419"
DEFAULT_WEB_BINDING = "localhost:7420"
DEFAULT_DATA_DIR = "/var/lib/faktory/db"
DEFAULT_CONFIG_DIR = "/etc/faktory"
PASSWORD_REQUIRED = (
    "faktory requires a password to be set in staging or production, see the Security wiki page"
)


class ConfigError(Exception):
    """Invalid flags or configuration: reported on one line, exit status 2."""


@dataclass
class Config:
    """Everything the server needs to start, after defaults and precedence rules."""

    host: str = "localhost"
    port: int = 7419
    web_host: str = "localhost"
    web_port: int = 7420  # 0 disables the web UI
    environment: str = "development"
    log_level: str = "info"
    data_dir: str = ""
    config_dir: str = ""
    password: str = ""
    web_password: str = ""
    processes: int = 0  # load() sets it: the flag, or default_processes()
    durability: str = "everysec"
    redis_server: str | None = None
    redis_url: str | None = None  # a Redis of the user's instead of the child
    redis_wait_replicas: int = 0  # acknowledged PUSHes wait until this many replicas have them
    redis_wait_timeout: int = 1000  # milliseconds; a PUSH not replicated by then gets -ERR
    max_line: int = 16 * 1024 * 1024
    max_connections: int = 2000
    backup_every: int = 3600  # seconds between backups of the child Redis; 0: none
    backup_keep: int = 24
    batch_retention: int = 30 * 86400  # seconds a finished batch's data is kept (batches.py)
    line_budget: int = 0  # load() sets it: the flag, or 16 times max_line
    line_timeout: float = 60.0
    tls_cert: str = ""  # <config dir>/public.cert.pem when TLS is on (net.tls_files)
    tls_key: str = ""
    proxy_protocol: bool = False  # read a PROXY header on connections from proxy_from
    proxy_from: list[str] = field(default_factory=lambda: net.DEFAULT_PROXY_FROM.split(","))
    # Enterprise: [throttles] (queue -> (kind, limit, timeout)) and [[cron]] entries.
    throttles: dict[str, tuple[str, int, int]] = field(default_factory=dict)
    cron: list[CronEntry] = field(default_factory=list)

    @property
    def binding(self) -> str:
        return f"{self.host}:{self.port}"


#: What a SIGHUP reloads (conf.d/*.toml and the environment are read again); a change to any
#: other setting is reported as needing a restart.
RELOADABLE = ("log_level", "web_password", "backup_every", "backup_keep", "throttles", "cron")


def restart_needed(old: Config, new: Config) -> list[str]:
    """The settings that differ between ``old`` and ``new`` but cannot change while running."""
    fixed = [f for f in Config.__dataclass_fields__ if f not in RELOADABLE]
    return [f for f in fixed if getattr(old, f) != getattr(new, f)]


def split_binding(value: str, flag: str) -> tuple[str, int]:
    """``host:port`` (host may be empty for all interfaces) into its parts."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"invalid {flag} binding {value!r}: expected host:port")
    host = host.strip("[]")
    return (host or "0.0.0.0"), int(port)


def read_password(value: str) -> str:
    """A password setting; a value starting with ``/`` names a file holding it."""
    if value.startswith("/"):
        try:
            with open(value) as fh:
                return fh.read().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read password file {value}: {exc.strerror}") from None
    return value


def toml_files(config_dir: str) -> list[str]:
    """conf.d/*.toml in name order."""
    return sorted(glob.glob(os.path.join(config_dir, "conf.d", "*.toml")))


def read_toml(config_dir: str) -> dict:
    """conf.d/*.toml in name order, concatenated and parsed as one document (as Faktory does)."""
    text = ""
    for path in toml_files(config_dir):
        with open(path) as fh:
            text += fh.read() + "\n"
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML in {os.path.join(config_dir, 'conf.d')}: {exc}") from None


def cron_sources(config_dir: str) -> list[str]:
    """The file each ``[[cron]]`` entry of the merged document comes from, in order (for
    messages): each file parsed alone; empty if one cannot be (entries then say conf.d)."""
    sources: list[str] = []
    for path in toml_files(config_dir):
        try:
            with open(path, "rb") as fh:
                entries = tomllib.load(fh).get("cron")
        except (OSError, tomllib.TOMLDecodeError):
            return []
        if isinstance(entries, list):
            sources += [path] * len(entries)
    return sources


THROTTLE_KINDS = ("concurrency", "worker")
DEFAULT_THROTTLE_TIMEOUT = 60


def parse_throttles(raw: Any) -> dict[str, tuple[str, int, int]]:
    """``[throttles]``: ``queue = { concurrency = N, timeout = S }`` (or ``worker = N``), as
    queue -> (kind, limit, timeout)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError("invalid [throttles]: must be a table of queue = { ... }")
    out = {}
    for queue, spec in raw.items():
        where = f"invalid throttle {queue!r} in [throttles]"
        if not isinstance(spec, dict):
            raise ConfigError(f"{where}: must be {{ concurrency = N, timeout = S }} or "
                              "{ worker = N, timeout = S }")
        if not QUEUE_NAME.fullmatch(queue):
            raise ConfigError(f"{where}: queue names must match [a-zA-Z0-9._-]+")
        kinds = [k for k in THROTTLE_KINDS if k in spec]
        unknown = set(spec) - {*THROTTLE_KINDS, "timeout"}
        if unknown:
            raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}")
        if len(kinds) != 1:
            raise ConfigError(f"{where}: needs one of concurrency = N or worker = N")
        limit = spec[kinds[0]]
        timeout = spec.get("timeout", DEFAULT_THROTTLE_TIMEOUT)
        for name, value in ((kinds[0], limit), ("timeout", timeout)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{where}: {name} must be a positive integer")
        out[queue] = (kinds[0], limit, timeout)
    return out


def parse_redis_url(url: str) -> dict[str, Any]:
    """Split a Redis URL into its parts; ValueError (with the accepted forms) if it is none.

    ``unix:///path/redis.sock?db=0``, ``redis://[:pw@]host:port/db`` (``rediss://``: TLS), or
    ``redis+sentinel://[:pw@]host:port[,host:port...]/primary-name[/db]``: the Sentinels to ask
    for the current primary of ``primary-name`` (``sentinels``, ``service``); ``pw`` is the
    primary's password, ``?sentinel_password=`` the Sentinels' own, if they have one.
    """
    u = urlparse(url)
    out: dict[str, Any] = {"password": None, "db": 0}
    if u.scheme == "redis+sentinel":
        return _parse_sentinel_url(url, u.netloc, u.path, u.query, out)
    out["password"] = unquote(u.password) if u.password else None
    if u.scheme == "unix" or (not u.scheme and url.startswith("/")):
        out["path"] = u.path
        for part in u.query.split("&"):
            if part.startswith("db="):
                out["db"] = _db(part[3:], url)
    elif u.scheme in ("redis", "rediss"):
        try:
            out["host"] = u.hostname or "localhost"
            out["port"] = u.port or 6379
        except ValueError:
            raise ValueError(f"invalid Redis URL {url!r}: bad port") from None
        out["ssl"] = u.scheme == "rediss"
        if u.path and u.path.strip("/"):
            out["db"] = _db(u.path.strip("/"), url)
    else:
        raise ValueError(f"unsupported Redis URL {url!r}: use unix:///path, redis://host:port "
                         "or redis+sentinel://host:port[,host:port...]/primary-name")
    return out


def _db(text: str, url: str) -> int:
    if not text.isdigit():
        raise ValueError(f"invalid Redis URL {url!r}: the database must be a number, not {text!r}")
    return int(text)


def _parse_sentinel_url(url: str, netloc: str, path: str, query: str,
                        out: dict[str, Any]) -> dict[str, Any]:
    auth, _, hosts = netloc.rpartition("@")
    if auth:
        out["password"] = unquote(auth.partition(":")[2] if ":" in auth else auth) or None
    sentinels = []
    for part in hosts.split(","):
        host, sep, port = part.rpartition(":")
        if not sep:
            host, port = part, "26379"
        host = host.strip("[]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"invalid Redis URL {url!r}: {part!r} is not a Sentinel's host:port")
        sentinels.append((host, int(port)))
    name, _, db = path.strip("/").partition("/")
    if not name:
        raise ValueError(f"invalid Redis URL {url!r}: the primary's name is missing "
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
    scheme = "rediss" if target.get("ssl") else "redis"
    host = f"[{target['host']}]" if ":" in target["host"] else target["host"]
    return f"{scheme}://{host}:{target['port']}/{target['db']}"


class CommandParser(argparse.ArgumentParser):
    """argparse that raises ConfigError (one clear line, exit 2) instead of exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(message)


def build_parser() -> argparse.ArgumentParser:
    """The command-line flags: Faktory's, then ours."""
    p = CommandParser(prog="faktory-fast", description="A fast, wire-compatible Faktory server.")
    p.add_argument("-b", dest="binding", default=None, help=f"command port binding ({DEFAULT_BINDING})")
    p.add_argument("-w", dest="web_binding", default=None,
                   help=f"web UI binding ({DEFAULT_WEB_BINDING}); :0 disables the web UI")
    p.add_argument("-e", dest="environment", default=None,
                   help="development, staging or production (default $FAKTORY_ENV or development)")
    p.add_argument("-l", dest="log_level", default=None,
                   help="error, warn, info or debug (default info, or [faktory_fast] log_level)")
    p.add_argument("-d", dest="data_dir", default=None, help="storage directory")
    p.add_argument("-c", dest="config_dir", default=None, help="configuration directory (conf.d/*.toml)")
    p.add_argument("-v", dest="version", action="store_true", help="print the version and exit")
    p.add_argument("--processes", type=int, default=None,
                   help="server processes serving connections (default: half the CPUs with "
                        "the child Redis, all of them with REDIS_URL, at most 2)")
    p.add_argument("--durability", default=None, choices=("everysec", "always"),
                   help="Redis appendfsync: everysec (default) or always")
    p.add_argument("--redis-server", default=None, help="path of the redis-server binary to run")
    p.add_argument("--max-line", type=int, default=None,
                   help="longest command line accepted, in bytes (default 16 MiB)")
    p.add_argument("--max-connections", type=int, default=None,
                   help="most identified connections at once (default 2000)")
    p.add_argument("--backup-every", type=int, default=None,
                   help="seconds between backups of the child Redis into <data dir>/backups "
                        "(default 3600; 0: none)")
    p.add_argument("--backup-keep", type=int, default=None,
                   help="how many backups to keep, newest first (default 24)")
    p.add_argument("--batch-retention", type=int, default=None, metavar="SECONDS",
                   help="how long a finished batch's data is kept (default 30 days)")
    p.add_argument("--line-budget", type=int, default=None,
                   help="bytes of unfinished lines the connections of one server process may hold "
                        "together (default 16 times --max-line, 256 MiB)")
    p.add_argument("--line-timeout", type=float, default=None,
                   help="seconds a client may take to finish a line it started (default 60)")
    p.add_argument("--proxy-protocol", action="store_true", default=None,
                   help="connections from --proxy-from addresses start with a PROXY protocol "
                        "header (v1 or v2: haproxy send-proxy, stunnel protocol = proxy)")
    p.add_argument("--proxy-from", default=None, metavar="CIDR,...",
                   help=f"the proxies trusted to send a PROXY header (default {net.DEFAULT_PROXY_FROM})")
    p.add_argument("--redis-wait-replicas", type=int, default=None,
                   help="with REDIS_URL: a PUSH is acknowledged only once this many replicas "
                        "have it (Redis WAIT; default 0: at once)")
    p.add_argument("--redis-wait-timeout", type=int, default=None,
                   help="milliseconds a PUSH waits for --redis-wait-replicas before it is "
                        "answered with an error (default 1000)")
    return p


def banner() -> str:
    return f"faktory_fast {__version__} (Faktory {FAKTORY_VERSION} protocol)"


# More server processes than this cannot add throughput: one Redis (single-threaded) is the
# ceiling. Per job under load a server process spends about 35 us of CPU and Redis about 23
# (bench/README.md, "How many server processes"), so 1.5 processes' work fills Redis's core.
REDIS_BOUND_PROCESSES = 2


def default_processes(cpus: int, child_redis: bool) -> int:
    """Server processes when not configured: half the CPUs when our own Redis shares the
    machine (it needs a core of its own: on 2 cores one process did more jobs per second, for
    less CPU per job, than two), all of them with a remote Redis; never more than
    ``REDIS_BOUND_PROCESSES``."""
    return max(1, min(REDIS_BOUND_PROCESSES, cpus // 2 if child_redis else cpus))


def directories(environment: str, data_dir: str | None, config_dir: str | None,
                environ: Mapping[str, str]) -> tuple[str, str]:
    """The storage and config directories: the flags, else Faktory's defaults (under
    ``~/.faktory`` in development)."""
    home = environ.get("HOME", os.path.expanduser("~"))
    dev = environment == "development"
    return (data_dir or (os.path.join(home, ".faktory", "db") if dev else DEFAULT_DATA_DIR),
            config_dir or (os.path.join(home, ".faktory") if dev else DEFAULT_CONFIG_DIR))


def environment_of(flag: str | None, environ: Mapping[str, str]) -> str:
    """``-e``, else ``$FAKTORY_ENV``, else development; anything else is an error."""
    environment = flag or environ.get("FAKTORY_ENV") or "development"
    if environment not in ENVIRONMENTS:
        raise ConfigError(
            f'Invalid environment "{environment}": legal values are development, staging or production'
        )
    return environment


def load(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> Config | None:
    """Resolve flags, environment and TOML into a Config; None means "printed -v, exit 0"."""
    env = os.environ if environ is None else environ
    args = build_parser().parse_args(argv)
    if args.version:
        return None
    cfg = Config()
    cfg.environment = environment_of(args.environment, env)
    dev = cfg.environment == "development"
    cfg.data_dir, cfg.config_dir = directories(cfg.environment, args.data_dir, args.config_dir, env)
    toml = read_toml(cfg.config_dir)
    fk = toml.get("faktory", {})
    web = toml.get("web", {})
    ours = toml.get("faktory_fast", {})
    if not isinstance(fk, dict) or not isinstance(web, dict) or not isinstance(ours, dict):
        raise ConfigError("invalid configuration: [faktory], [web] and [faktory_fast] must be tables")

    # The one setting of ours a SIGHUP can change that a flag sets too: the flag wins.
    cfg.log_level = args.log_level or ours.get("log_level", "info")
    if cfg.log_level not in LOG_LEVELS:
        raise ConfigError(f'Invalid log level "{cfg.log_level}": legal values are error, warn, info or debug')
    cfg.host, cfg.port = split_binding(args.binding or fk.get("binding") or DEFAULT_BINDING, "-b")
    web_binding = args.web_binding or web.get("binding") or DEFAULT_WEB_BINDING
    cfg.web_host, cfg.web_port = split_binding(web_binding, "-w")

    cfg.redis_url = (env.get("REDIS_URL")
                     or (env.get(env["REDIS_PROVIDER"]) if env.get("REDIS_PROVIDER") else None)
                     or ours.get("redis_url") or None)
    if cfg.redis_url is not None:
        if not isinstance(cfg.redis_url, str):
            raise ConfigError("invalid [faktory_fast] redis_url: must be a string")
        try:
            parse_redis_url(cfg.redis_url)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    processes = args.processes if args.processes is not None else ours.get("processes")
    if processes is None:
        processes = default_processes(os.cpu_count() or 1, cfg.redis_url is None)
    if not isinstance(processes, int) or processes < 1:
        raise ConfigError(f"invalid --processes {processes!r}: must be a positive integer")
    cfg.processes = processes
    cfg.durability = args.durability or ours.get("durability", "everysec")
    if cfg.durability not in ("everysec", "always"):
        raise ConfigError(f"invalid durability {cfg.durability!r}: everysec or always")
    cfg.redis_server = args.redis_server or ours.get("redis_server")
    for name, least in (("max_line", 1), ("max_connections", 1), ("backup_every", 0),
                        ("backup_keep", 1), ("redis_wait_replicas", 0), ("redis_wait_timeout", 1),
                        ("batch_retention", 1)):
        value = getattr(args, name)
        value = value if value is not None else ours.get(name, getattr(cfg, name))
        if not isinstance(value, int) or value < least:
            kind = "a positive integer" if least else "an integer >= 0"
            raise ConfigError(f"invalid --{name.replace('_', '-')} {value!r}: must be {kind}")
        setattr(cfg, name, value)
    if cfg.redis_wait_replicas and not cfg.redis_url:
        raise ConfigError("--redis-wait-replicas needs REDIS_URL: the server's own Redis has no "
                          "replicas")
    budget = args.line_budget if args.line_budget is not None else ours.get("line_budget")
    if budget is None:
        budget = 16 * cfg.max_line
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < cfg.max_line:
        raise ConfigError(f"invalid --line-budget {budget!r}: must be an integer of at least "
                          f"--max-line ({cfg.max_line})")
    cfg.line_budget = budget
    timeout = args.line_timeout if args.line_timeout is not None else ours.get("line_timeout", 60.0)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 0 < timeout < 1e9:
        raise ConfigError(f"invalid --line-timeout {timeout!r}: must be a positive number of seconds")
    cfg.line_timeout = float(timeout)

    tls = net.tls_files(cfg.config_dir)
    if tls is not None:
        try:
            net.server_context(*tls)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise ConfigError(f"unable to initialize TLS certificate {tls[0]} with key {tls[1]}: "
                              f"{exc}") from None
        cfg.tls_cert, cfg.tls_key = tls
    proxy = args.proxy_protocol if args.proxy_protocol is not None else ours.get("proxy_protocol", False)
    if not isinstance(proxy, bool):
        raise ConfigError(f"invalid proxy_protocol {proxy!r}: must be true or false")
    cfg.proxy_protocol = proxy
    proxy_from = args.proxy_from if args.proxy_from is not None else ours.get("proxy_from")
    if proxy_from is not None:
        try:
            cfg.proxy_from = [str(n) for n in net.parse_networks(proxy_from)]
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"invalid --proxy-from {proxy_from!r}: {exc}") from None
    if cfg.proxy_protocol and cfg.tls_cert:
        raise ConfigError(f"--proxy-protocol and native TLS ({cfg.tls_cert}) cannot be combined: "
                          "terminate TLS at the proxy, or turn the PROXY protocol off")

    cfg.throttles = parse_throttles(toml.get("throttles"))
    try:
        cfg.cron = parse_entries(toml.get("cron"), cron_sources(cfg.config_dir))
    except CronError as exc:
        raise ConfigError(str(exc)) from None

    password = env.get("FAKTORY_PASSWORD") or fk.get("password") or ""
    if not isinstance(password, str):
        raise ConfigError("invalid [faktory] password: must be a string")
    cfg.password = read_password(password) if password else ""
    skip = env.get("FAKTORY_SKIP_PASSWORD", "").lower() in ("1", "true", "yes")
    if not dev and not cfg.password and not skip:
        if os.path.exists("/etc/faktory/password"):
            cfg.password = read_password("/etc/faktory/password")
        if not cfg.password:
            raise ConfigError(PASSWORD_REQUIRED)
    web_password = web.get("password") or ""
    cfg.web_password = read_password(web_password) if web_password else cfg.password
    return cfg
