"""SIGHUP: conf.d/*.toml read again without dropping a connection (Faktory's reload)."""
from __future__ import annotations

import base64
import os
import signal
import urllib.error
import urllib.request
from typing import Any

import pytest

from faktory_fast import cron
from tests.integration.test_cron import T0, set_clock
from tests.support import FaktoryServer, job, wait_for
from tests.support import write_conf as write_conf_file


def status(port: int, password: str) -> int:
    auth = base64.b64encode(f"admin:{password}".encode()).decode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/",
                                 headers={"Authorization": f"Basic {auth}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as reply:
            return reply.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0  # the UI restarting: nobody listens for a moment


def write_conf(srv: FaktoryServer, text: str) -> None:
    write_conf_file(srv.data_dir, "server.toml", text)


def test_sighup_reloads_web_password_and_log_level_keeping_connections(tmp_path) -> None:
    srv = FaktoryServer(str(tmp_path), processes=2, web=True)
    write_conf(srv, '[web]\npassword = "first-pass"\n')
    srv.start()
    try:
        wait_for(lambda: status(srv.web_port, "first-pass") == 200, timeout=30)
        assert status(srv.web_port, "second-pass") == 401
        clients = [srv.client(wid=f"reload-{i}") for i in range(4)]  # on both processes
        write_conf(srv, '[web]\npassword = "second-pass"\n'
                        '[faktory]\npassword = "not-at-run-time"\n'
                        '[faktory_fast]\nlog_level = "debug"\nbackup_keep = 3\n')
        assert srv.proc is not None
        os.kill(srv.proc.pid, signal.SIGHUP)
        wait_for(lambda: any("configuration reloaded" in line for line in srv.lines))
        reloaded = next(line for line in srv.lines if "configuration reloaded" in line)
        assert "log_level" in reloaded and "web_password" in reloaded and "backup_keep" in reloaded
        # Faktory does not reload the command port's password either.
        assert any("password changed" in line and "needs a restart" in line for line in srv.lines)
        assert not any("not-at-run-time" in line for line in srv.lines)
        # Every server process took the new level; every connection is still served.
        wait_for(lambda: sum("Log level now debug" in line for line in srv.lines) == 2)
        for c in clients:
            assert c.push(job()) == "OK"
        wait_for(lambda: status(srv.web_port, "second-pass") == 200, timeout=30)
        assert status(srv.web_port, "first-pass") == 401
        # A configuration that does not parse keeps the running one.
        write_conf(srv, "[web\n")
        os.kill(srv.proc.pid, signal.SIGHUP)
        wait_for(lambda: any("configuration not reloaded" in line for line in srv.lines))
        assert status(srv.web_port, "second-pass") == 200
        assert clients[0].push(job()) == "OK"
    finally:
        assert srv.stop() == 0


NOT_RELOADED = "SIGHUP: configuration not reloaded"

THROTTLE_AND_CRON = """
[throttles]
q1 = { concurrency = 1, timeout = 60 }

[[cron]]
  schedule = "* * * * *"
  [cron.job]
    type = "Minutely"
    queue = "minutely"
"""


def refused_lines(srv: FaktoryServer) -> list[str]:
    return [line for line in srv.lines if NOT_RELOADED in line]


def sighup_refused(srv: FaktoryServer) -> str:
    """Send SIGHUP; the line saying the configuration was not reloaded."""
    before = len(refused_lines(srv))
    assert srv.proc is not None
    os.kill(srv.proc.pid, signal.SIGHUP)
    wait_for(lambda: len(refused_lines(srv)) > before)
    return refused_lines(srv)[-1]


def limit_of(srv: FaktoryServer, queue: str) -> tuple[int, int]:
    (t,) = [t for t in srv.store().throttle_usage() if t.queue == queue]
    return t.limit, t.timeout


@pytest.mark.parametrize("bad, key", [
    ("{ concurrency = 99999999999999999999, timeout = 60 }", "concurrency"),
    ("{ concurrency = 1, timeout = 99999999999999999999 }", "timeout"),
])
def test_sighup_refuses_a_throttle_number_past_64_bits(tmp_path: Any, bad: str, key: str) -> None:
    """Issue 22: the reload was accepted, then cron failed every second (a traceback each time)
    and stopped firing. Now: one line, the running configuration kept, cron and the throttle
    go on as before."""
    clock = str(tmp_path / "clock")
    set_clock(clock, T0)
    srv = FaktoryServer(str(tmp_path / "ff"), processes=1, env={cron.CLOCK_ENV: clock})
    path = write_conf_file(srv.data_dir, "conf.toml", THROTTLE_AND_CRON)
    srv.start()
    try:
        r = srv.redis()
        wait_for(lambda: r.get("ff:cron:seen"))  # the first cron round: tables published
        c = srv.client()
        for queue in ("q1", "q1", "other", "other"):
            assert c.push(job(queue=queue)) == "OK"
        assert c.fetch("q1")["queue"] == "q1"  # held: the throttle (1) is full
        assert c.fetch("q1", "other")["queue"] == "other"

        start = len(srv.lines)
        write_conf_file(srv.data_dir, "conf.toml",
                        THROTTLE_AND_CRON.replace("{ concurrency = 1, timeout = 60 }", bad))
        line = sighup_refused(srv)
        assert path in line and "'q1'" in line and key in line
        # Cron still fires: the next minute's job is pushed.
        set_clock(clock, T0 + 60)
        wait_for(lambda: r.llen("q:minutely") == 1)
        # The throttle in force is the old one, and still holds.
        assert limit_of(srv, "q1") == (1, 60)
        assert c.fetch("q1", "other")["queue"] == "other"
        # One line, nothing after it: no task failing.
        assert srv.lines[start:] == [line]
    finally:
        assert srv.stop() == 0


def test_sighup_refuses_a_conf_d_file_that_is_not_utf8(tmp_path: Any) -> None:
    """Issue 22: SIGHUP with a conf.d file that is not UTF-8 gave an "Exception in callback"
    traceback. Now: one line naming the file; the running configuration is kept and a good
    file is taken at the next SIGHUP."""
    srv = FaktoryServer(str(tmp_path), processes=1)
    write_conf_file(srv.data_dir, "a.toml", "[throttles]\nq1 = { concurrency = 1 }\n")
    srv.start()
    try:
        wait_for(lambda: srv.redis().get("ff:cron:seen"))  # the background tasks run
        start = len(srv.lines)
        bad = os.path.join(srv.data_dir, "conf", "conf.d", "b.toml")
        with open(bad, "wb") as fh:
            fh.write(b'[web]\npassword = "caf\xe9"\n')
        line = sighup_refused(srv)
        assert bad in line and "UTF-8" in line
        c = srv.client()
        assert c.push(job()) == "OK"  # still serving
        assert limit_of(srv, "q1") == (1, 60)
        os.unlink(bad)
        write_conf_file(srv.data_dir, "a.toml", "[throttles]\nq1 = { concurrency = 2 }\n")
        assert srv.proc is not None
        os.kill(srv.proc.pid, signal.SIGHUP)
        wait_for(lambda: limit_of(srv, "q1") == (2, 60))
        reloaded = [x for x in srv.lines[start:] if "configuration reloaded" in x]
        assert len(reloaded) == 1 and "throttles" in reloaded[0]
        assert srv.lines[start:] == [line, reloaded[0]]
    finally:
        assert srv.stop() == 0
