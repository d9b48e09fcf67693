"""A Redis of the user's reached over TLS: ``rediss://`` (one Redis) and ``rediss+cluster://``
(a Redis Cluster whose nodes, bus and replication all speak TLS only).

The certificates are made here with ``openssl``: a CA, and a server certificate for
``127.0.0.1`` (an IP subjectAltName) that it signs. The servers trust the CA through
``SSL_CERT_FILE`` (the default SSL context's CA file), as a user whose Redis has a private CA
would run them; without it, the certificate cannot be verified.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import redis

from faktory_fast.storage import keys
from tests.cluster import TlsFiles, running_cluster, slot_of, tls_skip_reason
from tests.integration.test_deploy import OPENSSL, need
from tests.integration.test_sentinel import NODE, RedisProcess, _no_tracebacks
from tests.support import FaktoryServer, get, job, wait_for


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A CA and a certificate for 127.0.0.1 it signed; the module is skipped if the Redis
    binary cannot serve TLS."""
    openssl = need(OPENSSL, "openssl")
    d = tmp_path_factory.mktemp("tls")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True)

    ca, ca_key = str(d / "ca.pem"), str(d / "ca.key")
    cert, key, csr, ext = (str(d / n) for n in ("server.pem", "server.key", "server.csr",
                                                 "server.ext"))
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout", ca_key,
        "-out", ca, "-subj", "/CN=faktory_fast test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
        "-subj", "/CN=127.0.0.1")
    # Key identifiers: Python 3.13's default context (VERIFY_X509_STRICT) requires them.
    Path(ext).write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                         "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n")
    run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
        "-days", "2", "-out", cert, "-extfile", ext)
    files = TlsFiles(cert=cert, key=key, ca=ca)
    reason = tls_skip_reason(files, tmp_path_factory.mktemp("tls-check"))
    if reason:
        pytest.skip(reason)
    return files


class TlsRedis(RedisProcess):
    """One plain (non-cluster) redis-server serving TLS only."""

    def __init__(self, base: Path, name: str, tls: TlsFiles) -> None:
        super().__init__(base, name, NODE)
        self.tls = tls
        self.lines = [*NODE, *tls.conf(self.port)]  # its "port 0" overrides "port P" before it

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5, **self.tls.client_kwargs())


def stats(srv: FaktoryServer) -> dict:
    status, body = get(f"http://127.0.0.1:{srv.web_port}/stats")
    assert status == 200, body
    return json.loads(body)


def shows(srv: FaktoryServer, queues: dict[str, int]) -> bool:
    try:
        return stats(srv)["faktory"]["queues"] == queues
    except (AssertionError, OSError):
        return False


def test_rediss_single(tls: TlsFiles, tmp_path: Path, servers: list[FaktoryServer],
                       monkeypatch: pytest.MonkeyPatch) -> None:
    """``rediss://`` to a TLS-only Redis: push, fetch, ack and /stats with the CA trusted
    (SSL_CERT_FILE); without it, the certificate is refused."""
    rp = TlsRedis(tmp_path, "redis", tls).start()
    try:
        url = f"rediss://127.0.0.1:{rp.port}/0"
        srv = FaktoryServer(str(tmp_path / "ff"), processes=1, web=True,
                            env={"REDIS_URL": url, "SSL_CERT_FILE": tls.ca})
        servers.append(srv.start())
        c = srv.client()
        assert c.push(job(queue="tls", args=[1])) == "OK"
        wait_for(lambda: shows(srv, {"tls": 1}), timeout=15, interval=0.1)
        with rp.client() as r:  # the job is in the TLS Redis (its key untagged: not a cluster)
            assert r.llen(keys.queue("tls")) == 1
        fetched = c.fetch("tls")
        assert fetched is not None and fetched["args"] == [1]
        assert c.ack(fetched["jid"]) == "OK"
        with rp.client() as r:
            assert r.llen(keys.queue("tls")) == 0
        wait_for(lambda: shows(srv, {"tls": 0}) or shows(srv, {}), timeout=15, interval=0.1)
        _no_tracebacks(srv)

        # The same Redis, the CA not trusted: every handshake fails verification. The server
        # says so at once (a warning: waiting will not mend it), keeps trying for
        # REDIS_START_WAIT (30 s; too long to wait here), then logs "E ... No Redis at
        # rediss://... after 30 s: [SSL: CERTIFICATE_VERIFY_FAILED] ..." and exits 1.
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        monkeypatch.delenv("SSL_CERT_DIR", raising=False)
        bare = FaktoryServer(str(tmp_path / "bare"), processes=1, env={"REDIS_URL": url})
        servers.append(bare)
        with pytest.raises(RuntimeError, match="server did not start") as info:
            bare.start(timeout=2)
        failures = [line for line in str(info.value).splitlines()
                    if f"Redis at 127.0.0.1:{rp.port}: [SSL: CERTIFICATE_VERIFY_FAILED]" in line]
        assert len(failures) == 1 and failures[0].startswith("W "), str(info.value)
        assert not any("Listening on" in line for line in bare.lines)
    finally:
        rp.stop()


def test_rediss_cluster(tls: TlsFiles, tmp_path: Path, servers: list[FaktoryServer]) -> None:
    """``rediss+cluster://`` to a TLS-only cluster (3 primaries, 3 replicas): a job pushed
    through one node is fetched and acknowledged through the other, /stats shows the queue,
    and the keys carry the ``{ff}`` tag."""
    with running_cluster(tmp_path / "cluster", tls=tls) as cluster:
        assert cluster.url.startswith("rediss+cluster://")
        env = {"REDIS_URL": cluster.url, "SSL_CERT_FILE": tls.ca}
        a, b = (FaktoryServer(str(tmp_path / name), processes=1, env=env, web=True)
                for name in ("a", "b"))
        servers.extend((a, b))
        a.start()
        b.start()
        ca, cb = a.client(), b.client()
        for i in range(3):
            assert ca.push(job(queue="tlsc", args=[i])) == "OK"
        wait_for(lambda: shows(b, {"tlsc": 3}), timeout=15, interval=0.1)
        primary = cluster.primary_for_slot(slot_of(keys.CLUSTER_TAG))
        with primary.client() as r:
            assert r.llen(keys.CLUSTER_TAG + keys.queue("tlsc")) == 3
            assert not r.exists(keys.queue("tlsc"))
            names = [k.decode() for k in r.scan_iter(count=1000)]
            assert names and all(k.startswith(keys.CLUSTER_TAG) for k in names), names
        for i in range(3):
            fetched = cb.fetch("tlsc")
            assert fetched is not None and fetched["args"] == [i]
            assert cb.ack(fetched["jid"]) == "OK"
        assert cb.fetch("tlsc") is None
        with primary.client() as r:
            assert r.llen(keys.CLUSTER_TAG + keys.queue("tlsc")) == 0
        wait_for(lambda: shows(a, {"tlsc": 0}) or shows(a, {}), timeout=15, interval=0.1)
        for srv in (a, b):
            _no_tracebacks(srv)
