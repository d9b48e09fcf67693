"""Servers that ``bench faktory`` starts and stops itself: Faktory 1.9.4 and this checkout's faktory_fast.

Faktory comes from the "anchor" binaries that ``/work/shared/anchor/build.sh`` builds from public
source (``faktory``, ``faktory-load``, ``fwgo-drain``; see bench/README.md). They are never part of
the repository or of CI, so a scenario that needs one and cannot find it is *skipped* (:class:`Skip`).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .client import BenchError, Conn, Endpoint, parse_faktory_url
from .procstat import tree

ROOT = Path(__file__).resolve().parent.parent
#: Where build.sh puts the binaries unless $ANCHOR says otherwise.
DEFAULT_ANCHOR = "/tmp/anchor"
#: Environment a spawned server must not inherit: it would change what is measured (an external
#: Redis, a password, another environment's defaults).
SCRUBBED_ENV = ("FAKTORY_PASSWORD", "FAKTORY_URL", "FAKTORY_ENV", "REDIS_URL", "REDIS_PROVIDER")
BUILD_HINT = ("build them with /work/shared/anchor/build.sh (bench/README.md, 'Against Faktory 1.9.4'), "
              "or point --anchor-bin or $ANCHOR at them")


class Skip(Exception):
    """A scenario cannot run here (binaries absent); the message says what is missing and why."""


def default_anchor_bin() -> str:
    """``$ANCHOR/bin``, else ``/tmp/anchor/bin``."""
    return os.path.join(os.environ.get("ANCHOR") or DEFAULT_ANCHOR, "bin")


def require(bin_dir: str, names: list[str], why: str) -> dict[str, str]:
    """Paths of the anchor binaries ``names`` in ``bin_dir``; :class:`Skip` naming the missing ones."""
    paths = {n: os.path.join(bin_dir, n) for n in names}
    missing = [n for n, p in paths.items() if not os.access(p, os.X_OK)]
    if missing:
        raise Skip(f"{why} needs {', '.join(missing)}, not found in {bin_dir}; {BUILD_HINT}")
    return paths


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel's pick)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env() -> dict[str, str]:
    """This process's environment without what would change a server's set-up."""
    env = dict(os.environ)
    for key in SCRUBBED_ENV:
        env.pop(key, None)
    return env


class Spawned:
    """A server process started by bench with its own temporary data directory.

    ``start()`` returns once a client completes the handshake; ``stop()`` sends SIGTERM, waits,
    then kills whatever is left of the process tree, and removes the directory.
    """

    #: short name: the target name in results ("faktory_fast", "faktory")
    name = ""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix=f"bench-{self.name}-")
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = os.path.join(self.dir, "server.log")
        self.info: dict[str, object] = {}

    @property
    def url(self) -> str:
        """``tcp://127.0.0.1:PORT`` (no password)."""
        return f"tcp://127.0.0.1:{self.port}"

    @property
    def endpoint(self) -> Endpoint:
        """The endpoint bench's own clients use."""
        return parse_faktory_url(self.url)

    def command(self) -> list[str]:
        """The command line (subclasses)."""
        raise NotImplementedError

    def start(self, timeout: float = 60.0) -> Spawned:
        """Start the server and wait (polling with a deadline) until it answers a handshake."""
        cmd = self.command()
        self.info["command"] = cmd
        with open(self.log_path, "wb") as log:
            # A session of its own: a Ctrl-C at the terminal reaches bench, which stops it in order.
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=server_env(), cwd=ROOT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited with code {self.proc.returncode} while starting "
                                   f"({' '.join(cmd)}):\n{self.log_tail()}")
            try:
                Conn(self.endpoint, timeout=5.0).close()
                self.info["tree"] = tree([self.proc.pid])  # what stop() must leave gone
                return self
            except (OSError, ConnectionError):
                if time.monotonic() > deadline:
                    self.stop()
                    raise BenchError(f"{self.name} did not accept a connection within {timeout:g}s:\n"
                                       f"{self.log_tail()}") from None
                time.sleep(0.05)  # polling for the listening socket (no event to wait on)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server's output."""
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-lines:]).decode(errors="replace")
        except OSError:
            return ""

    @property
    def redis_socket(self) -> str:
        """The unix socket of the Redis it runs (Faktory and faktory_fast alike: in ``-d``)."""
        return os.path.join(self.dir, "data", "redis.sock")

    def pids(self) -> list[int]:
        """The top pid, whose tree the CPU meter walks (server processes and their Redis)."""
        return [self.proc.pid] if self.proc is not None and self.proc.poll() is None else []

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, wait up to ``timeout``; then SIGKILL any process of the tree still there."""
        proc, self.proc = self.proc, None
        if proc is not None:
            family = tree([proc.pid])
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            # Its children (a child Redis) get a few seconds to finish on their own, then are ended.
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}") for p in family[1:]):
                time.sleep(0.05)  # polling: no event tells us a non-child process has exited
            for pid in family[1:]:
                if os.path.exists(f"/proc/{pid}"):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        shutil.rmtree(self.dir, ignore_errors=True)


class Faktory(Spawned):
    """Faktory 1.9.4 from the anchor binary: it runs its own ``redis-server`` (a child process,
    so the meter's tree walk includes it) on a socket in its data directory."""

    name = "faktory"

    def __init__(self, binary: str, extra: list[str]) -> None:
        if shutil.which("redis-server") is None:
            raise Skip("Faktory needs redis-server on PATH (apt-get install -y redis-server)")
        self.binary = binary
        self.extra = extra
        super().__init__()
        self.web_port = free_port()

    def command(self) -> list[str]:
        return [self.binary, "-b", f"127.0.0.1:{self.port}", "-w", f"127.0.0.1:{self.web_port}",
                "-d", os.path.join(self.dir, "data"), "-c", os.path.join(self.dir, "conf"),
                "-e", "development", *self.extra]

    def start(self, timeout: float = 60.0) -> Spawned:
        super().start(timeout)
        first = self.log_tail(40).splitlines()
        self.info["version"] = next((ln for ln in first if ln.startswith("Faktory ")), "?")
        return self


class FaktoryFast(Spawned):
    """This checkout's faktory_fast (``python -m faktory_fast`` of ``python``), default options
    unless ``extra`` says otherwise; the web UI is off (``-w :0``: Faktory's is an idle goroutine in
    its own process, faktory_fast's would be extra gunicorn processes)."""

    name = "faktory_fast"

    def __init__(self, python: str, extra: list[str]) -> None:
        self.python = python
        self.extra = extra
        super().__init__()

    def command(self) -> list[str]:
        return [self.python, "-m", "faktory_fast", "-b", f"127.0.0.1:{self.port}", "-w", ":0",
                "-d", os.path.join(self.dir, "data"), "-c", os.path.join(self.dir, "conf"),
                "-e", "development", *self.extra]

    def start(self, timeout: float = 60.0) -> Spawned:
        code = "import faktory_fast as f; print(f.__version__, f.hot_path())"
        res = subprocess.run([self.python, "-c", code], cwd=ROOT, env=server_env(),
                             capture_output=True, text=True, timeout=60)
        if res.returncode:
            raise BenchError(f"{self.python} cannot import faktory_fast:\n{res.stderr}")
        version, hot = res.stdout.split()
        self.info.update(version=f"faktory_fast {version}", hot_path=hot, commit=_commit())
        return super().start(timeout)


class Floor(Spawned):
    """bench's floor server (``python -m bench.lab.floor``, run by ``python``): the least a server in
    this stack does per command with the same child Redis and durability rule."""

    name = "floor"

    def __init__(self, python: str, extra: list[str] | None = None) -> None:
        self.python = python
        self.extra = extra or []
        super().__init__()

    def command(self) -> list[str]:
        return [self.python, "-m", "bench.lab.floor", "-b", f"127.0.0.1:{self.port}",
                "-d", os.path.join(self.dir, "data"), *self.extra]


def _commit() -> str | None:
    """This checkout's commit, with ``+changes`` when the server's sources differ from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "faktory_fast", "ext", "setup.py"],
                               cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (head + ("+changes" if dirty else "")) or None


def default_fast_python() -> str:
    """This checkout's ``.venv/bin/python`` (what ``make build`` makes), else this interpreter."""
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable
