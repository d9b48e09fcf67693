"""Backups of the child Redis's data: consistent RDB snapshots in ``<data dir>/backups/``.

A backup is Redis's own snapshot: ``BGSAVE`` (a fork writes the dataset as of one instant),
then a copy of the RDB it wrote, made under a temporary name and renamed, so a backup file is
either whole or absent. Redis replaces its RDB by renaming too, so the copy reads one snapshot
even if another save starts meanwhile. The server takes one every ``--backup-every`` seconds and
keeps the newest ``--backup-keep``; ``faktory-fast backup`` takes one now, ``faktory-fast
restore PATH`` puts one back while the server is stopped.
"""
from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from faktory_fast.master.redis_child import AOF_DIR, CLEAN_STOP, RDB_FILE, free_name, running_redis

BACKUP_DIR = "backups"
PREFIX, SUFFIX = "faktory-", ".rdb"
RDB_MAGIC = b"REDIS"
COPY_CHUNK = 8 << 20

Progress = Callable[[str], None]


class BackupError(RuntimeError):
    """A backup or restore could not be made; the message says why."""


@dataclass(frozen=True)
class Backup:
    path: str
    size: int
    created: float  # unix seconds


def backup_dir(data_dir: str) -> str:
    return os.path.join(data_dir, BACKUP_DIR)


def list_backups(data_dir: str) -> list[Backup]:
    """The backups in ``data_dir``, newest first."""
    folder = backup_dir(data_dir)
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        if name.startswith(PREFIX) and name.endswith(SUFFIX):
            st = os.stat(os.path.join(folder, name))
            out.append(Backup(os.path.join(folder, name), st.st_size, st.st_mtime))
    return sorted(out, key=lambda b: (b.created, b.path), reverse=True)


def prune(data_dir: str, keep: int) -> list[str]:
    """Delete all but the newest ``keep`` backups; the paths deleted."""
    gone = []
    for b in list_backups(data_dir)[keep:]:
        os.unlink(b.path)
        gone.append(b.path)
    return gone


class _Ticker:
    """Calls ``progress`` at most once a second, and only once a step has taken a second."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.start = self.last = time.monotonic()

    def __call__(self, message: Callable[[], str]) -> None:
        now = time.monotonic()
        if self.progress is not None and now - self.start >= 1 and now - self.last >= 1:
            self.last = now
            self.progress(message())


def take(client: redis.Redis, data_dir: str, keep: int, progress: Progress | None = None,
         poll: float = 0.05) -> Backup:
    """Snapshot the dataset behind ``client`` (the child Redis of ``data_dir``) into a new
    backup, then prune to ``keep``. Blocking: the server runs it in a thread."""
    tick = _Ticker(progress)
    while True:  # one save of our own: a save already running may predate what we must keep
        info = client.info("persistence")
        if info.get("rdb_bgsave_in_progress"):
            tick(lambda: "waiting for a snapshot in progress to finish...")
            time.sleep(poll)
            continue
        saves = info.get("rdb_saves", 0)
        try:
            client.bgsave()
            break
        except redis.ResponseError as exc:
            if "in progress" not in str(exc):
                raise BackupError(f"Redis refused BGSAVE: {exc}") from None
    while True:
        info = client.info("persistence")
        if not info.get("rdb_bgsave_in_progress") and info.get("rdb_saves", 0) > saves:
            break
        tick(lambda: f"Redis is writing the snapshot ({time.monotonic() - tick.start:.0f} s)...")
        time.sleep(poll)
    if info.get("rdb_last_bgsave_status") != "ok":
        raise BackupError("Redis could not write its snapshot (see redis.log in the data directory)")
    return copy(os.path.join(data_dir, RDB_FILE), data_dir, keep, progress, tick)


def copy(source: str, data_dir: str, keep: int, progress: Progress | None = None,
         tick: _Ticker | None = None) -> Backup:
    """Copy an RDB that holds one whole snapshot into a new backup; prune to ``keep``."""
    folder = backup_dir(data_dir)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = free_name(os.path.join(folder, PREFIX + stamp), SUFFIX)
    _copy_atomically(source, target, tick or _Ticker(progress))
    prune(data_dir, keep)
    st = os.stat(target)
    return Backup(target, st.st_size, st.st_mtime)


def _copy_atomically(source: str, target: str, tick: _Ticker) -> None:
    tmp = os.path.join(os.path.dirname(target), "." + os.path.basename(target) + ".tmp")
    try:
        with open(source, "rb") as src:
            total = os.fstat(src.fileno()).st_size
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as dst:
                done = 0
                while chunk := src.read(COPY_CHUNK):
                    dst.write(chunk)
                    done += len(chunk)
                    # tick calls it before returning, if at all: this iteration's done
                    tick(lambda: f"copied {done >> 20} of {total >> 20} MiB")  # noqa: B023
                dst.flush()
                os.fsync(dst.fileno())
        os.replace(tmp, target)
        dirfd = os.open(os.path.dirname(target), os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def restore(data_dir: str, path: str, progress: Progress | None = None) -> str:
    """Make the backup at ``path`` the data of ``data_dir`` (the server must be stopped); the
    data it replaces is moved into a ``replaced-<time>`` folder, whose path is returned ("" if
    there was none). The
    next start loads the restored RDB and writes a new append-only file from it."""
    pid = running_redis(data_dir)
    if pid:
        raise BackupError(f"the server is running on {data_dir} (its Redis is pid {pid}): "
                          "stop it first")
    try:
        with open(path, "rb") as fh:
            if fh.read(len(RDB_MAGIC)) != RDB_MAGIC:
                raise BackupError(f"{path} is not a Redis RDB file")
    except OSError as exc:
        raise BackupError(f"cannot read {path}: {exc.strerror}") from None
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    aside = free_name(os.path.join(data_dir, "replaced-" + time.strftime("%Y%m%dT%H%M%S")))
    moved = ""
    for name in (RDB_FILE, AOF_DIR, CLEAN_STOP):
        if os.path.exists(os.path.join(data_dir, name)):
            os.makedirs(aside, mode=0o700, exist_ok=True)
            shutil.move(os.path.join(data_dir, name), os.path.join(aside, name))
            moved = aside
    _copy_atomically(path, os.path.join(data_dir, RDB_FILE), _Ticker(progress))
    return moved
