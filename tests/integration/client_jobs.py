"""Job handlers for the worker CLI tests (``python -m faktory_fast_client worker
tests.integration.client_jobs:worker``): each prints one JSON line when it starts, so a test
waits on the output, not the clock."""
from __future__ import annotations

import asyncio
import json
import sys
import time

from faktory_fast_client import Worker, current_job

worker = Worker(queues=["cli"], concurrency=2, beat_interval=0.2, shutdown_timeout=2)


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)
    sys.stdout.flush()


@worker.register("CliOk")
def cli_ok(*args: object) -> None:
    say(event="job", jobtype="CliOk", jid=current_job().jid, args=list(args))


@worker.register("CliAsync")
async def cli_async(*args: object) -> None:
    say(event="job", jobtype="CliAsync", jid=current_job().jid, args=list(args))


@worker.register("CliHang")
def cli_hang(*args: object) -> None:
    say(event="job", jobtype="CliHang", jid=current_job().jid)
    time.sleep(3600)


@worker.register("CliSlowAsync")
async def cli_slow_async(seconds: float) -> None:
    say(event="job", jobtype="CliSlowAsync", jid=current_job().jid)
    await asyncio.sleep(seconds)
    say(event="done", jid=current_job().jid)
