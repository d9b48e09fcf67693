"""The web UI's supervision: gunicorn on the ``-w`` port, started by the master, restarted with
back-off when it dies after serving, and at once with new settings on a reload."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable

import faktory_fast
from faktory_fast.config import Config
from faktory_fast.master.gunicorn_conf import READY_FD_ENV
from faktory_fast.master.listen import StartupError, bind
from faktory_fast.master.redis_child import set_pdeathsig

log = logging.getLogger("faktory_fast")

WEB_START_TIMEOUT = 30.0  # a web UI not serving by then has failed to start
WEB_BACKOFF = (1.0, 60.0)  # delay before restarting a web UI that died: doubles from 1 s to 60 s
WEB_STABLE = 60.0  # a web UI that served this long before dying is restarted after 1 s again
#: Where this faktory_fast was imported from: the web UI's working directory, which gunicorn
#: puts first on sys.path (unless it is there already), so there it finds this very package.
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(faktory_fast.__file__)))


def bind_web(cfg: Config) -> socket.socket:
    """The web UI's listening socket, bound by the master so a taken port is reported at once
    (gunicorn would retry for 5 s)."""
    try:
        return bind(cfg.web_host, cfg.web_port)
    except StartupError as exc:
        raise StartupError(f"Web UI: {exc}") from None


class WebUI:
    """The web UI the master runs: one gunicorn at a time, watched as the master's other
    children are (``watch``: ``reap`` is called when one exits)."""

    def __init__(self, settings: Callable[[], Config], redis_url: str, started_at: float,
                 watch: Callable[[subprocess.Popen], None]) -> None:
        """``settings``: the master's configuration, as it is now (a reload changes it)."""
        self.settings = settings
        self.redis_url = redis_url
        self.started_at = started_at
        self.watch = watch
        self.proc: subprocess.Popen | None = None  # the running gunicorn
        self.stopped = False
        self._reloading = False  # being restarted for new settings
        self._ready_at: float | None = None  # when the running gunicorn began serving
        self._served = False  # one that dies after this is restarted, not fatal
        self._backoff = WEB_BACKOFF[0]

    def start(self, sock: socket.socket) -> None:
        """Run gunicorn on ``sock`` (closed here: gunicorn holds the port from now on, so a
        dead UI leaves nobody listening rather than requests waiting for nobody)."""
        cfg = self.settings()
        env = dict(os.environ,
                   FAKTORY_FAST_REDIS_URL=self.redis_url,
                   FAKTORY_FAST_WEB_PASSWORD=cfg.web_password,
                   FAKTORY_FAST_ENV=cfg.environment,
                   FAKTORY_FAST_STARTED_AT=repr(self.started_at),
                   FAKTORY_FAST_BINDING=cfg.binding,
                   FAKTORY_FAST_METRICS_JOB_TYPES=str(cfg.metrics_job_types))
        ready_r, ready_w = os.pipe()
        env[READY_FD_ENV] = str(ready_w)
        fd = sock.fileno()
        # Native TLS (net.tls_files): gunicorn's default context takes TLS 1.2 or later only.
        tls = ["--certfile", cfg.tls_cert, "--keyfile", cfg.tls_key] if cfg.tls_cert else []
        try:
            # -P and the working directory PACKAGE_ROOT: gunicorn imports the package this
            # process runs, not a checkout in the directory the server was started from.
            self.proc = subprocess.Popen(
                [sys.executable, "-P", "-m", "gunicorn", "-c", "python:faktory_fast.master.gunicorn_conf",
                 "-b", f"fd://{fd}", "-w", "1", "--threads", "4", "--log-level", "warning", *tls,
                 "faktory_fast.web.app:create_app()"],
                env=env, cwd=PACKAGE_ROOT, pass_fds=(fd, ready_w), preexec_fn=set_pdeathsig)
        except OSError:
            os.close(ready_r)
            raise
        finally:
            sock.close()
            os.close(ready_w)
        self._ready_at = None
        self.watch(self.proc)
        self._watch_ready(self.proc, ready_r)

    def _address(self) -> str:
        cfg = self.settings()
        host, port = cfg.web_host, cfg.web_port
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def _watch_ready(self, proc: subprocess.Popen, ready: int) -> None:
        """Log the UI's address once ``proc`` serves; stop it if it does not within
        WEB_START_TIMEOUT (its exit then counts as a failed start)."""
        loop = asyncio.get_running_loop()

        def readable() -> None:
            if not os.read(ready, 64):  # EOF: every gunicorn process is gone
                loop.remove_reader(ready)
                os.close(ready)
            elif proc is self.proc and self._ready_at is None:
                self._ready_at = time.monotonic()
                self._served = True
                log.info("Web UI at %s://%s", "https" if self.settings().tls_cert else "http",
                         self._address())

        def too_slow() -> None:
            if proc is self.proc and self._ready_at is None and proc.poll() is None:
                log.error("The web UI did not start within %.0f s; stopping it", WEB_START_TIMEOUT)
                # Its gunicorn workers too: an orphan would keep the port open for nobody.
                try:
                    with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as fh:
                        workers = [int(pid) for pid in fh.read().split()]
                except OSError:
                    workers = []
                proc.kill()
                for pid in workers:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass

        loop.add_reader(ready, readable)
        loop.call_later(WEB_START_TIMEOUT, too_slow)

    def _restart(self) -> None:
        if self.stopped or self.proc is not None:
            return
        try:
            sock = bind_web(self.settings())
        except StartupError as exc:
            log.error("%s; trying again in %.0f s", exc, self._backoff)
            self._restart_later()
            return
        self.start(sock)

    def _restart_later(self) -> None:
        asyncio.get_running_loop().call_later(self._backoff, self._restart)
        self._backoff = min(self._backoff * 2, WEB_BACKOFF[1])

    def reap(self) -> bool:
        """A child exited: if it was the web UI, restart it, with back-off (its port is closed
        meanwhile: gunicorn held the only socket). False if it never served (as when its port
        is taken): the server must stop."""
        if self.proc is None or self.proc.poll() is None or self.stopped:
            return True
        code, self.proc = self.proc.returncode, None
        if self._reloading:  # stopped by reload(): back at once, with the new settings
            self._reloading = False
            self._restart()
            return True
        if not self._served:
            log.error("The web UI could not start (gunicorn exited with status %s; its error is "
                      "above); shutting down", code)
            return False
        if self._ready_at is not None and time.monotonic() - self._ready_at >= WEB_STABLE:
            self._backoff = WEB_BACKOFF[0]
        log.warning("The web UI exited with status %s; restarting it in %.0f s", code,
                    self._backoff)
        self._restart_later()
        return True

    def reload(self) -> None:
        """Restart the running UI for new settings (gracefully: ``reap`` starts it again)."""
        if self.proc is not None:
            self._reloading = True
            self.proc.terminate()

    def stop(self) -> list[subprocess.Popen]:
        """Restart it no more; the running gunicorn, if any, for the master to stop with its
        other children."""
        self.stopped = True
        return [self.proc] if self.proc is not None else []
