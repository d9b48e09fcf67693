"""Command-line flags, environment and conf.d/*.toml, resolved into one Config (Faktory's rules)."""
from __future__ import annotations

import argparse
import glob
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from faktory_fast import FAKTORY_VERSION, __version__
from faktory_fast.codec import net
from faktory_fast.cron import CronEntry, CronError, parse_entries
from faktory_fast.jobs import MAX_ENT_SECONDS, QUEUE_NAME
from faktory_fast.log import one_line, show
from faktory_fast.storage.redis_url import host_ok, parse_redis_url

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
    """Invalid flags or configuration: reported on one line, exit status 2 (at start) or one
    log line (SIGHUP: the running configuration is kept)."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))  # a value's newline must not make it two lines


MiB = 1 << 20
#: The integer settings of ours (a flag each, and ``[faktory_fast] <name>``): the range every
#: consumer of each takes. docs: README.md, "Command line".
INT_SETTINGS: dict[str, tuple[int, int]] = {
    "processes": (1, 256),  # each a Python process started at once
    "max_line": (1, 512 * MiB),  # wire's C Py_ssize_t; Redis stores no longer value by default
    "max_connections": (1, 1_000_000),
    "backup_every": (0, 365 * 86400),  # seconds; 0: no backups
    "backup_keep": (1, 10_000),
    "redis_wait_replicas": (0, 1000),  # Redis WAIT's count
    "redis_wait_timeout": (1, 60_000),  # ms Redis WAIT blocks a server process's connection
    "redis_hold": (0, 600_000),  # ms a command waits for a Redis failing over or moving its slot
    "batch_retention": (1, MAX_ENT_SECONDS),  # seconds, Redis EXPIRE (in ms within 64 bits)
    "line_budget": (1, 64 << 30),  # bytes; and at least max_line
    "metrics_job_types": (0, 10_000),  # /metrics' job types; 0: no job metrics (job_metrics.py)
}
LINE_TIMEOUT_RANGE = (0.1, 86400.0)  # seconds: below, the sweep would spin; above, absurd
#: Every key of ``[faktory_fast]``: another is a typo, refused rather than ignored.
OUR_KEYS = {*INT_SETTINGS, "log_level", "redis_url", "durability", "redis_server",
            "line_timeout", "proxy_protocol", "proxy_from"}


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
    redis_hold: int = 5000  # milliseconds a command waits for a Redis of the user's to be back
    max_line: int = 16 * 1024 * 1024
    max_connections: int = 2000
    backup_every: int = 3600  # seconds between backups of the child Redis; 0: none
    backup_keep: int = 24
    batch_retention: int = 30 * 86400  # seconds a finished batch's data is kept (batches.py)
    metrics_job_types: int = 100  # job types /metrics shows by name; 0: no job metrics
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


def split_binding(value: Any, flag: str, origin: str = "") -> tuple[str, int]:
    """``host:port`` (host may be empty for all interfaces, ``[v6]`` bracketed) into its parts;
    ``origin``: where the value was set, for the message."""
    bad = f"invalid {flag} binding {show(value)}: expected host:port{origin}"
    if not isinstance(value, str):
        raise ConfigError(bad)
    host, sep, port = value.rpartition(":")
    if not sep or not re.fullmatch(r"[0-9]{1,5}", port) or int(port) > 65535:
        raise ConfigError(bad)
    if host.startswith("[") or host.endswith("]"):
        if not (host.startswith("[") and host.endswith("]") and ":" in host):
            raise ConfigError(bad)
        host = host[1:-1]
    if host and not host_ok(host):
        raise ConfigError(f"invalid {flag} binding {show(value)}: {show(host)} is not a host "
                          f"name or address{origin}")
    return (host or "0.0.0.0"), int(port)


def read_password(value: str, origin: str = "") -> str:
    """A password setting; a value starting with ``/`` names a file holding it (UTF-8)."""
    if "\0" in value:  # the web UI gets it in its environment
        raise ConfigError(f"invalid password: it holds a NUL character{origin}")
    if not value.startswith("/"):
        return value
    try:
        with open(value, "rb") as fh:
            text = fh.read().decode("utf-8-sig").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read password file {value}: {exc.strerror}{origin}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"invalid password file {value}: not UTF-8{origin}") from None
    if "\0" in text:
        raise ConfigError(f"invalid password file {value}: it holds a NUL character{origin}")
    return text


def toml_files(config_dir: str) -> list[str]:
    """conf.d/*.toml in name order."""
    return sorted(glob.glob(os.path.join(config_dir, "conf.d", "*.toml")))


@dataclass
class ConfD:
    """conf.d/*.toml, read: the merged document, and each file's own (None: it does not parse
    alone, as a file continuing the table of the one before does), to name the file that
    sets a key."""

    directory: str
    doc: dict[str, Any]
    files: list[tuple[str, dict[str, Any] | None]] = field(default_factory=list)

    def where(self, *path: str) -> str:
        """The file setting ``path`` (a table, a key of it...), else the conf.d directory."""
        for name, doc in self.files:
            node: Any = doc
            for key in path:
                if not isinstance(node, dict) or key not in node:
                    break
                node = node[key]
            else:
                return name
        return self.directory

    def at(self, table: str, key: str) -> str:
        """`` ([table] key in <file>)``: the end of a message about that key."""
        return f" ([{table}] {key} in {self.where(table, key)})"

    def cron_sources(self) -> list[str]:
        """The file each ``[[cron]]`` entry of the merged document comes from, in order (for
        messages); empty if a file does not parse alone (entries are then numbered in the
        merged document)."""
        sources: list[str] = []
        for path, doc in self.files:
            if doc is None:
                return []
            entries = doc.get("cron")
            if isinstance(entries, list):
                sources += [path] * len(entries)
        return sources


def read_conf_d(config_dir: str) -> ConfD:
    """conf.d/*.toml in name order, concatenated and parsed as one document (as Faktory does).
    ConfigError naming the file for one that cannot be read, is not UTF-8 or is not TOML."""
    directory = os.path.join(config_dir, "conf.d")
    texts: list[tuple[str, str]] = []
    for path in toml_files(config_dir):
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
        try:
            texts.append((path, data.decode("utf-8-sig")))  # a BOM (some editors') is no text
        except UnicodeDecodeError as exc:
            raise ConfigError(f"invalid {path}: not UTF-8 (byte 0x{data[exc.start]:02x} at "
                              f"offset {exc.start})") from None
    try:
        doc = tomllib.loads("".join(text + "\n" for _, text in texts))
    except (ValueError, RecursionError) as exc:  # TOMLDecodeError; an int of 4300+ digits
        raise ConfigError(_toml_error(exc, texts, directory)) from None
    files: list[tuple[str, dict[str, Any] | None]] = []
    for path, text in texts:
        try:
            files.append((path, tomllib.loads(text)))
        except (ValueError, RecursionError):
            files.append((path, None))
    return ConfD(directory, doc, files)


def _toml_error(exc: Exception, texts: list[tuple[str, str]], directory: str) -> str:
    """The message for a merged document that does not parse, naming the file (and the line
    in it) where tomllib stopped."""
    what = "arrays or tables nested too deeply" if isinstance(exc, RecursionError) else str(exc)
    m = re.search(r"\(at line (\d+), column (\d+)\)$", what)
    if m:
        line = int(m.group(1))
        for path, text in texts:
            lines = text.count("\n") + 1  # read_conf_d joins them with a newline each
            if line <= lines:
                return (f"invalid TOML in {path}: {what[:m.start()]}(at line {line}, "
                        f"column {m.group(2)})")
            line -= lines
    for path, text in texts:  # no line to go by: the first file that fails alone
        try:
            tomllib.loads(text)
        except (ValueError, RecursionError):
            return f"invalid TOML in {path}: {what}"
    return f"invalid TOML in {directory}: {what}"


def read_toml(config_dir: str) -> dict:
    """conf.d/*.toml merged into one document (``read_conf_d``)."""
    return read_conf_d(config_dir).doc


THROTTLE_KINDS = ("concurrency", "worker")
DEFAULT_THROTTLE_TIMEOUT = 60
#: The bounds of a throttle's numbers: Lua reads them with tonumber (doubles, exact to 2^53)
#: and takes a lock until now + timeout (a ZADD score); orjson dumps them (64 bits).
MAX_THROTTLE_LIMIT = 1_000_000
MAX_THROTTLE_TIMEOUT = 365 * 86400


def parse_throttles(raw: Any, conf: ConfD | None = None) -> dict[str, tuple[str, int, int]]:
    """``[throttles]``: ``queue = { concurrency = N, timeout = S }`` (or ``worker = N``), as
    queue -> (kind, limit, timeout); ``conf``: the conf.d they come from (to name the file)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        source = conf.where("throttles") if conf else "conf.d"
        raise ConfigError(f"invalid [throttles] in {source}: must be a table of queue = {{ ... }}")
    out = {}
    for queue, spec in raw.items():
        source = conf.where("throttles", queue) if conf else "conf.d"
        where = f"invalid throttle {queue!r} in [throttles] of {source}"
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
        for name, value, most, unit in ((kinds[0], limit, MAX_THROTTLE_LIMIT, ""),
                                        ("timeout", timeout, MAX_THROTTLE_TIMEOUT, " of seconds")):
            if type(value) is not int or not 1 <= value <= most:
                raise ConfigError(f"{where}: {name} must be a positive integer{unit} up to "
                                  f"{most}, not {show(value)}")
        out[queue] = (kinds[0], limit, timeout)
    return out


class FlagParser(argparse.ArgumentParser):
    """argparse that raises ConfigError (one clear line, exit 2) instead of exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(message)


def build_parser() -> argparse.ArgumentParser:
    """The command-line flags: Faktory's, then ours."""
    p = FlagParser(prog="faktory-fast", description="A fast, wire-compatible Faktory server.")
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
    p.add_argument("--metrics-job-types", type=int, default=None, metavar="N",
                   help="job types /metrics shows by name, the busiest; the rest as 'other' "
                        "(default 100; 0: no job metrics)")
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
    p.add_argument("--redis-hold", type=int, default=None,
                   help="with REDIS_URL: milliseconds a command waits for Redis to be back "
                        "(failover, a cluster moving a slot) before the client gets -ERR "
                        "(default 5000; 0: at once)")
    return p


def banner() -> str:
    return f"faktory_fast {__version__} (Faktory {FAKTORY_VERSION} protocol)"


# More server processes than this cannot add throughput: one Redis (single-threaded) is the
# ceiling. Per job under load a server process spends about 58 us of CPU and Redis about 32
# (docs/performance.md, "The ceiling of one Redis"), so 1.8 processes' work fills Redis's core.
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


def _table(conf: ConfD, name: str) -> dict[str, Any]:
    """``[name]`` of the merged document ({} if absent); ConfigError if it is not a table."""
    value = conf.doc.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"invalid configuration in {conf.where(name)}: {name} must be a "
                          f"table ([{name}]), not {show(value)}")
    return value


def _int_setting(name: str, value: Any, origin: str) -> int:
    """``value`` of the integer setting ``name`` if within its range (INT_SETTINGS)."""
    least, most = INT_SETTINGS[name]
    if type(value) is not int or not least <= value <= most:  # bool is no number here
        raise ConfigError(f"invalid --{name.replace('_', '-')} {show(value)}: must be an integer "
                          f"from {least} to {most}{origin}")
    return value


def check_setting(name: str, value: Any, origin: str = "") -> Any:
    """``value`` of our setting ``name`` (from its flag or ``[faktory_fast]``) as Config holds
    it, if every consumer of it takes it; else ConfigError, whose message ends with
    ``origin`` (where it was set). What depends on another setting is checked by ``load``."""
    if name in INT_SETTINGS:
        return _int_setting(name, value, origin)
    if name == "log_level":
        if not isinstance(value, str) or value not in LOG_LEVELS:
            shown = f'"{value}"' if isinstance(value, str) else show(value)
            raise ConfigError(f"Invalid log level {shown}: legal values are error, warn, info "
                              f"or debug{origin}")
    elif name == "durability":
        if not isinstance(value, str) or value not in ("everysec", "always"):
            raise ConfigError(f"invalid durability {show(value)}: everysec or always{origin}")
    elif name == "redis_server":
        if not isinstance(value, str) or not value or "\0" in value:
            raise ConfigError(f"invalid --redis-server {show(value)}: must be the path of "
                              f"redis-server{origin}")
    elif name == "redis_url":
        if not isinstance(value, str) or not value or not value.isprintable():
            raise ConfigError(f"invalid redis_url {show(value)}: must be a Redis URL{origin}")
        try:
            parse_redis_url(value)
        except ValueError as exc:
            raise ConfigError(f"{exc}{origin}") from None
    elif name == "line_timeout":
        least, most = LINE_TIMEOUT_RANGE
        if type(value) not in (int, float) or not least <= value <= most:  # NaN fails too
            raise ConfigError(f"invalid --line-timeout {show(value)}: must be a number of "
                              f"seconds from {least} to {most:.0f}{origin}")
        return float(value)
    elif name == "proxy_protocol":
        if not isinstance(value, bool):
            raise ConfigError(f"invalid proxy_protocol {show(value)}: must be true or "
                              f"false{origin}")
    elif name == "proxy_from":
        try:
            return [str(n) for n in net.parse_networks(value)]
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"invalid --proxy-from {show(value)}: {exc}{origin}") from None
    else:
        raise ConfigError(f"unknown setting {name!r}{origin}")
    return value


class _Settings:
    """Our settings as given: each flag, else ``[faktory_fast] <name>``; every value of
    ``[faktory_fast]`` is checked, the ones a flag overrides too (a file is right or wrong
    whatever the command line of the day)."""

    def __init__(self, args: argparse.Namespace | None, conf: ConfD) -> None:
        self.args = args
        self.conf = conf
        ours = _table(conf, "faktory_fast")
        unknown = sorted(set(ours) - OUR_KEYS)
        if unknown:
            raise ConfigError(f"unknown key {unknown[0]!r} in [faktory_fast] of "
                              f"{conf.where('faktory_fast', unknown[0])}")
        self.toml = {name: check_setting(name, value, conf.at("faktory_fast", name))
                     for name, value in ours.items()}

    def flag(self, name: str) -> Any:
        return getattr(self.args, name, None) if self.args is not None else None

    def get(self, name: str, default: Any) -> Any:
        """The setting's value, checked; ``default`` if neither flag nor TOML sets it."""
        flag = self.flag(name)
        if flag is not None:
            return check_setting(name, flag)
        return self.toml.get(name, default)

    def origin(self, name: str) -> str:
        """Where the value ``get`` gives was set, as the end of a message."""
        if self.flag(name) is None and name in self.toml:
            return self.conf.at("faktory_fast", name)
        return ""


def backup_keep(config_dir: str) -> int:
    """``[faktory_fast] backup_keep`` of conf.d (for the ``backup`` command), checked as
    ``load`` checks it."""
    return int(_Settings(None, read_conf_d(config_dir)).get("backup_keep", Config.backup_keep))


def load(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> Config | None:
    """Resolve flags, environment and TOML into a Config; None means "printed -v, exit 0".

    Every value is checked here, once, against the range its consumers take (the server
    processes, Redis and its Lua, cron's pushes, Python's time functions): a configuration
    that fails one check is refused whole with a ConfigError naming the flag, or the file and
    the key. What it returns runs. Each section has its resolver, run in this order (the
    first error found is the one reported).
    """
    env = os.environ if environ is None else environ
    args = build_parser().parse_args(argv)
    if args.version:
        return None
    cfg = Config()
    cfg.environment = environment_of(args.environment, env)
    cfg.data_dir, cfg.config_dir = directories(cfg.environment, args.data_dir, args.config_dir, env)
    conf = read_conf_d(cfg.config_dir)
    fk, web = _table(conf, "faktory"), _table(conf, "web")
    ours = _Settings(args, conf)
    # The one setting of ours a SIGHUP can change that a flag sets too: the flag wins.
    cfg.log_level = ours.get("log_level", "info")
    cfg.host, cfg.port = _binding(args.binding, "-b", conf, fk, "faktory", DEFAULT_BINDING)
    cfg.web_host, cfg.web_port = _binding(args.web_binding, "-w", conf, web, "web",
                                          DEFAULT_WEB_BINDING)
    cfg.redis_url = _redis_url(ours, env)
    _our_settings(cfg, ours)
    _tls_and_proxy(cfg, ours)
    _enterprise(cfg, conf)
    _passwords(cfg, conf, fk, web, env)
    return cfg


def _binding(given: str | None, flag: str, conf: ConfD, table: dict[str, Any], name: str,
             default: str) -> tuple[str, int]:
    """``-b`` or ``-w``: the flag, else ``binding`` of ``[name]`` (``table``), else
    ``default``."""
    # The file's binding is checked even when the flag overrides it.
    in_toml = split_binding(table["binding"], flag, conf.at(name, "binding")) \
        if "binding" in table else None
    if given is not None:
        return split_binding(given, flag)
    return in_toml or split_binding(default, flag)


def _redis_url(ours: _Settings, env: Mapping[str, str]) -> str | None:
    """A Redis of the user's: ``REDIS_URL``, else the variable ``REDIS_PROVIDER`` names, else
    ``[faktory_fast] redis_url``; None runs the child Redis."""
    provider = env.get("REDIS_PROVIDER")
    if env.get("REDIS_URL"):
        return check_setting("redis_url", env["REDIS_URL"], " (REDIS_URL)")
    if provider and env.get(provider):
        return check_setting("redis_url", env[provider],
                             f" ({provider}, named by REDIS_PROVIDER)")
    return ours.get("redis_url", None)


def _our_settings(cfg: Config, ours: _Settings) -> None:
    """Our own flags (and ``[faktory_fast]``) but the network edge's: the server processes,
    the child Redis, the limits, replication and retention; checked against one another."""
    processes = ours.get("processes", None)
    cfg.processes = processes if processes is not None else \
        default_processes(os.cpu_count() or 1, cfg.redis_url is None)
    cfg.durability = ours.get("durability", "everysec")
    cfg.redis_server = ours.get("redis_server", None)
    for name in ("max_line", "max_connections", "backup_every", "backup_keep",
                 "redis_wait_replicas", "redis_wait_timeout", "redis_hold", "batch_retention",
                 "metrics_job_types"):
        setattr(cfg, name, ours.get(name, getattr(cfg, name)))
    if cfg.redis_wait_replicas and not cfg.redis_url:
        raise ConfigError("--redis-wait-replicas needs REDIS_URL: the server's own Redis has no "
                          f"replicas{ours.origin('redis_wait_replicas')}")
    budget = ours.get("line_budget", 16 * cfg.max_line)
    if budget < cfg.max_line:
        raise ConfigError(f"invalid --line-budget {budget}: must be an integer of at least "
                          f"--max-line ({cfg.max_line}){ours.origin('line_budget')}")
    cfg.line_budget = budget
    cfg.line_timeout = ours.get("line_timeout", 60.0)


def _tls_and_proxy(cfg: Config, ours: _Settings) -> None:
    """The network edge: native TLS (Faktory's files in the config directory, loaded once
    here to check them) and the PROXY protocol, which cannot be combined."""
    tls = net.tls_files(cfg.config_dir)
    if tls is not None:
        try:
            net.server_context(*tls)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise ConfigError(f"unable to initialize TLS certificate {tls[0]} with key {tls[1]}: "
                              f"{exc}") from None
        cfg.tls_cert, cfg.tls_key = tls
    cfg.proxy_protocol = ours.get("proxy_protocol", False)
    cfg.proxy_from = ours.get("proxy_from", cfg.proxy_from)
    if cfg.proxy_protocol and cfg.tls_cert:
        raise ConfigError(f"--proxy-protocol and native TLS ({cfg.tls_cert}) cannot be combined: "
                          "terminate TLS at the proxy, or turn the PROXY protocol off")


def _enterprise(cfg: Config, conf: ConfD) -> None:
    """Enterprise's sections: ``[throttles]`` and the ``[[cron]]`` entries."""
    cfg.throttles = parse_throttles(conf.doc.get("throttles"), conf)
    entries = conf.doc.get("cron")
    if entries is not None and not isinstance(entries, list):
        raise ConfigError(f"invalid cron configuration in {conf.where('cron')}: use [[cron]] "
                          "tables")
    try:
        cfg.cron = parse_entries(entries, conf.cron_sources(), conf.directory)
    except CronError as exc:
        raise ConfigError(str(exc)) from None


def _passwords(cfg: Config, conf: ConfD, fk: dict[str, Any], web: dict[str, Any],
               env: Mapping[str, str]) -> None:
    """The server's password (``FAKTORY_PASSWORD``, else ``[faktory] password``, else
    /etc/faktory/password; required but in development) and the web UI's (``[web] password``,
    else the server's)."""
    # Passwords are never shown: a value may be the secret itself.
    for table, name in ((fk, "faktory"), (web, "web")):
        value = table.get("password", "")
        if not isinstance(value, str) or "\0" in value:  # checked even when overridden
            raise ConfigError(f"invalid password: must be a string without NUL"
                              f"{conf.at(name, 'password')}")
    if env.get("FAKTORY_PASSWORD"):
        password, origin = env["FAKTORY_PASSWORD"], " (FAKTORY_PASSWORD)"
    else:
        password, origin = fk.get("password", ""), conf.at("faktory", "password")
    cfg.password = read_password(password, origin) if password else ""
    skip = env.get("FAKTORY_SKIP_PASSWORD", "").lower() in ("1", "true", "yes")
    if cfg.environment != "development" and not cfg.password and not skip:
        if os.path.exists("/etc/faktory/password"):
            cfg.password = read_password("/etc/faktory/password")
        if not cfg.password:
            raise ConfigError(PASSWORD_REQUIRED)
    web_password = web.get("password", "")
    cfg.web_password = read_password(web_password, conf.at("web", "password")) \
        if web_password else cfg.password
