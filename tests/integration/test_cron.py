"""Enterprise cron: [[cron]] entries push their job once per tick across processes and nodes.

The servers' cron clock is the test's (cron.CLOCK_ENV: a file holding "now"), so ticks minutes
apart take no time.
"""
from __future__ import annotations

import calendar
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

from faktory_fast import cron, jobs
from tests.support import ROOT, FaktoryServer, job, two_nodes, wait_for, write_conf

T0 = calendar.timegm((2030, 1, 1, 0, 0, 30))  # half a minute past midnight, UTC

CRON = """
[[cron]]
  schedule = "* * * * *"
  [cron.job]
    type = "EveryMinute"
    queue = "minutely"

[[cron]]
  schedule = "*/5 * * * *"
  [cron.job]
    type = "FiveJob"
    queue = "five"
    retry = 3
    args = [1, "two"]
    reserve_for = 600
    [cron.job.custom]
      expires_in = 60
"""


def set_clock(path: str, t: float) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(repr(float(t)))
    os.replace(tmp, path)  # the server never reads half a number


def queued(srv: FaktoryServer, queue: str) -> list[bytes]:
    return srv.redis().lrange(f"q:{queue}", 0, -1)


def handled(nodes: tuple[FaktoryServer, ...], tick: int, entries: int = 1) -> bool:
    """Every node has pushed, or seen pushed elsewhere, ``tick`` of ``entries`` entries (its
    debug log says so)."""
    return all(sum(f"tick {tick}: " in line for line in n.lines) >= entries for n in nodes)


def test_one_push_per_tick_across_nodes_and_restarts(tmp_path: Any) -> None:
    clock = str(tmp_path / "clock")
    set_clock(clock, T0)
    env = {cron.CLOCK_ENV: clock}
    minute = T0 - 30  # 00:00
    with two_nodes(str(tmp_path), processes=2, conf=CRON, env=env,
                   args=["-l", "debug"]) as (a, b):
        wait_for(lambda: all(any("Cron: pushing the ticks after" in x for x in n.lines)
                             for n in (a, b)))
        set_clock(clock, T0 + 3 * 60)  # ticks 00:01, 00:02, 00:03
        wait_for(lambda: all(handled((a, b), minute + m * 60) for m in (1, 2, 3)))
        assert len(queued(a, "minutely")) == 3
        assert queued(a, "five") == []
        set_clock(clock, T0 + 5 * 60)  # 00:04, 00:05 (and FiveJob's 00:05)
        wait_for(lambda: handled((a, b), minute + 240) and handled((a, b), minute + 300, 2))
        assert len(queued(a, "minutely")) == 5
        (job,) = [json.loads(x) for x in queued(a, "five")]
        assert (job["jobtype"], job["args"], job["retry"], job["reserve_for"]) == \
            ("FiveJob", [1, "two"], 3, 600)
        assert "expires_at" in job["custom"]
        last = a.store().cron_last()
        assert sorted(t for t, _ in last.values()) == [minute + 300, minute + 300]
        assert job["jid"] in {jid for _, jid in last.values()}

        # Node b down: a alone pushes 00:06 and 00:07.
        b.stop()
        set_clock(clock, T0 + 7 * 60)
        wait_for(lambda: len(queued(a, "minutely")) == 7)
        # Both down for two minutes, then b comes back: it pushes what was missed, once.
        a.stop()
        set_clock(clock, T0 + 9 * 60)
        b.start()
        wait_for(lambda: len(queued(b, "minutely")) == 9)
        a.start()
        wait_for(lambda: sum("Cron: pushing the ticks after" in x for x in a.lines) == 2)
        set_clock(clock, T0 + 10 * 60)  # 00:10 for both entries
        wait_for(lambda: handled((a, b), minute + 600, 2))
        assert len(queued(b, "five")) == 2
        jids = [json.loads(x)["jid"] for x in queued(b, "minutely")]
        assert len(jids) == len(set(jids)) == 10
        # The clock leaps 30 minutes (the nodes fell behind): only the last 10 minutes' ticks.
        set_clock(clock, T0 + 40 * 60)
        wait_for(lambda: handled((a, b), minute + 40 * 60, 2))
        assert len(queued(b, "minutely")) == 20 and len(queued(b, "five")) == 4
        assert not any(handled((n,), minute + 30 * 60) for n in (a, b))  # 00:30: too old


def test_server_refuses_to_start_with_a_bad_entry(tmp_path: Any) -> None:
    path = write_conf(str(tmp_path), "cron.toml",
                      '[[cron]]\nschedule = "* * * * * * *"\n[cron.job]\ntype = "A"\n')
    done = subprocess.run([sys.executable, "-m", "faktory_fast", "-d", str(tmp_path / "db"),
                           "-c", os.path.join(str(tmp_path), "conf"), "-b", "127.0.0.1:0",
                           "-w", ":0"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if "invalid cron entry" in line]
    assert len(errors) == 1 and path in errors[0] and "entry 1" in errors[0]


def test_sighup_reloads_entries_and_keeps_them_on_error(tmp_path: Any) -> None:
    clock = str(tmp_path / "clock")
    set_clock(clock, T0)
    srv = FaktoryServer(str(tmp_path / "ff"), processes=1, env={cron.CLOCK_ENV: clock})
    write_conf(srv.data_dir, "cron.toml", CRON)
    srv.start()
    try:
        store = srv.store()
        # The first cron round: the master runs its tasks (and handles SIGHUP) by then.
        wait_for(lambda: srv.redis().get("ff:cron:seen"))
        assert len(store.cron_entries()) == 2
        write_conf(srv.data_dir, "cron.toml",
                   '[[cron]]\nschedule = "@hourly"\n[cron.job]\ntype = "Hourly"\n')
        assert srv.proc is not None
        os.kill(srv.proc.pid, signal.SIGHUP)
        wait_for(lambda: [e["job"]["jobtype"] for e in store.cron_entries().values()]
                 == ["Hourly"])
        write_conf(srv.data_dir, "cron.toml", '[[cron]]\nschedule = "nope"\n')
        os.kill(srv.proc.pid, signal.SIGHUP)
        wait_for(lambda: any("configuration not reloaded: invalid cron entry" in x
                             for x in srv.lines))
        set_clock(clock, T0 + 3600)  # 01:00: the hourly entry still runs
        wait_for(lambda: len(queued(srv, "default")) == 1)
    finally:
        srv.stop()


def test_a_failing_cron_round_logs_one_line_a_minute(tmp_path: Any) -> None:
    """The cron task failing every second (its clock unreadable) logs one line, not a
    traceback a second, and runs again once the clock reads."""
    clock = str(tmp_path / "clock")
    set_clock(clock, T0)
    srv = FaktoryServer(str(tmp_path / "ff"), processes=1, env={cron.CLOCK_ENV: clock})
    write_conf(srv.data_dir, "cron.toml",
               '[[cron]]\nschedule = "* * * * *"\n[cron.job]\ntype = "M"\nqueue = "minutely"\n')
    srv.start()
    try:
        r = srv.redis()
        wait_for(lambda: r.get("ff:cron:seen"))
        start = len(srv.lines)
        with open(clock + ".tmp", "w") as fh:
            fh.write("not a time")
        os.replace(clock + ".tmp", clock)
        wait_for(lambda: any("run_cron failed" in x for x in srv.lines[start:]))
        # At least two more cron rounds (one a second) have failed once the scheduler has
        # enqueued a job due 2.5 s from now.
        c = srv.client()
        marker = job(queue="marker", at=jobs.rfc3339(time.time_ns() + 2_500_000_000))
        assert c.push(marker) == "OK"
        wait_for(lambda: r.llen("q:marker") == 1)
        (line,) = srv.lines[start:]
        assert "Background task run_cron failed: ValueError: could not convert" in line
        set_clock(clock, T0 + 60)
        wait_for(lambda: r.llen("q:minutely") == 1)
    finally:
        assert srv.stop() == 0
