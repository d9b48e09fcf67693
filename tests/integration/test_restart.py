"""Restarts: right after a crash, and the files a start leaves behind."""
from __future__ import annotations

import os
import signal
import stat
import threading
import time

import redis

from faktory_fast.master.redis_child import RedisChild, pid_alive
from tests.support import FaktoryServer, job


def test_restart_right_after_a_killed_process_group_always_works(tmp_path) -> None:
    """kill -9 of the master and its server processes (what `kill -9 -PGID` does: the child
    Redis runs in a session of its own and is told to stop by its parent-death signal, and may
    still be saving when the next start comes): the restart waits for it, and loses nothing."""
    srv = FaktoryServer(str(tmp_path), processes=1)
    pushed = 0
    for _ in range(4):
        srv.start()
        r = srv.redis()
        r.set("test:ballast", os.urandom(64 << 20))  # a save at shutdown that takes a while
        r.close()
        c = srv.client()
        assert c.info()["faktory"]["queues"].get("default", 0) == pushed
        for _ in range(50):
            assert c.push(job()) == "OK"
        pushed += 50
        assert srv.proc is not None
        with open(os.path.join(srv.data_dir, "redis.pid")) as fh:
            redis_pid = int(fh.read())
        for pid in [srv.proc.pid, *srv.server_process_pids()]:
            os.kill(pid, signal.SIGKILL)
        srv.stop()  # reaps the master; its Redis may still be shutting down
    srv.start()
    try:
        assert not pid_alive(redis_pid)
        assert srv.client().info()["faktory"]["queues"]["default"] == pushed
        assert not any("Traceback" in line for line in srv.lines)
    finally:
        assert srv.stop() == 0


def test_data_directory_and_redis_files_are_private(tmp_path) -> None:
    data = str(tmp_path / "db")
    srv = FaktoryServer(data, processes=1).start()
    srv.client().push(job())
    srv.stop()
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
    files = ["faktory.rdb", "redis.log", "redis.conf",
             *(os.path.join("appendonly", f) for f in os.listdir(os.path.join(data, "appendonly")))]
    for name in files:
        mode = stat.S_IMODE(os.stat(os.path.join(data, name)).st_mode)
        assert mode == 0o600, f"{name} is {oct(mode)}"


def test_a_start_waits_for_the_redis_of_an_earlier_run(tmp_path) -> None:
    """The Redis of a dead server that has not yet acted on its stop signal (stopped here with
    SIGSTOP, to hold that moment) is not reused, nor run beside: the start waits until it is
    gone, then starts its own on the same files."""
    old = RedisChild(str(tmp_path))
    old.start()
    r = redis.Redis(unix_socket_path=old.socket_path)
    r.set("kept", "yes")
    r.close()
    assert old.proc is not None
    old_pid = old.proc.pid
    os.kill(old_pid, signal.SIGSTOP)
    resumed: list[float] = []

    def resume_later() -> None:
        time.sleep(1.5)  # the hold under test: longer than a PING timeout, nothing to await
        resumed.append(time.monotonic())
        os.kill(old_pid, signal.SIGCONT)  # the SIGTERM it was sent now takes effect

    t = threading.Thread(target=resume_later)
    t.start()
    # In this thread: the child's parent-death signal fires when the thread that started it ends.
    new = RedisChild(str(tmp_path))
    new.start()
    returned = time.monotonic()
    old_alive = pid_alive(old_pid)
    t.join()
    old.proc.wait(5)
    try:
        assert resumed and returned > resumed[0] and not old_alive
        r = redis.Redis(unix_socket_path=new.socket_path)
        assert r.get("kept") == b"yes"
        r.close()
    finally:
        new.stop()
