"""The master's supervision of the web UI: a UI that cannot start stops the server; one that
dies is restarted with back-off while the job server goes on."""
from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.support import FaktoryServer, children, descendants, status_or_refused, wait_for


def test_web_ui_that_cannot_start_stops_the_server(tmp_path: Path) -> None:
    """The UI's gunicorn cannot load the app (here a broken falcon earlier on PYTHONPATH; the
    job server does not import falcon): the reason is logged and the server exits with 1."""
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "falcon.py").write_text('raise ImportError("falcon is broken on this machine")\n')
    srv = FaktoryServer(str(tmp_path / "data"), processes=1, web=True,
                        env={"PYTHONPATH": str(broken)}).start()
    try:
        assert srv.proc is not None
        assert srv.proc.wait(30) == 1
    finally:
        srv.stop()
    log = "\n".join(srv.lines)
    assert "ImportError: falcon is broken on this machine" in log  # gunicorn's traceback
    assert "The web UI could not start (gunicorn exited with status" in log


def test_web_ui_that_dies_is_restarted_with_back_off(tmp_path: Path) -> None:
    """While the UI is down its port is closed (requests are refused, none waits for nobody);
    it is restarted after 1 s, then after 2 s when it dies again; the job server goes on."""
    srv = FaktoryServer(str(tmp_path), processes=1, web=True).start()
    health = f"http://127.0.0.1:{srv.web_port}/health"
    try:
        wait_for(lambda: status_or_refused(health) == 200, timeout=30, interval=0.1)

        def exits() -> list[str]:
            return [line for line in srv.lines if "The web UI exited" in line]

        for n in (1, 2):
            [gunicorn] = children(srv, b"gunicorn")
            for pid in [gunicorn, *descendants(gunicorn)]:  # the whole UI: master and worker
                os.kill(pid, signal.SIGKILL)
            wait_for(lambda: status_or_refused(health) is None)
            wait_for(lambda n=n: len(exits()) == n)
            assert exits()[-1].endswith(f"restarting it in {2 ** (n - 1)} s")
            wait_for(lambda old=gunicorn: children(srv, b"gunicorn") not in ([], [old])
                     and status_or_refused(health) == 200, timeout=30, interval=0.05)
        assert srv.client().call("INFO")
    finally:
        srv.stop()
