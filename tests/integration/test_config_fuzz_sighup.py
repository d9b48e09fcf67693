"""conf.d fuzzed on SIGHUP against a running server (the cases: tests/unit/test_config_fuzz.py):
one log line each, still serving, its configuration kept."""
from __future__ import annotations

import os
import random
import signal
from typing import Any

from tests.support import FaktoryServer, job, wait_for, write_conf
from tests.unit.test_config_fuzz import BASE, CASES, SEED, check_refusal


def test_a_few_on_sighup(tmp_path: Any) -> None:
    """A running server given refused cases on SIGHUP: one log line each, still serving, its
    configuration kept; a good file afterwards is taken."""
    rng = random.Random(SEED + 3)
    # Cases in tables BASE does not declare (else the refusal would be TOML's, for the clash).
    candidates = [c for c in CASES if c.valid is False and c.key != "throttles"
                  and not c.text.startswith("[throttles]")]
    sample = [c for c in candidates if c.key == "UTF-8"][:1] + rng.sample(candidates, 4)
    srv = FaktoryServer(str(tmp_path), processes=1)
    write_conf(srv.data_dir, "a.toml", BASE)
    srv.start()
    try:
        r = srv.redis()
        wait_for(lambda: r.get("ff:cron:seen"))  # the background tasks run: SIGHUP is handled
        store = srv.store()
        tables = (store.throttle_usage(), store.cron_entries())
        path = os.path.join(srv.data_dir, "conf", "conf.d", "z.toml")
        start = len(srv.lines)
        refusals: list[str] = []
        c = srv.client()
        assert srv.proc is not None
        for case in sample:
            with open(path, "wb") as fh:
                fh.write(case.content)
            os.kill(srv.proc.pid, signal.SIGHUP)
            told = wait_for(lambda: [x for x in srv.lines[start:] if "SIGHUP" in x][len(refusals):])
            refusals.append(told[0])
            assert "SIGHUP: configuration not reloaded: " in refusals[-1], (case, refusals[-1])
            check_refusal(refusals[-1].split("not reloaded: ", 1)[1], case, path)
            assert c.push(job()) == "OK"  # still serving
            assert (store.throttle_usage(), store.cron_entries()) == tables
        with open(path, "w") as fh:
            fh.write("[faktory_fast]\nbackup_keep = 5\n")
        os.kill(srv.proc.pid, signal.SIGHUP)
        (reloaded,) = wait_for(lambda: [x for x in srv.lines[start:] if "reloaded (" in x])
        assert "configuration reloaded (backup_keep)" in reloaded
        assert srv.lines[start:] == [*refusals, reloaded]
    finally:
        assert srv.stop() == 0
