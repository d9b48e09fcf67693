"""Enterprise cron's entries: schedules in the server's time zone, named schedules, stable ids,
and an invalid entry refused with one line naming its file and entry."""
from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from faktory_fast import cron
from faktory_fast.config import ConfigError
from tests.support import load_config, write_conf


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
