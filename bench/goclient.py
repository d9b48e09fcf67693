"""Run one of the Go client binaries (``faktory-load``, ``fwgo-drain``) against a target server,
metering the server's CPU over the client's whole run and the client's own CPU (rusage)."""
from __future__ import annotations

import os
import re
import resource
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any

from .client import BenchError
from .common import Target
from .procstat import ServerMeter

#: faktory-load's last line: ``Processed P pushes and Q pops in S seconds, rate: R jobs/s``
LOAD_RE = re.compile(r"^Processed (\d+) pushes and (\d+) pops in ([\d.]+) seconds, rate: ([\d.]+) jobs/s$")
#: fwgo-drain's last line: ``Processed N jobs in S seconds, rate: R jobs/s``
DRAIN_RE = re.compile(r"^Processed (\d+) jobs in ([\d.]+) seconds, rate: ([\d.]+) jobs/s$")
#: faktory-load's other normal output
LOAD_OK = re.compile(r"Running loadtest with \d+ jobs and \d+ threads$")
#: fwgo-drain's and faktory_worker_go's normal output (log lines start with a date and time)
DRAIN_OK = re.compile(r"fwgo-drain: |\d{4}/\d\d/\d\d [\d:.]+ (faktory_worker_go .* now ready to process jobs"
                      r"|Using Faktory Client API|Shutting down\.\.\.|Goodbye)")


@dataclass
class ClientRun:
    """What one run of a client binary printed and cost."""

    lines: list[str]
    elapsed_s: float  # wall clock of the metered window (from the start, client start-up included)
    cpu_s: float  # the client's user + system CPU
    cpu_user_s: float
    meter: ServerMeter


def run_client(cmd: list[str], target: Target, timeout: float, meter: bool = True,
               stop_at: str | None = None) -> ClientRun:
    """Run ``cmd`` with ``FAKTORY_URL`` set to ``target``; raise BenchError on failure or timeout.

    The server meter's window is the client process's lifetime (so it includes the client's
    connecting), or ends at the first output line containing ``stop_at`` (e.g. fwgo-drain's
    "Shutting down...", printed once the last job is done: its fetchers then wait out their FETCH).
    """
    env = dict(os.environ, FAKTORY_URL=target.endpoint.url)
    env.pop("FAKTORY_PROVIDER", None)
    server = ServerMeter(target.pids if meter else [])
    # Children's rusage counts only reaped children; the servers are not reaped until the end.
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    server.start()
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    timed_out: list[bool] = []

    def expire() -> None:
        timed_out.append(True)
        proc.kill()

    timer = threading.Timer(timeout, expire)
    timer.start()
    lines: list[str] = []
    elapsed = 0.0
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # Go writes os.Stdout unbuffered: lines arrive as printed
            lines.append(line.rstrip("\n"))
            if stop_at is not None and not elapsed and stop_at in line:
                elapsed = time.monotonic() - t0
                server.stop()
        code = proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if not elapsed:
        elapsed = time.monotonic() - t0
        server.stop()
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    name = os.path.basename(cmd[0])
    if timed_out:
        raise BenchError(f"{name} did not finish within {timeout:g}s (jobs lost or server stalled); "
                         f"output:\n" + "\n".join(lines[-30:]))
    if code:
        raise BenchError(f"{' '.join(cmd)} exited with code {code}:\n" + "\n".join(lines[-30:]))
    user = r1.ru_utime - r0.ru_utime
    return ClientRun(lines, elapsed, user + r1.ru_stime - r0.ru_stime, user, server)


def match_last(run: ClientRun, pattern: re.Pattern[str], what: str, allowed: re.Pattern[str]) -> re.Match[str]:
    """The summary line matched by ``pattern``; BenchError when it is missing or when the client
    printed any line that ``allowed`` does not match (its errors: it goes on after them)."""
    found = None
    other = []
    for line in run.lines:
        m = pattern.match(line.strip())
        if m:
            found = m
        elif line.strip() and not allowed.match(line):
            other.append(line)
    if found is None or other:
        raise BenchError(f"{what}: unexpected output:\n" + "\n".join(run.lines[-30:]))
    return found


def server_metrics(meter: ServerMeter, jobs: int, elapsed: float) -> dict[str, Any]:
    """Server CPU per job, % of a core over the window, and its split (server processes / Redis)."""
    cpu = meter.cpu_s()
    return {
        "server_cpu_us_per_job": None if cpu is None else cpu / jobs * 1e6,
        "server_cpu_pct": None if cpu is None else cpu / elapsed * 100,
        "server_procs": meter.nprocs(),
        **{key.replace(" ", "_") + "_us_per_job": c / jobs * 1e6 for key, c in meter.parts().items()},
    }
