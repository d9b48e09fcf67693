"""Backups of the child Redis: taken by the server every --backup-every seconds and by
`faktory-fast backup`, listed, and restored by `faktory-fast restore` into a stopped server."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from tests.support import ROOT, FaktoryServer, job, wait_for


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "faktory_fast", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)


def everything(srv: FaktoryServer) -> dict[str, Any]:
    """Every job the server holds, exactly as stored."""
    r = srv.redis()
    out: dict[str, Any] = {}
    for key in r.scan_iter("q:*"):
        out[key.decode()] = r.lrange(key, 0, -1)
    for key in ("scheduled", "retries", "dead"):
        out[key] = r.zrange(key, 0, -1, withscores=True)
    out["queues"] = sorted(r.smembers("queues"))
    r.close()
    return out


def test_backup_flush_restore_brings_every_job_back(tmp_path) -> None:
    data = str(tmp_path / "db")
    srv = FaktoryServer(data, processes=1, args=["--backup-every", "0"]).start()
    try:
        c = srv.client(wid="backup-test")
        for batch in range(7):
            jobs = [job("Q", [batch, i], queue=f"q{i % 3}") for i in range(1000)]
            assert c.call("PUSHB " + json.dumps(jobs)) == "{}"
        later = [job("S", [i], at="2099-01-01T00:00:00Z") for i in range(2000)]
        for i in range(0, 2000, 1000):
            assert c.call("PUSHB " + json.dumps(later[i:i + 1000])) == "{}"
        for retry, n in ((25, 500), (-1, 500)):  # 500 retries, then 500 dead
            for _ in range(n):
                j = job("F", [retry], queue="failing", retry=retry)
                assert c.push(j) == "OK"
                assert c.fetch("failing")["jid"] == j["jid"]
                assert c.fail(j["jid"]) == "OK"
        r = srv.redis()
        # Retries fall due 15 s or more after the failure: move them further off, so the
        # scheduler cannot change the data between the backup and the comparison.
        r.zadd("retries", {m: s + 86400 for m, s in r.zrange("retries", 0, -1, withscores=True)})
        r.close()
        before = everything(srv)
        assert sum(len(v) for k, v in before.items() if k != "queues") == 10000
        assert len(before["retries"]) == 500 and len(before["dead"]) == 500

        taken = cli("backup", "-d", data)
        assert taken.returncode == 0, taken.stderr
        path = taken.stdout.strip()
        assert path.startswith(os.path.join(data, "backups", "faktory-")) and os.path.exists(path)
        assert oct(os.stat(path).st_mode & 0o777) == "0o600"
        listed = cli("backup", "--list", "-d", data)
        assert listed.stdout.split("\t")[0] == path
        assert c.call("FLUSH") == "OK"
        assert everything(srv)["scheduled"] == []
        refused = cli("restore", path, "-d", data)
        assert refused.returncode == 1 and "stop it first" in refused.stderr
    finally:
        assert srv.stop() == 0
    restored = cli("restore", path, "-d", data)
    assert restored.returncode == 0, restored.stderr
    assert "the data it replaced is in" in restored.stdout
    srv.lines.clear()
    srv.start()
    try:
        assert everything(srv) == before
    finally:
        srv.stop()


def test_the_server_backs_up_on_its_own_and_keeps_the_newest(tmp_path) -> None:
    data = str(tmp_path)
    srv = FaktoryServer(data, processes=1, args=["--backup-every", "1", "--backup-keep", "2"])
    srv.start()
    try:
        srv.client().push(job())
        wait_for(lambda: sum("Backup written" in line for line in srv.lines) >= 3, timeout=30)
        names = sorted(os.listdir(os.path.join(data, "backups")))
        assert len(names) == 2 and all(n.startswith("faktory-") for n in names)
    finally:
        srv.stop()


def test_backup_of_a_stopped_server(tmp_path) -> None:
    data = str(tmp_path)
    none = cli("backup", "-d", data)
    assert none.returncode == 1 and "start the server" in none.stderr
    srv = FaktoryServer(data, processes=1).start()
    srv.client().push(job())
    srv.stop()
    taken = cli("backup", "-d", data)  # stopped cleanly: its RDB is the whole dataset
    assert taken.returncode == 0, taken.stderr
    with open(taken.stdout.strip(), "rb") as a, open(os.path.join(data, "faktory.rdb"), "rb") as b:
        assert a.read() == b.read()
    bad = cli("restore", os.path.join(data, "redis.conf"), "-d", data)
    assert bad.returncode == 1 and "not a Redis RDB file" in bad.stderr
    assert cli("backup", "--bogus").returncode == 2
