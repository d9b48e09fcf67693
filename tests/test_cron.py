"""Enterprise cron: [[cron]] entries push their job once per tick across processes and nodes.

The servers' cron clock is the test's (cron.CLOCK_ENV: a file holding "now"), so ticks minutes
apart take no time.
"""
from __future__ import annotations

import calendar
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from faktory_fast import cron, jobs
from faktory_fast.config import ConfigError
from faktory_fast.log import FailureLog
from tests.support import ROOT, FaktoryServer, job, load_config, two_nodes, wait_for, write_conf

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


def test_schedules_use_the_server_time_zone_and_named_schedules() -> None:
    entries = cron.parse_entries(
        [{"schedule": "0 9 * * *", "job": {"type": "Morning"}},
         {"schedule": "@hourly", "job": {"type": "Hourly"}}], ["cron.toml", "cron.toml"])
    morning, hourly = entries
    ny = ZoneInfo("America/New_York")
    start = datetime(2030, 1, 1, tzinfo=UTC).timestamp()
    # 09:00 in New York in January is 14:00 UTC; in July (DST) 13:00 UTC.
    assert datetime.fromtimestamp(morning.next_tick(start, ny), UTC).hour == 14
    july = datetime(2030, 7, 1, tzinfo=UTC).timestamp()
    assert datetime.fromtimestamp(morning.next_tick(july, ny), UTC).hour == 13
    assert list(hourly.ticks(start, start + 3 * 3600, UTC)) == [
        start + 3600, start + 7200, start + 10800]
    # The id is the same on every node and across restarts, and differs between entries.
    again = cron.parse_entries([{"schedule": "0 9 * * *", "job": {"type": "Morning"}}], [])
    assert again[0].id == morning.id != hourly.id


@pytest.mark.parametrize("text, message", [
    ('[[cron]]\nschedule = "61 * * * *"\n[cron.job]\ntype = "A"\n', "bad schedule"),
    ('[[cron]]\nschedule = "* * *"\n[cron.job]\ntype = "A"\n', "bad schedule"),
    ('[[cron]]\nschedule = "@sometimes"\n[cron.job]\ntype = "A"\n', "unknown schedule"),
    ('[[cron]]\nschedule = "* * * * *"\n', "missing \\[cron.job\\]"),
    ('[[cron]]\nschedule = "* * * * *"\n[cron.job]\nqueue = "q"\n', "needs a type"),
    ('[[cron]]\nschedule = "* * * * *"\n[cron.job]\ntype = "A"\nqueue = "a b"\n',
     "queue names must match"),
    ('[[cron]]\nschedule = "* * * * *"\n[cron.job]\ntype = "A"\nklass = "B"\n',
     "unknown \\[cron.job\\] key 'klass'"),
    ('[[cron]]\nschedule = "* * * * *"\n[cron.job]\ntype = "A"\nreserve_for = 100000\n',
     "reserved for more than one day"),
])
def test_invalid_entry_names_file_and_entry(tmp_path: Any, text: str, message: str) -> None:
    write_conf(str(tmp_path), "a.toml", '[[cron]]\nschedule = "@daily"\n[cron.job]\ntype = "Ok"\n')
    path = write_conf(str(tmp_path), "b.toml", text)
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path))
    # b.toml's first entry (the second of the merged document): named by its file.
    assert str(info.value).startswith(f"invalid cron entry in {path} [[cron]] entry 1: ")
    assert "\n" not in str(info.value)
    assert re.search(message, str(info.value))


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


class Records(logging.Handler):
    """Keeps what is logged to it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def raised(exc: Exception) -> Exception:
    """``exc`` with a traceback, as a background task's failure has."""
    try:
        raise exc
    except Exception as caught:
        return caught


@pytest.mark.unit
def test_failure_log_reports_each_distinct_failure_once_a_minute() -> None:
    """A task failing every second logs one line a minute per distinct failure (type and
    message), not a traceback each time; the traceback only at debug level."""
    now = [1000.0]
    logger = logging.getLogger("tests.failure_log")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    kept = Records()
    logger.addHandler(kept)
    try:
        failures = FailureLog("Background task run_cron", logger, clock=lambda: now[0])
        for t in range(60):  # every second for a minute
            now[0] = 1000.0 + t
            failures.failed(raised(RuntimeError("boom")))
            if t == 30:  # another failure is another line, at once
                failures.failed(raised(ValueError("two\nlines")))
        now[0] = 1060.0
        failures.failed(raised(RuntimeError("boom")))
        failures.failed(raised(RuntimeError("boom")))
        assert [(r.levelno, r.getMessage()) for r in kept.records] == [
            (logging.ERROR, "Background task run_cron failed: RuntimeError: boom"),
            (logging.ERROR, "Background task run_cron failed: ValueError: two\\nlines"),
            (logging.ERROR, "Background task run_cron failed: RuntimeError: boom "
                            "(59 more times in the last 60 s)"),
        ]
        assert all(r.exc_info is None for r in kept.records)
        # At debug level the traceback comes with each line, and only then.
        logger.setLevel(logging.DEBUG)
        kept.records.clear()
        failures.failed(raised(KeyError("k")))
        failures.failed(raised(KeyError("k")))
        line, trace = kept.records
        assert line.getMessage() == "Background task run_cron failed: KeyError: 'k'"
        assert trace.levelno == logging.DEBUG and trace.exc_info is not None
        assert trace.exc_info[0] is KeyError
    finally:
        logger.removeHandler(kept)


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
