"""A Redis the user runs: Sentinel, failover, a demoted primary, waiting for replicas.

Real ``redis-server`` processes on loopback, started here: primaries, replicas and Sentinels
(``redis-server CONF --sentinel``), with faktory_fast servers pointed at them by ``REDIS_URL``.
"""
from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from faktory_fast import config
from faktory_fast.config import ConfigError
from faktory_fast.master.redis_child import MIN_REDIS, RedisChildError, binary_version, find_binary
from faktory_fast.storage.redis_url import parse_redis_url, redis_location
from faktory_fast.storage.store import SyncStore
from tests.support import (
    Client,
    FaktoryServer,
    ReplyError,
    fetch_all,
    free_port,
    job,
    load_config,
    stop_process,
    wait_for,
)


def _redis_binary() -> str | None:
    """redis-server (or valkey-server, as the server itself would pick: find_binary) >= 7."""
    try:
        binary = find_binary()
    except RedisChildError:
        return None
    return binary if binary_version(binary) >= MIN_REDIS else None


REDIS = _redis_binary()
pytestmark = pytest.mark.skipif(
    REDIS is None, reason="no redis-server >= 7 to run (Debian: apt-get install redis-server)")

SERVICE = "ffprimary"
LOST = "ERR lost the connection to Redis"


class RedisProcess:
    """One redis-server (or Sentinel) on a free loopback port, its files in ``base/name``."""

    def __init__(self, base: Path, name: str, lines: list[str], sentinel: bool = False) -> None:
        self.dir = base / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.lines = lines
        self.sentinel = sentinel
        self.proc: subprocess.Popen | None = None

    def start(self) -> RedisProcess:
        conf = self.dir / "redis.conf"
        if not conf.exists():  # a restart keeps what Sentinel wrote into it
            conf.write_text("\n".join([
                f"port {self.port}", "bind 127.0.0.1", f"dir {self.dir}",
                f"logfile {self.dir / 'redis.log'}", *self.lines]) + "\n")
        cmd = [REDIS, str(conf)] + (["--sentinel"] if self.sentinel else [])
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = self.client()
        wait_for(lambda: _pings(client))
        client.close()
        return self

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


NODE = ['save ""', "appendonly no", "repl-diskless-sync-delay 0"]


class Cluster:
    """A primary, a replica and three Sentinels watching them (quorum 2, quick to fail over)."""

    def __init__(self, base: Path) -> None:
        self.procs: list[RedisProcess] = []
        self.primary = self._add(RedisProcess(base, "primary", NODE))
        self.replica = self._add(RedisProcess(
            base, "replica", [*NODE, f"replicaof 127.0.0.1 {self.primary.port}"]))
        self.sentinels = [self._add(RedisProcess(base, f"sentinel{i}", [
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary.port} 2",
            f"sentinel down-after-milliseconds {SERVICE} 500",
            f"sentinel failover-timeout {SERVICE} 3000",
        ], sentinel=True)) for i in range(3)]

    def _add(self, proc: RedisProcess) -> RedisProcess:
        self.procs.append(proc)
        return proc

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}"

    def start(self) -> Cluster:
        for p in self.procs:
            p.start()
        # Ready to fail over: the replica in sync, each Sentinel knowing the other two and it.
        wait_for(lambda: _in_sync(self.primary), timeout=20)
        for s in self.sentinels:
            c = s.client()
            wait_for(lambda c=c: _sentinel_ready(c), timeout=20)
            c.close()
        return self

    def sentinels_agree_on(self, port: int) -> bool:
        """Every Sentinel names the primary at ``port``."""
        for s in self.sentinels:
            c = s.client()
            try:
                if int(c.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)[1]) != port:
                    return False
            finally:
                c.close()
        return True

    def primary_port(self) -> int:
        c = self.sentinels[0].client()
        try:
            return int(c.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)[1])
        finally:
            c.close()

    def stop(self) -> None:
        for p in self.procs:
            p.stop()


def _in_sync(node: RedisProcess) -> bool:
    """``node`` has one replica, and it has everything written to ``node`` so far."""
    c = node.client()
    try:
        info = c.info("replication")
    except redis.ConnectionError:
        return False
    finally:
        c.close()
    replica = info.get("slave0", {})
    return (info.get("connected_slaves") == 1 and replica.get("state") == "online"
            and replica.get("offset") == info["master_repl_offset"])


def _sentinel_ready(c: redis.Redis) -> bool:
    state = c.sentinel_master(SERVICE)
    return state["num-other-sentinels"] == 2 and state["num-slaves"] == 1


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path / "redis")
    try:
        yield c.start()
    finally:
        c.stop()


def _no_tracebacks(srv: FaktoryServer) -> None:
    assert not [line for line in srv.lines if "Traceback" in line or "Unexpected error" in line
                or "never retrieved" in line], "\n".join(srv.lines)


# -- configuration ----------------------------------------------------------------------------

def test_sentinel_url_forms() -> None:
    t = parse_redis_url("redis+sentinel://:pw%21@10.0.0.1:26379,[::1]:26380,h3/mymaster/2"
                        "?sentinel_password=sp")
    assert t["sentinels"] == [("10.0.0.1", 26379), ("::1", 26380), ("h3", 26379)]
    assert (t["service"], t["db"], t["password"], t["sentinel_password"]) == ("mymaster", 2, "pw!", "sp")
    t = parse_redis_url("redis+sentinel://127.0.0.1:26379/mymaster")
    assert (t["db"], t["password"], t["sentinel_password"]) == (0, None, None)
    # The web UI's debug page shows where Redis is, without the password.
    assert redis_location("redis+sentinel://:pw@h1:1,h2:2/m/3") == "redis+sentinel://h1:1,h2:2/m/3"
    for bad, why in (("redis+sentinel://127.0.0.1:26379", "primary's name is missing"),
                     ("redis+sentinel://127.0.0.1:notaport/m", "not a Sentinel's host:port"),
                     ("redis+sentinel://127.0.0.1:26379/m/x", "database must be a number"),
                     ("sentinel://h:1/m", "unsupported Redis URL")):
        with pytest.raises(ValueError, match=why):
            parse_redis_url(bad)


def test_redis_url_and_wait_settings_from_flags_env_and_toml(tmp_path: Path) -> None:
    def load(args: list[str], toml: str = "", **env: str) -> config.Config:
        return load_config(str(tmp_path), *args, toml=toml, **env)

    url = "redis+sentinel://127.0.0.1:26379/m"
    cfg = load([], f'[faktory_fast]\nredis_url = "{url}"\nredis_wait_replicas = 1\n'
                   "redis_wait_timeout = 250\n")
    assert (cfg.redis_url, cfg.redis_wait_replicas, cfg.redis_wait_timeout) == (url, 1, 250)
    cfg = load(["--redis-wait-replicas", "2"], '[faktory_fast]\nredis_url = "redis://x:1"\n',
               REDIS_URL=url)
    assert (cfg.redis_url, cfg.redis_wait_replicas, cfg.redis_wait_timeout) == (url, 2, 1000)
    assert (cfg.redis_hold, load(["--redis-hold", "0"], REDIS_URL=url).redis_hold) == (5000, 0)
    assert load([]).redis_wait_replicas == 0
    with pytest.raises(ConfigError, match="needs REDIS_URL"):
        load(["--redis-wait-replicas", "1"])
    with pytest.raises(ConfigError, match="invalid --redis-wait-timeout"):
        load(["--redis-wait-timeout", "0"], REDIS_URL=url)
    with pytest.raises(ConfigError, match="primary's name is missing"):
        load([], REDIS_URL="redis+sentinel://127.0.0.1:26379")


# -- failover ------------------------------------------------------------------------------------

class Pusher(threading.Thread):
    """Pushes its jobs in order through one connection; a job refused with -ERR is pushed
    again (after a short pause) until acknowledged with +OK."""

    def __init__(self, srv: FaktoryServer, jobs: list[dict], deadline: float) -> None:
        super().__init__(daemon=True)
        self.client = srv.client(timeout=15)
        self.jobs = jobs
        self.deadline = deadline
        self.acked: list[str] = []
        self.errors: dict[str, int] = {}
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            for j in self.jobs:
                line = "PUSH " + json.dumps(j)
                while True:
                    try:
                        reply = self.client.call(line)
                    except ReplyError as exc:
                        self.errors[str(exc)] = self.errors.get(str(exc), 0) + 1
                        if time.monotonic() > self.deadline:
                            raise AssertionError("pushes still refused at the deadline") from None
                        time.sleep(0.02)
                        continue
                    assert reply == "OK"
                    self.acked.append(j["jid"])
                    break
        except BaseException as exc:  # reported by the test
            self.failure = exc


@pytest.mark.parametrize("wait_replicas", [1, 0], ids=["wait-for-replica", "no-wait"])
def test_failover_under_load_loses_no_acknowledged_push(
        cluster: Cluster, servers: list[FaktoryServer], tmp_path: Path, wait_replicas: int) -> None:
    """Two servers on one Sentinel-managed Redis; 10,000 jobs pushed through both while the
    primary is SIGKILLed. Sentinel promotes the replica, every process finds it, clients keep
    their connections (commands in flight get -ERR and are retried; those made meanwhile wait
    for the new primary, up to the server's hold). With
    --redis-wait-replicas 1 every acknowledged job can be fetched afterwards; without it,
    the count of acknowledged jobs lost is reported."""
    args = ["--redis-wait-replicas", str(wait_replicas), "--redis-wait-timeout", "500"]
    for i in range(2):
        servers.append(FaktoryServer(str(tmp_path / f"ff{i}"), processes=1, args=args,
                                     env={"REDIS_URL": cluster.url}).start())
    old_port, new_port = cluster.primary.port, cluster.replica.port
    assert cluster.primary_port() == old_port
    web_store = SyncStore.connect(cluster.url)  # the web UI's way in
    assert web_store.info()["queues"] == {}

    jobs = [job(queue="failover", args=[i]) for i in range(10_000)]
    deadline = time.monotonic() + 45
    pushers = [Pusher(servers[i % 2], jobs[i::4], deadline) for i in range(4)]
    for p in pushers:
        p.start()
    def acknowledged() -> int:
        return sum(len(p.acked) for p in pushers)

    wait_for(lambda: acknowledged() >= 3000, timeout=30)
    # The replica falls behind (its link broken, and stopped so that it does not reconnect
    # at once), then the primary dies: what it acknowledged meanwhile is on no replica, unless
    # each push waited for the replica (then none is acknowledged meanwhile: 0.3 s of that).
    cluster.replica.proc.send_signal(signal.SIGSTOP)
    primary = cluster.primary.client()
    assert primary.client_kill_filter(_type="replica") == 1
    primary.close()
    stopped = time.monotonic()
    wait_for(lambda: acknowledged() >= 4000 or time.monotonic() - stopped > 0.3, interval=0.005)
    cluster.primary.kill()
    cluster.replica.proc.send_signal(signal.SIGCONT)
    killed_at = acknowledged()
    wait_for(lambda: cluster.primary_port() == new_port, timeout=20, interval=0.1)
    # The killed primary comes back (as systemd would restart it) and Sentinel makes it a
    # replica of the new one: with --redis-wait-replicas 1 pushes are refused until then.
    cluster.primary.start()
    for p in pushers:
        p.join(60)
    for p in pushers:
        assert p.failure is None, repr(p.failure)
    acked = {jid for p in pushers for jid in p.acked}
    assert len(acked) == 10_000

    # Fetched through both servers: each sees the jobs the other stored.
    fetched = set(fetch_all(servers, "failover"))
    lost = acked - fetched
    errors: dict[str, int] = {}
    for p in pushers:
        for text, n in p.errors.items():
            errors[text] = errors.get(text, 0) + n
    print(f"\n[{'wait' if wait_replicas else 'no wait'}] primary killed after {killed_at} "
          f"acknowledged pushes; acknowledged {len(acked)}, fetchable {len(fetched)}, "
          f"acknowledged but lost {len(lost)}; refused pushes: {errors}")
    if wait_replicas:
        assert not lost
        assert any("not confirmed by 1 Redis replica within 500 ms" in t for t in errors)
    else:  # the case the option is for does happen here: pushes acknowledged, then lost
        assert lost
    assert len(fetched) >= 10_000 - len(lost)
    # Clients got -ERR (a command in flight when the connection broke, or one kept waiting
    # longer than the server's hold; or the write unconfirmed) and nothing else: no connection
    # was dropped, no traceback logged.
    assert all(t == LOST or "not confirmed by 1 Redis replica" in t for t in errors)
    # The restarted primary (empty: no persistence here) is a primary until a Sentinel demotes
    # it, and a Sentinel that has not caught up still names it, so a client may be sent there
    # meanwhile (the web UI then loads the library into it: SyncStore.run). Ask once every
    # Sentinel names the new primary and the old one is its replica.
    wait_for(lambda: cluster.sentinels_agree_on(new_port)
             and cluster.primary.client().role()[0] == b"slave", timeout=20, interval=0.1)
    assert web_store.info()["queues"] == {"failover": 0}  # the web UI found the new primary
    for srv in servers:
        lines = "\n".join(srv.lines)
        # Each process: one line for the loss, one for the reconnection (to the new primary).
        assert lines.count("Lost the connection to Redis") == 2, lines
        assert lines.count(f"Reconnected to Redis at 127.0.0.1:{new_port}") == 2, lines
        _no_tracebacks(srv)
        assert srv.proc.poll() is None


def test_a_primary_demoted_to_replica_is_left_and_its_successor_used(
        tmp_path: Path, servers: list[FaktoryServer]) -> None:
    """A plain redis:// URL whose Redis becomes a replica under us (roles swapped by hand, as a
    failover without Sentinel's client kill leaves it): writes get -READONLY, which counts as a
    lost connection; the server reconnects once that address is a primary again, and loads the
    function library if the Redis there lacks it."""
    a = RedisProcess(tmp_path, "a", NODE).start()
    b = RedisProcess(tmp_path, "b", [*NODE, f"replicaof 127.0.0.1 {a.port}"]).start()
    try:
        # No hold: a command made while the server stays away fails at once.
        srv = FaktoryServer(str(tmp_path / "ff"), processes=1, args=["--redis-hold", "0"],
                            env={"REDIS_URL": f"redis://127.0.0.1:{a.port}"}).start()
        servers.append(srv)
        c = srv.client()
        first = job(queue="demoted")
        assert c.push(first) == "OK"
        ra, rb = a.client(), b.client()
        wait_for(lambda: _in_sync(a))
        rb.replicaof("NO", "ONE")
        ra.replicaof("127.0.0.1", b.port)
        with pytest.raises(ReplyError, match=f"^{LOST}$"):
            c.push(job(queue="demoted"))
        # The master too (its scheduler writes 4 times a second): two lines, one per process.
        wait_for(lambda: sum("is now a replica (READONLY)" in line for line in srv.lines) == 2)
        # While the address is a replica the server stays away (ROLE) and says so per command.
        with pytest.raises(ReplyError, match=f"^{LOST}$"):
            c.push(job(queue="demoted"))
        # Give the primary's data, without our library, to a, then make it the primary again.
        rb.function_delete("faktory_fast")
        wait_for(lambda: not ra.function_list())
        ra.replicaof("NO", "ONE")
        wait_for(lambda: _push_ok(c, job(queue="demoted")), timeout=15, interval=0.05)
        assert c.fetch("demoted")["jid"] == first["jid"]  # the data came along
        assert ra.function_list()
        reconnected = f"Reconnected to Redis at 127.0.0.1:{a.port}"
        # The server process and the master each reconnect on their own retry clock: the push
        # above only shows the first; wait for the other's line before counting.
        wait_for(lambda: sum(reconnected in line for line in srv.lines) >= 2, timeout=15)
        lines = "\n".join(srv.lines)
        assert "had no faktory_fast function library: loaded it" in lines
        assert lines.count(reconnected) == 2, lines
        _no_tracebacks(srv)
        ra.close()
        rb.close()
    finally:
        a.stop()
        b.stop()


def _push_ok(c: Client, payload: dict) -> bool:
    try:
        return c.push(payload) == "OK"
    except ReplyError as exc:
        assert str(exc) == LOST
        return False


def test_wait_for_replicas_refuses_a_push_no_replica_confirms(
        tmp_path: Path, servers: list[FaktoryServer]) -> None:
    """--redis-wait-replicas 1 on a Redis without a replica: PUSH and PUSHB answer -ERR after
    --redis-wait-timeout; once a replica is attached they are acknowledged. The same for a
    primary set to ``min-replicas-to-write 1`` without the option (the README's other way)."""
    a = RedisProcess(tmp_path, "a", NODE).start()
    b = RedisProcess(tmp_path, "b", [*NODE, f"replicaof 127.0.0.1 {a.port}"])
    try:
        url = f"redis://127.0.0.1:{a.port}"
        srv = FaktoryServer(str(tmp_path / "ff"), processes=1, env={"REDIS_URL": url},
                            args=["--redis-wait-replicas", "1", "--redis-wait-timeout", "200"]
                            ).start()
        servers.append(srv)
        c = srv.client()
        t0 = time.monotonic()
        refused = ("ERR the write was not confirmed by 1 Redis replica within 200 ms "
                   "(--redis-wait-replicas); it may or may not be stored")
        with pytest.raises(ReplyError) as exc:
            c.push(job(queue="w"))
        assert str(exc.value) == refused
        assert time.monotonic() - t0 >= 0.19
        with pytest.raises(ReplyError) as exc:
            c.call("PUSHB " + json.dumps([job(queue="w"), job(queue="w")]))
        assert str(exc.value) == refused
        assert c.info()["faktory"]["queues"]["w"] == 3  # stored, just not confirmed
        b.start()
        wait_for(lambda: _in_sync(a))
        t0 = time.monotonic()
        for _ in range(20):  # each is confirmed as soon as the replica has it: no waiting
            assert c.push(job(queue="w")) == "OK"
        assert c.call("PUSHB " + json.dumps([job(queue="w")])) == "{}"
        assert time.monotonic() - t0 < 5
        srv.stop()

        srv2 = FaktoryServer(str(tmp_path / "ff2"), processes=1, env={"REDIS_URL": url}).start()
        servers.append(srv2)
        b.stop()
        ra = a.client()
        ra.config_set("min-replicas-to-write", 1)
        wait_for(lambda: ra.info("replication")["connected_slaves"] == 0)
        ra.close()
        with pytest.raises(ReplyError, match="^ERR Redis refused the write: NOREPLICAS"):
            srv2.client().push(job(queue="w"))
        time.sleep(0.6)  # a few rounds of the master's scheduler, whose writes are refused too
        for s in (srv, srv2):
            _no_tracebacks(s)
    finally:
        a.stop()
        b.stop()
