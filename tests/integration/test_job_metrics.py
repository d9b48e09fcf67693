"""Job metrics counted by real servers: exact for known jobs whatever node or process ends the
reservation (ACK, FAIL, a retry, an expired reservation), and none with the switch off."""
from __future__ import annotations

import time
from typing import Any

import redis

from faktory_fast.job_metrics import FLUSH_ENV, add, summarize
from faktory_fast.master.redis_child import RedisChild
from faktory_fast.storage import keys
from tests.support import FaktoryServer, job, two_nodes, wait_for


def test_counts_are_exact_across_nodes_failures_retries_and_expiry(tmp_path: Any) -> None:
    with two_nodes(str(tmp_path), processes=1, env={FLUSH_ENV: "0.1"}) as (a, b):
        ca, cb = a.client(), b.client()
        for jobtype in ("Mail", "Mail", "Mail", "Report"):
            assert ca.push(job(jobtype)) == "OK"
        r, store = a.redis(), a.store()
        started = time.time()
        j1, j2, j3, j4 = (ca.fetch()["jid"] for _ in range(4))
        assert ca.ack(j1) == "OK"  # where it was reserved
        assert cb.ack(j2) == "OK"  # on the other node: timed from its record
        assert ca.fail(j3) == "OK"  # a failure, then its retry ACKed on the other node
        r.zadd(keys.RETRIES, {r.zrange(keys.RETRIES, 0, 0)[0]: 0})  # due now
        retried = wait_for(lambda: cb.fetch())
        assert retried["jid"] == j3 and cb.ack(j3) == "OK"
        r.zadd(keys.WORKING, {j4: 1})  # its reservation expired long ago: the reaper fails it
        elapsed = time.time() - started

        def rows() -> Any:
            got = summarize(store.job_metrics_total())
            mail, report = got.get(("default", "Mail")), got.get(("default", "Report"))
            if mail and report and (mail.executions, report.executions) == (4, 1):
                return mail, report
            return None

        mail, report = wait_for(rows)
        assert (mail.executions, mail.failures, mail.timed) == (4, 1, 4)
        assert 0 < mail.seconds <= 4 * elapsed
        assert (report.executions, report.failures, report.timed) == (1, 1, 0)
        assert set(summarize(store.job_metrics_total())) == {("default", "Mail"),
                                                              ("default", "Report")}
        # The same counts in this minute's (or these minutes') and this hour's buckets.
        minutes = [k for k in r.scan_iter(keys.METRICS_MINUTE_PREFIX + "*")]
        summed: dict[str, str] = {}
        for key in minutes:
            add(summed, store.job_metrics_bucket(key.decode()))
        assert summed == store.job_metrics_total()


def test_no_job_metrics_with_the_switch_off(tmp_path: Any) -> None:
    """--metrics-job-types 0: nothing counted. The server runs on a Redis of the test's own, so
    what it wrote is read after it stopped (a stopping process flushes its counts last)."""
    shared = RedisChild(str(tmp_path / "redis"))
    shared.start()
    try:
        for switch, expected in ((["--metrics-job-types", "0"], set()),
                                 ([], {keys.METRICS_TOTAL.encode(), keys.METRICS_PAIRS.encode()})):
            srv = FaktoryServer(str(tmp_path / f"ff{len(switch)}"), processes=1,
                                env={"REDIS_URL": shared.url}, args=switch).start()
            try:
                c = srv.client()
                assert c.push(job("Mail")) == "OK"
                assert c.ack(c.fetch()["jid"]) == "OK"
                c.push(job("Mail"))
                srv.redis().zadd(keys.WORKING, {c.fetch()["jid"]: 1})
                wait_for(lambda srv=srv: srv.redis().zcard(keys.RETRIES) == 1)  # reaped
            finally:
                srv.stop()
            r = redis.Redis(unix_socket_path=shared.socket_path)
            assert {k for k in r.keys("ff:m:*") if b":min:" not in k and b":hour:" not in k} \
                == expected
            assert bool(r.keys(keys.METRICS_MINUTE_PREFIX + "*")) == bool(expected)
            r.flushdb()
            r.close()
    finally:
        shared.stop()
