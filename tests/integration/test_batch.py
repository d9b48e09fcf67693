"""Batches (Faktory Enterprise's BATCH command), over the wire: NEW / COMMIT / OPEN / STATUS,
jobs joining with custom.bid, the complete and success callbacks (exactly once, in order,
nested batches), expiry; with several server processes and two nodes on one Redis racing on
the last ACKs. docs/enterprise.md describes the rules tested here."""
from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from faktory_fast import config
from faktory_fast.storage import keys
from tests.deployments import on_each_deployment
from tests.ent_client import Ent
from tests.support import (
    Client,
    FaktoryServer,
    ReplyError,
    clients_on_distinct_processes,
    job,
    load_config,
)

# The protocol of this module, on a single Redis and on a Redis Cluster.
server = on_each_deployment()


def llen(server: FaktoryServer, queue: str) -> int:
    r = server.redis()
    try:
        return r.llen(keys.queue(queue))
    finally:
        r.close()


def run_all(c: Client, queue: str) -> list[dict]:
    """Fetch and ACK every job in ``queue``; the jobs."""
    done = []
    while llen_via(c, queue):
        j = c.fetch(queue)
        assert c.ack(j["jid"]) == "OK"
        done.append(j)
    return done


def llen_via(c: Client, queue: str) -> int:
    return c.info()["faktory"]["queues"].get(queue, 0)


def new_batch(e: Ent, cbq: str = "cb", **kw: object) -> str:
    return e.batch_new(complete=job("Complete", queue=cbq), success=job("Success", queue=cbq), **kw)


# -- the commands ------------------------------------------------------------------------------

def test_new_answers_the_bid_as_a_simple_string(client: Client) -> None:
    client.send("BATCH NEW " + json.dumps({"bid": "", "success": job("S")}))
    line = client._readline()
    assert line.startswith(b"+b-") and len(line) > 10
    status = Ent(client).status(line[1:].decode())
    assert status["bid"] == line[1:].decode()
    assert (status["total"], status["pending"], status["failed"]) == (0, 0, 0)
    assert (status["complete_st"], status["success_st"]) == ("", "")
    assert "parent_bid" not in status and "description" not in status
    assert status["created_at"].endswith("Z")


@pytest.mark.parametrize("spec, message", [
    ({"bid": ""}, "A batch needs a success or complete callback job"),
    ({"bid": "b-mine", "success": job("S")}, "BID must be blank"),
    ({"success": "S"}, "batch success callback must be a job object"),
    ({"complete": {"jobtype": "", "args": []}}, "batch complete callback: jobs must have a jobtype"),
    ({"success": job("S", queue="a:p9")}, "batch success callback: "),
    ({"success": job("S"), "description": 5}, "parent_bid and description must be strings"),
    ({"success": job("S"), "parent_bid": "b-nope"}, "No such parent batch b-nope"),
    ([1], "BATCH NEW needs a JSON object"),
])
def test_new_refuses_bad_definitions(client: Client, spec: object, message: str) -> None:
    with pytest.raises(ReplyError, match="^ERR " + message):
        client.call("BATCH NEW " + json.dumps(spec))
    assert client.push(job()) == "OK"  # the connection is still usable


def test_bad_batch_lines_leave_the_connection_usable(client: Client) -> None:
    for line, message in [("BATCH NEW {oops", "ERR "), ("BATCH", "ERR BATCH needs a subcommand"),
                          ("BATCH FROB b-1", "ERR Unknown BATCH subcommand: FROB"),
                          ("BATCH STATUS", "ERR BATCH STATUS needs one batch id"),
                          ("BATCH STATUS b-unknown", "ERR No such batch b-unknown"),
                          ("BATCH COMMIT b-unknown", "ERR No such batch b-unknown"),
                          ("BATCH OPEN b-unknown", "ERR No such batch b-unknown")]:
        with pytest.raises(ReplyError) as err:
            client.call(line)
        assert str(err.value).startswith(message), (line, str(err.value))
    assert client.push(job()) == "OK"  # still usable
    assert client.info()["faktory"]["queues"]["default"] == 1


def test_push_into_unknown_or_committed_batch_is_refused_and_nothing_stored(client: Client) -> None:
    e = Ent(client)
    j = job(queue="bq", custom={"bid": "b-unknown"})
    with pytest.raises(ReplyError, match="^ERR No such batch b-unknown$"):
        client.push(j)
    bid = new_batch(e)
    e.push(bid, queue="bq")
    assert e.commit(bid) == "OK"
    with pytest.raises(ReplyError, match=f"^ERR Batch {bid} is committed: BATCH OPEN it"):
        client.push(job(queue="bq", custom={"bid": bid}))
    # PUSHB: the refused ones are listed, the others stored.
    ok, bad = job(queue="bq", custom={"bid": "x"}), job(queue="bq", custom={"bid": bid})
    plain = job(queue="bq")
    errors = json.loads(client.call("PUSHB " + json.dumps([ok, bad, plain])))
    assert set(errors) == {ok["jid"], bad["jid"]}
    assert errors[ok["jid"]] == "No such batch x"
    assert llen_via(client, "bq") == 2  # the first batch job and the plain one
    assert e.status(bid)["total"] == 1
    with pytest.raises(ReplyError, match="^ERR custom.bid must be a string$"):
        client.push(job(custom={"bid": 7}))
    # An empty or null bid is no batch (a client that always sends the field): a plain job.
    for bid in ("", None):
        loose = job(queue="nobatch", custom={"bid": bid})
        assert client.push(loose) == "OK"
        assert client.fetch("nobatch")["jid"] == loose["jid"]
        assert client.ack(loose["jid"]) == "OK"


def test_pushb_counts_each_job_of_the_batch_once(client: Client) -> None:
    e = Ent(client)
    bid = new_batch(e)
    batch = [job(queue="bq", custom={"bid": bid}) for _ in range(5)]
    assert json.loads(client.call("PUSHB " + json.dumps(batch))) == {}
    client.push(batch[0])  # the same jid again (a client retrying its PUSH)
    s = e.status(bid)
    assert (s["total"], s["pending"]) == (5, 5)


# -- callbacks ---------------------------------------------------------------------------------

def test_complete_then_success_as_faktorys_own_test(srv: FaktoryServer, client: Client) -> None:
    """contribsys/faktory test/ent/batch_test.go's sequence: success is enqueued only once the
    complete callback succeeded; callbacks carry custom._bid."""
    e = Ent(client)
    bid = new_batch(e, description="two jobs")
    jobs = [e.push(bid, queue="bq") for _ in range(2)]
    assert e.commit(bid) == "OK"
    s = e.status(bid)
    assert (s["total"], s["pending"], s["complete_st"], s["success_st"]) == (2, 2, "", "")
    assert s["description"] == "two jobs"
    assert {j["jid"] for j in run_all(client, "bq")} == {j["jid"] for j in jobs}
    s = e.status(bid)
    assert (s["pending"], s["failed"], s["complete_st"], s["success_st"]) == (0, 0, "1", "")
    assert llen(srv, "cb") == 1
    cb = client.fetch("cb")
    assert cb["jobtype"] == "Complete" and cb["custom"] == {"_bid": bid}
    assert cb["enqueued_at"] > cb["created_at"]
    assert client.ack(cb["jid"]) == "OK"
    s = e.status(bid)
    assert (s["complete_st"], s["success_st"]) == ("2", "1")
    cb = client.fetch("cb")
    assert cb["jobtype"] == "Success" and cb["custom"]["_bid"] == bid
    assert client.ack(cb["jid"]) == "OK"
    s = e.status(bid)
    assert (s["complete_st"], s["success_st"]) == ("2", "2")
    assert llen(srv, "cb") == 0


def test_callbacks_wait_for_commit(srv: FaktoryServer, client: Client) -> None:
    e = Ent(client)
    bid = new_batch(e)
    e.push(bid, queue="bq")
    run_all(client, "bq")
    assert e.status(bid)["complete_st"] == "" and llen(srv, "cb") == 0
    e.commit(bid)
    assert e.status(bid)["complete_st"] == "1" and llen(srv, "cb") == 1
    # An empty batch completes and succeeds as it is committed.
    empty = new_batch(e, cbq="cb2")
    e.commit(empty)
    assert e.status(empty)["complete_st"] == "1"


def test_a_failed_job_completes_the_batch_and_success_waits_for_its_retry(
        srv: FaktoryServer, client: Client) -> None:
    e = Ent(client)
    bid = new_batch(e)
    good, bad = e.push(bid, queue="bq"), e.push(bid, queue="bq")
    e.commit(bid)
    for _ in range(2):
        j = client.fetch("bq")
        if j["jid"] == good["jid"]:
            client.ack(j["jid"])
        else:
            client.fail(j["jid"])
    s = e.status(bid)
    assert (s["pending"], s["failed"], s["complete_st"], s["success_st"]) == (1, 1, "1", "")
    assert client.ack(client.fetch("cb")["jid"]) == "OK"
    s = e.status(bid)
    assert (s["complete_st"], s["success_st"]) == ("2", "")  # one job has not succeeded
    assert llen(srv, "cb") == 0
    # Its retry fails again (still one failed job), then succeeds: success fires.
    requeue = {"cmd": "requeue", "target": "retries", "filter": {"jids": [bad["jid"]]}}
    client.call("MUTATE " + json.dumps(requeue, separators=(",", ":")))
    client.fail(client.fetch("bq")["jid"])
    assert e.status(bid)["failed"] == 1
    client.call("MUTATE " + json.dumps(requeue, separators=(",", ":")))
    client.ack(client.fetch("bq")["jid"])
    s = e.status(bid)
    assert (s["pending"], s["failed"], s["complete_st"], s["success_st"]) == (0, 0, "2", "1")
    assert client.fetch("cb")["jobtype"] == "Success"


def test_a_dead_job_completes_but_never_succeeds(srv: FaktoryServer, client: Client) -> None:
    e = Ent(client)
    bid = new_batch(e)
    e.push(bid, queue="bq", retry=0)
    e.commit(bid)
    client.fail(client.fetch("bq")["jid"])
    s = e.status(bid)
    assert (s["pending"], s["failed"], s["complete_st"]) == (1, 1, "1")
    client.ack(client.fetch("cb")["jid"])
    assert e.status(bid)["success_st"] == "" and llen(srv, "cb") == 0


def test_one_callback_only(srv: FaktoryServer, client: Client) -> None:
    """Without a complete callback the success callback fires once every job succeeded (the
    complete phase shows "2" at once); without a success callback, success_st goes to "2" when
    the complete callback succeeded and every job succeeded."""
    e = Ent(client)
    only_success = e.batch_new(success=job("S", queue="cb"))
    only_complete = e.batch_new(complete=job("C", queue="cb"))
    for bid in (only_success, only_complete):
        e.push(bid, queue="bq")
        e.commit(bid)
    run_all(client, "bq")
    s = e.status(only_success)
    assert (s["complete_st"], s["success_st"]) == ("2", "1")
    s = e.status(only_complete)
    assert (s["complete_st"], s["success_st"]) == ("1", "")
    assert sorted(j["jobtype"] for j in run_all(client, "cb")) == ["C", "S"]
    assert e.status(only_success)["success_st"] == "2"
    assert (e.status(only_complete)["complete_st"], e.status(only_complete)["success_st"]) == ("2", "2")


def test_callback_without_jid_and_with_its_own_custom(client: Client) -> None:
    """Ruby's and pyfaktory's callbacks carry no jid: one is made up."""
    e = Ent(client)
    cb = {"jobtype": "Cb", "args": [1], "queue": "cb", "custom": {"mine": 1},
          "at": "2099-01-01T00:00:00Z"}
    bid = e.batch_new(complete=cb)
    e.commit(bid)
    got = client.fetch("cb")
    assert got["custom"] == {"mine": 1, "_bid": bid} and len(got["jid"]) >= 8
    assert "at" not in got


def test_nested_batches_children_callbacks_fire_first(srv: FaktoryServer, client: Client) -> None:
    e = Ent(client)
    parent = new_batch(e, cbq="pcb")
    pjob = e.push(parent, queue="pq")
    child = new_batch(e, cbq="ccb", parent_bid=parent, description="child")
    assert e.status(child)["parent_bid"] == parent
    e.push(child, queue="cq")
    e.push(child, queue="cq")
    e.commit(child)
    e.commit(parent)
    s = e.status(parent)
    # As Faktory's: the counters are the parent's own jobs (its callbacks wait for the child).
    assert (s["total"], s["pending"]) == (1, 1)
    run_all(client, "pq")
    run_all(client, "cq")
    assert (llen(srv, "ccb"), llen(srv, "pcb")) == (1, 0)  # the child's complete only
    s = e.status(parent)
    assert (s["pending"], s["complete_st"]) == (0, "")  # its job ran; the child has not
    child_complete = client.fetch("ccb")
    assert child_complete["jobtype"] == "Complete"
    assert child_complete["custom"]["_bid"] == child
    # Its ACK ends the child's complete phase: the parent's complete fires, the child's
    # success too.
    client.ack(child_complete["jid"])
    assert e.status(child)["complete_st"] == "2" and e.status(parent)["complete_st"] == "1"
    assert [j["jobtype"] for j in srv_jobs(srv, "ccb")] == ["Success"]
    assert [j["jobtype"] for j in srv_jobs(srv, "pcb")] == ["Complete"]
    client.ack(client.fetch("pcb")["jid"])
    # The parent's success waits for the child's success callback.
    s = e.status(parent)
    assert (s["complete_st"], s["success_st"], s["pending"]) == ("2", "", 0)
    client.ack(client.fetch("ccb")["jid"])
    s = e.status(parent)
    assert (s["pending"], s["success_st"]) == (0, "1")
    assert client.fetch("pcb")["jobtype"] == "Success"
    assert pjob["custom"]["bid"] == parent


def srv_jobs(srv: FaktoryServer, queue: str) -> list[dict]:
    r = srv.redis()
    try:
        return [json.loads(m) for m in r.lrange(keys.queue(queue), 0, -1)]
    finally:
        r.close()


def test_three_levels_counters_and_order(srv: FaktoryServer, client: Client) -> None:
    """The Rust client's test_batches_can_be_nested against Faktory Enterprise: each batch's
    total counts its own jobs only. The grandchild's success callback succeeds before the
    child's success is enqueued, and the child's before the parent's."""
    e = Ent(client)
    parent = e.batch_new(success=job("ParentDone", queue="ncb"), description="Parent batch")
    e.push(parent, queue="nq")
    child = e.batch_new(success=job("ChildDone", queue="ncb"), parent_bid=parent)
    e.push(child, queue="nq")
    e.push(child, queue="nq")
    grandchild = e.batch_new(success=job("GrandchildDone", queue="ncb"), parent_bid=child)
    e.push(grandchild, queue="nq")
    for bid in (grandchild, child, parent):
        e.commit(bid)
    totals = [(e.status(b)["total"], e.status(b).get("parent_bid")) for b in (parent, child, grandchild)]
    assert totals == [(1, None), (2, parent), (1, child)]
    run_all(client, "nq")
    order = []
    while llen(srv, "ncb"):
        assert llen(srv, "ncb") == 1  # one callback at a time: each waits for the one below
        cb = client.fetch("ncb")
        order.append(cb["jobtype"])
        client.ack(cb["jid"])
    assert order == ["GrandchildDone", "ChildDone", "ParentDone"]
    assert [e.status(b)["success_st"] for b in (parent, child, grandchild)] == ["2", "2", "2"]


def test_reopened_nested_batch_after_its_callback_as_faktory(srv: FaktoryServer,
                                                             client: Client) -> None:
    """The Rust client's test_batch_can_be_reopened_add_extra_jobs_and_batches_added: an empty
    child committed enqueues its complete callback at once; re-opened, it takes jobs (its
    callback stays enqueued, not fired again)."""
    e = Ent(client)
    bid = e.batch_new(success=job("S", queue="ocb"))
    e.push(bid, queue="oq")
    e.commit(bid)
    assert e.open(bid) == bid
    nested = new_batch(e, cbq="ncb", parent_bid=bid)
    e.commit(nested)
    s = e.status(nested)
    assert (s["total"], s["parent_bid"], s["complete_st"]) == (0, bid, "1")
    assert e.open(nested) == nested
    e.push(nested, queue="nested")
    e.push(nested, queue="nested")
    e.commit(nested)
    s = e.status(nested)
    assert (s["complete_st"], s["pending"], s["total"]) == ("1", 2, 2)
    assert llen(srv, "ncb") == 1


def test_child_batches_need_an_open_parent(client: Client) -> None:
    e = Ent(client)
    parent = new_batch(e)
    e.commit(parent)
    with pytest.raises(ReplyError, match=f"^ERR Parent batch {parent} is committed"):
        new_batch(e, parent_bid=parent)
    assert e.open(parent) == parent
    child = new_batch(e, parent_bid=parent)
    assert e.status(parent)["total"] == 0 and e.status(child)["parent_bid"] == parent


def test_open_after_commit_and_after_callbacks_fired(srv: FaktoryServer, client: Client) -> None:
    """Faktory's own Ent test: OPEN works before and after COMMIT and after the callbacks
    fired; a re-opened batch takes jobs until committed again; callbacks fire only once."""
    e = Ent(client)
    bid = new_batch(e)
    e.push(bid, queue="bq")
    assert e.open(bid) == bid  # never committed: OPEN is harmless
    e.commit(bid)
    assert e.open(bid) == bid
    e.push(bid, queue="bq")
    e.commit(bid)
    assert e.status(bid)["total"] == 2
    run_all(client, "bq")
    run_all(client, "cb")
    run_all(client, "cb")
    s = e.status(bid)
    assert (s["complete_st"], s["success_st"]) == ("2", "2")
    assert e.open(bid) == bid
    e.push(bid, queue="bq")
    assert e.commit(bid) == "OK"
    run_all(client, "bq")
    s = e.status(bid)
    assert (s["total"], s["pending"], s["complete_st"], s["success_st"]) == (3, 0, "2", "2")
    assert llen(srv, "cb") == 0  # no second firing


def test_expiry_uncommitted_committed_finished(srv: FaktoryServer, client: Client) -> None:
    e = Ent(client)
    bid = new_batch(e)
    e.push(bid, queue="bq")
    r = srv.redis()
    try:
        assert 1700 < r.ttl(keys.batch(bid)) <= 1800
        assert 1700 < r.ttl(keys.batch_jobs(bid)) <= 1800
        e.commit(bid)
        retention = 30 * 86400  # the default --batch-retention
        assert retention - 10 < r.ttl(keys.batch(bid)) <= retention
        assert retention - 10 < r.ttl(keys.batch_jobs(bid)) <= retention
        e.open(bid)
        assert 1700 < r.ttl(keys.batch(bid)) <= 1800
        e.commit(bid)
        run_all(client, "bq")
        run_all(client, "cb")
        run_all(client, "cb")
        assert retention - 10 < r.ttl(keys.batch(bid)) <= retention
        assert not r.sismember(keys.BATCHES_OPEN, bid)
        # An expired uncommitted batch is unknown; its jobs are refused.
        gone = new_batch(e)
        r.delete(keys.batch(gone))
        with pytest.raises(ReplyError, match="^ERR No such batch"):
            e.status(gone)
    finally:
        r.close()


def test_pyfaktory_batches(srv: FaktoryServer, client: Client) -> None:
    """pyfaktory (PyPI) has BATCH NEW / OPEN / COMMIT / STATUS."""
    import pyfaktory

    pc = pyfaktory.Client(faktory_url=srv.url, role="producer", timeout=10)
    pc.connect()
    try:
        producer = pyfaktory.Producer(client=pc)
        reply = producer.batch_new(pyfaktory.Batch(
            parent_bid=None, description="from pyfaktory", complete=None,
            success=pyfaktory.TargetJob(jobtype="Done", args=[1], queue="cb")))
        bid = reply.strip().lstrip("+")
        assert bid.startswith("b-")
        for i in range(3):
            assert producer.push(pyfaktory.Job(jobtype="Work", args=[i], queue="bq",
                                               custom={"bid": bid}))
        assert producer.batch_commit(bid)
        status = json.loads(pc._batch_status(bid).split("\r\n")[1])
        assert (status["total"], status["description"]) == (3, "from pyfaktory")
        run_all(client, "bq")
        assert client.fetch("cb")["custom"]["_bid"] == bid
        assert producer.batch_open(bid)
    finally:
        pc.disconnect()


# -- exactly once, racing -----------------------------------------------------------------------

def race_round(e: Ent, workers: list[Client], cbq: str, commit_racing: bool,
               fail_every: int = 0) -> str:
    """A batch of len(workers) jobs; every worker holds one, then all ACK at once (every
    ``fail_every``-th FAILs instead; the COMMIT races them if ``commit_racing``). Returns the
    bid."""
    bid = new_batch(e, cbq=cbq)
    for _ in workers:
        e.push(bid, queue="race")
    if not commit_racing:
        e.commit(bid)
    held = [w.fetch("race") for w in workers]
    assert all(held)
    race_finish(workers, [j["jid"] for j in held], fail_every,
                (lambda: e.commit(bid)) if commit_racing else None)
    return bid


def race_finish(workers: list[Client], jids: list[str], fail_every: int = 0,
                also: Callable[[], object] | None = None) -> None:
    """Each worker ACKs (or FAILs: every ``fail_every``-th) its job, all at once (and ``also``
    runs at the same instant)."""
    go = threading.Barrier(len(workers) + (1 if also else 0))
    errors: list[BaseException] = []

    def finish(i: int, w: Client, jid: str) -> None:
        try:
            go.wait()
            failing = fail_every and i % fail_every == 0
            assert (w.fail(jid) if failing else w.ack(jid)) == "OK"
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=finish, args=(i, w, jid))
               for i, (w, jid) in enumerate(zip(workers, jids))]
    for t in threads:
        t.start()
    if also:
        go.wait()
        also()
    for t in threads:
        t.join(30)
    assert not errors


def workers_on(servers: list[FaktoryServer], per_process: int) -> list[Client]:
    out = []
    for s in servers:
        for _ in range(per_process):
            out += clients_on_distinct_processes(s, s.processes)
    return out


def assert_exactly_once(servers: list[FaktoryServer], rounds: int,
                        redis_of: Any = None) -> None:
    """``redis_of``: whose ``redis()`` to read (the first server's)."""
    redis_of = redis_of or servers[0]
    e = Ent(servers[0].client())
    workers = workers_on(servers, 3)
    assert len(workers) >= 6
    for n in range(rounds):
        bid = race_round(e, workers, "racecb", commit_racing=n % 2 == 1)
        s = e.status(bid)
        assert (s["pending"], s["complete_st"]) == (0, "1"), s
        queued = srv_jobs(redis_of, "racecb")
        assert [j["jobtype"] for j in queued] == ["Complete"], (n, queued)
        # The complete callback's ACK (from a worker of another node) fires success once.
        cb = workers[-1].fetch("racecb")
        assert workers[-1].ack(cb["jid"]) == "OK"
        assert [j["jobtype"] for j in srv_jobs(redis_of, "racecb")] == ["Success"]
        workers[0].ack(workers[0].fetch("racecb")["jid"])
        assert e.status(bid)["success_st"] == "2"
    r = redis_of.redis()
    try:
        assert int(r.hget(keys.BATCH_STATS, "callbacks")) >= 2 * rounds
    finally:
        r.close()


def test_exactly_once_with_several_processes(srv: FaktoryServer) -> None:
    servers = getattr(srv, "nodes", [srv])  # on a cluster: two nodes of one process each
    assert sum(len(s.server_process_pids()) for s in servers) == 2
    assert_exactly_once(servers, rounds=int(os.environ.get("RACE_ROUNDS", 15)), redis_of=srv)


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[FaktoryServer]]:
    """Two servers (two processes each) on one Redis: the first's child Redis, used by the
    second through REDIS_URL; the second keeps finished batches 1234 s."""
    a = FaktoryServer(str(tmp_path_factory.mktemp("node-a")), processes=2).start()
    try:
        sock = os.path.join(a.data_dir, "redis.sock")
        b = FaktoryServer(str(tmp_path_factory.mktemp("node-b")), processes=2,
                          env={"REDIS_URL": "unix://" + sock},
                          args=["--batch-retention", "1234"])
        b.start()
        try:
            yield [a, b]
        finally:
            b.stop()
    finally:
        a.stop()


def test_exactly_once_with_failures_on_two_nodes(two_nodes: list[FaktoryServer]) -> None:
    """Half the jobs FAIL while the others ACK, at once: complete fires once; then their
    retries' ACKs race: success fires once."""
    a, _ = two_nodes
    assert a.client().call("FLUSH") == "OK"
    e = Ent(a.client())
    workers = workers_on(two_nodes, 2)
    half = len(workers) // 2
    for n in range(int(os.environ.get("RACE_ROUNDS", 10))):
        bid = race_round(e, workers, "failcb", commit_racing=n % 2 == 1, fail_every=2)
        s = e.status(bid)
        assert (s["pending"], s["failed"], s["complete_st"]) == (half, half, "1"), s
        assert [j["jobtype"] for j in srv_jobs(a, "failcb")] == ["Complete"]
        workers[1].ack(workers[1].fetch("failcb")["jid"])
        assert e.status(bid)["success_st"] == "" and srv_jobs(a, "failcb") == []
        requeue = {"cmd": "requeue", "target": "retries", "filter": {}}
        assert e.c.call("MUTATE " + json.dumps(requeue, separators=(",", ":"))) == "OK"
        retried = workers[:half]
        race_finish(retried, [w.fetch("race")["jid"] for w in retried])
        s = e.status(bid)
        assert (s["pending"], s["failed"], s["success_st"]) == (0, 0, "1"), s
        assert [j["jobtype"] for j in srv_jobs(a, "failcb")] == ["Success"]
        workers[0].ack(workers[0].fetch("failcb")["jid"])


def test_retention_is_the_committing_servers_setting(two_nodes: list[FaktoryServer]) -> None:
    a, b = two_nodes
    r = a.redis()
    try:
        for node, retention in ((a, 30 * 86400), (b, 1234)):
            e = Ent(node.client())
            bid = e.batch_new(complete=job("C", queue="cb"))
            e.commit(bid)
            e.c.ack(e.c.fetch("cb")["jid"])
            assert e.status(bid)["complete_st"] == "2"
            assert retention - 30 < r.ttl(keys.batch(bid)) <= retention
    finally:
        r.close()


def test_exactly_once_with_two_nodes_on_one_redis(two_nodes: list[FaktoryServer]) -> None:
    a, _ = two_nodes
    assert a.client().call("FLUSH") == "OK"
    assert_exactly_once(two_nodes, rounds=int(os.environ.get("RACE_ROUNDS", 15)))


def test_a_push_into_a_batch_is_one_redis_call(srv: FaktoryServer, client: Client) -> None:
    """The batch check and count run inside ff_push's FCALL: no extra round trip."""
    e = Ent(client)
    bid = new_batch(e)
    r = srv.redis()
    sent: list[str] = []  # the commands clients sent (not those the function ran: "lua")
    with r.monitor() as m:
        e.push(bid, queue="bq")
        r2 = srv.redis()
        r2.echo("stop-monitor")
        r2.close()
        for cmd in m.listen():
            if "stop-monitor" in cmd["command"]:
                break
            if cmd["client_type"] != "lua" and not cmd["command"].startswith(
                    ("HELLO", "CLIENT", "CLUSTER")):  # (CLUSTER: the test's own, finding a node)
                sent.append(cmd["command"])
    r.close()
    # The push's commands: those naming its queue or its batch (the servers' background tasks
    # run beside it, more often with two nodes).
    sent = [c for c in sent if "bq" in c or bid in c]
    assert len(sent) == 1 and sent[0].startswith("FCALL ff_push "), sent
    assert e.status(bid)["total"] == 1


def test_batch_retention_setting(tmp_path: Path) -> None:
    def load(args: list[str], toml: str = "") -> config.Config:
        return load_config(str(tmp_path), *args, toml=toml)

    assert load([]).batch_retention == 30 * 86400
    assert load([], "[faktory_fast]\nbatch_retention = 3600\n").batch_retention == 3600
    assert load(["--batch-retention", "60"], "[faktory_fast]\nbatch_retention = 3600\n").batch_retention == 60
    with pytest.raises(config.ConfigError, match="invalid --batch-retention 0"):
        load(["--batch-retention", "0"])
