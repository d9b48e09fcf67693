"""SIGHUP: conf.d/*.toml read again without dropping a connection (Faktory's reload)."""
from __future__ import annotations

import base64
import os
import signal
import urllib.error
import urllib.request

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
