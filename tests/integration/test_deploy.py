"""Deployment: native TLS, behind haproxy and stunnel, the PROXY protocol, health checks.

Everything runs for real on loopback: the server with its child Redis, Debian's ``haproxy`` and
``stunnel4`` started by the tests with the configurations docs/deploy.md shows, certificates
made by ``openssl``, and the client libraries users run (``pyfaktory`` with ``tcp+tls://``, the
npm ``faktory-worker`` with ``tlsOptions``). Python's ``ssl`` checks the raw wire. A test skips
only when one of those programs is missing (``make test`` installs them).
"""
from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import time
import uuid
import warnings
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pyfaktory
import pytest
from pyfaktory.util.enums import State

from tests.integration.test_compat_node import NODE_DIR, NodeWorker, _node_ready, start_node_worker
from tests.integration.test_compat_python import counter, pyfaktory_consumer, pyfaktory_producer
from tests.support import Client, FaktoryServer, free_ports, pwdhash, stop_process, wait_for

# pyfaktory's tcp+tls builds its context with ssl.PROTOCOL_TLS (no verification), deprecated.
pytestmark = pytest.mark.filterwarnings("ignore:ssl.PROTOCOL_TLS is deprecated:DeprecationWarning")

PASSWORD = "dep-l0y"
CLIENT_ADDR = "127.0.0.77"  # where the test's clients connect from (Linux routes all of 127/8)
PROXY_ADDR = "127.0.0.2"  # where haproxy connects to the server from (its "source")


def _tool(name: str, *paths: str) -> str | None:
    found = shutil.which(name)
    return found or next((p for p in paths if os.access(p, os.X_OK)), None)


HAPROXY = _tool("haproxy", "/usr/sbin/haproxy")
STUNNEL = _tool("stunnel4", "/usr/bin/stunnel4") or _tool("stunnel", "/usr/bin/stunnel")
OPENSSL = _tool("openssl", "/usr/bin/openssl")


def need(path: str | None, package: str) -> str:
    if path is None:
        pytest.skip(f"{package} is not installed (make test installs Debian's {package})")
    return path


def need_node() -> None:
    reason = _node_ready()
    if reason:
        pytest.skip(reason)


# ---------------------------------------------------------------------------------------------
# certificates, contexts, servers


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A self-signed certificate for localhost and 127.0.0.1: cert, key, and both in one file
    (haproxy's ``crt``)."""
    openssl = need(OPENSSL, "openssl")
    d = tmp_path_factory.mktemp("certs")
    cert, key, both = str(d / "public.cert.pem"), str(d / "private.key.pem"), str(d / "both.pem")
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-keyout", key, "-out", cert, "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    with open(both, "w") as out:
        for path in (cert, key):
            with open(path) as fh:
                out.write(fh.read())
    return {"cert": cert, "key": key, "both": both}


def verifying(certs: dict[str, str], **versions: ssl.TLSVersion) -> ssl.SSLContext:
    """A client context that trusts only the test's certificate (and checks the host name)."""
    ctx = ssl.create_default_context(cafile=certs["cert"])
    for attr, version in versions.items():
        setattr(ctx, attr, version)
    return ctx


def start_server(tmp_path_factory: pytest.TempPathFactory, name: str, tls: dict | None = None,
                 **kw: Any) -> FaktoryServer:
    data = str(tmp_path_factory.mktemp(name))
    conf = os.path.join(data, "conf")
    os.makedirs(conf)
    if tls is not None:  # Faktory's TLS files, in the config directory
        shutil.copy(tls["cert"], os.path.join(conf, "public.cert.pem"))
        shutil.copy(tls["key"], os.path.join(conf, "private.key.pem"))
    kw.setdefault("processes", 1)
    return FaktoryServer(data, password=PASSWORD, web=True, **kw).start()


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory, certs: dict) -> Iterator[FaktoryServer]:
    s = start_server(tmp_path_factory, "tls", tls=certs)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory: pytest.TempPathFactory, certs: dict) -> Iterator[FaktoryServer]:
    """Behind the proxies: plain TCP, two server processes."""
    s = start_server(tmp_path_factory, "plain", processes=2)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def proxied_server(tmp_path_factory: pytest.TempPathFactory, certs: dict) -> Iterator[FaktoryServer]:
    """--proxy-protocol with the default --proxy-from (loopback); a short --line-timeout, so a
    test can make the server log a line about a client."""
    s = start_server(tmp_path_factory, "proxied", args=["--proxy-protocol", "--line-timeout", "1"])
    yield s
    s.stop()


def flush(server: FaktoryServer, tls: ssl.SSLContext | None = None) -> None:
    c = connect(server, tls=tls)
    assert c.call("FLUSH") == "OK"
    c.close()


def connect(server: FaktoryServer, port: int | None = None, **kw: Any) -> Client:
    """A raw client of ``server`` (on ``port``: a proxy's), closed when the server stops."""
    kw.setdefault("password", server.password)
    c = Client.__new__(Client)
    server.clients.append(c)
    c.__init__("127.0.0.1", port or server.port, **kw)
    return c


def log_lines(server: FaktoryServer, since: int = 0) -> list[str]:
    return server.lines[since:]


def problems(lines: list[str]) -> list[str]:
    """Warnings, errors and tracebacks among the server's output lines."""
    return [ln for ln in lines if ln[:2] in ("W ", "E ", "F ") or "Traceback" in ln
            or "[ERROR]" in ln or "[WARNING]" in ln or "Exception" in ln]


# ---------------------------------------------------------------------------------------------
# the web UI, as a browser session does it


class WebSession:
    """Basic auth, the CSRF cookie and token, same-origin POSTs: over http or https."""

    def __init__(self, server: FaktoryServer, tls: ssl.SSLContext | None = None) -> None:
        self.server, self.tls = server, tls
        self.cookie = ""
        self.auth = "Basic " + __import__("base64").b64encode(f"u:{PASSWORD}".encode()).decode()

    def request(self, method: str, path: str, body: str | None = None,
                headers: dict[str, str] | None = None, auth: bool = True) -> tuple[int, dict, str]:
        if self.tls is not None:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                "localhost", self.server.web_port, context=self.tls, timeout=10)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.server.web_port, timeout=10)
        h = {**({"Authorization": self.auth} if auth else {}), **(headers or {})}
        if self.cookie:
            h["Cookie"] = self.cookie
        try:
            conn.request(method, path, body=body, headers=h)
            resp = conn.getresponse()
            text = resp.read().decode()
            for name, value in resp.getheaders():
                if name.lower() == "set-cookie" and value.startswith("faktory_csrf="):
                    self.cookie = value.split(";", 1)[0]
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, text
        finally:
            conn.close()

    def signal(self, wid: str, signal: str) -> None:
        """The Busy page's Quiet / Terminate button."""
        status, _, page = self.request("GET", "/busy")
        assert status == 200, page
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        status, headers, page = self.request(
            "POST", "/busy", urlencode({"wid": wid, "signal": signal, "csrf_token": token}),
            {"Content-Type": "application/x-www-form-urlencoded", "Sec-Fetch-Site": "same-origin"})
        assert status == 302 and headers["location"].endswith("/busy"), (status, page)


# ---------------------------------------------------------------------------------------------
# proxies


class Proxy:
    """A haproxy or stunnel4 process started by a test, stopped by ``stop()``."""

    def __init__(self, argv: list[str], port: int, cwd: str) -> None:
        self.port = port
        self.out = open(os.path.join(cwd, "proxy.log"), "w+")
        self.proc = subprocess.Popen(argv, stdout=self.out, stderr=subprocess.STDOUT, cwd=cwd)
        wait_for(self._listening, timeout=10)

    def _listening(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.proc.args[0]} exited:\n{self.output()}")
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def output(self) -> str:
        self.out.flush()
        self.out.seek(0)
        return self.out.read()

    def stop(self) -> None:
        stop_process(self.proc)
        self.out.close()


def haproxy_config(sock: str, listen_port: int, server_port: int, bind: str = "",
                   server: str = "", web_port: int = 0, web_listen: int = 0) -> str:
    """The configuration docs/deploy.md shows, on test ports."""
    text = f"""global
    stats socket {sock} mode 600 level admin

defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h

frontend faktory
    bind 127.0.0.1:{listen_port} {bind}
    default_backend faktory

backend faktory
    server faktory1 127.0.0.1:{server_port} source {PROXY_ADDR} {server}
"""
    if web_port:
        text += f"""
frontend faktory_web
    bind 127.0.0.1:{web_listen}
    default_backend faktory_web

backend faktory_web
    server web1 127.0.0.1:{web_port} check inter 50 rise 10 fall 1
"""
    return text


@contextlib.contextmanager
def haproxy(tmp_path: Any, server_port: int, bind: str = "", server: str = "",
            web_port: int = 0) -> Iterator[Proxy]:
    exe = need(HAPROXY, "haproxy")
    port, web_listen = free_ports(2)
    sock = str(tmp_path / "haproxy.sock")
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(haproxy_config(sock, port, server_port, bind, server, web_port, web_listen))
    p = Proxy([exe, "-db", "-f", str(cfg)], port, str(tmp_path))
    p.stats_socket = sock  # type: ignore[attr-defined]
    # haproxy may take its frontend's connections before it has renamed its stats socket into
    # place (seen under load): the tests that read the socket start once it is there.
    wait_for(lambda: os.path.exists(sock), timeout=10)
    try:
        yield p
    finally:
        p.stop()


@contextlib.contextmanager
def stunnel(tmp_path: Any, server_port: int, certs: dict, proxy_header: bool = False) -> Iterator[Proxy]:
    exe = need(STUNNEL, "stunnel4")
    (port,) = free_ports(1)
    cfg = tmp_path / "stunnel.conf"
    cfg.write_text(f"""foreground = yes
pid =
debug = warning

[faktory]
accept = 127.0.0.1:{port}
connect = 127.0.0.1:{server_port}
cert = {certs['cert']}
key = {certs['key']}
{"protocol = proxy" if proxy_header else ""}
""")
    p = Proxy([exe, str(cfg)], port, str(tmp_path))
    try:
        yield p
    finally:
        p.stop()


def haproxy_server_state(proxy: Proxy, backend: str, server: str) -> dict[str, str]:
    """One server's row of haproxy's ``show stat`` (its health-check status)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(proxy.stats_socket)  # type: ignore[attr-defined]
        s.sendall(b"show stat\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    lines = data.decode().splitlines()
    header = lines[0].lstrip("# ").split(",")
    for line in lines[1:]:
        row = dict(zip(header, line.split(",")))
        if row.get("pxname") == backend and row.get("svname") == server:
            return row
    raise AssertionError(f"{backend}/{server} not in haproxy's stats:\n{data.decode()}")


# ---------------------------------------------------------------------------------------------
# client libraries


def node_client(url: str, tls: dict | None, *ops: dict) -> list[dict]:
    """tests/node/client.js (npm faktory-worker's Client); each op must succeed."""
    cfg: dict[str, Any] = {"url": url, "ops": list(ops)}
    if tls is not None:
        cfg["tlsOptions"] = tls
    done = subprocess.run(["node", "client.js", json.dumps(cfg)], cwd=NODE_DIR,
                          capture_output=True, text=True, timeout=30)
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(results) == len(ops) and all(r["ok"] for r in results), done.stdout + done.stderr
    return results


def node_tls(certs: dict) -> dict:
    """faktory-worker's tlsOptions: verify the server against the test's certificate."""
    with open(certs["cert"]) as fh:
        return {"ca": fh.read(), "servername": "localhost"}


def tls_url(port: int) -> str:
    return f"tcp+tls://:{PASSWORD}@localhost:{port}"


def through_libraries(server: FaktoryServer, url_port: int, certs: dict,
                      node_workers: list[NodeWorker], web: WebSession) -> None:
    """push, fetch, ack and BEAT by both libraries over TLS to ``url_port``, then quiet and
    terminate from the web UI's Busy page."""
    flush(server)
    # pyfaktory producer -> npm worker
    wid = uuid.uuid4().hex[:16]
    w = start_node_worker(node_workers, f"tcp://:{PASSWORD}@127.0.0.1:{url_port}",
                          tlsOptions=node_tls(certs), wid=wid, beatInterval=1, queues=["dq"])
    with pyfaktory_producer(tls_url(url_port)) as producer:
        assert producer.push(pyfaktory.Job(jobtype="NodeOk", args=[1, "via proxy"], queue="dq"))
    assert w.expect("job")["args"] == [1, "via proxy"]
    wait_for(lambda: counter(server, "processed") == 1)  # its ACK
    # npm client -> pyfaktory consumer (its own heartbeat thread sends BEAT)
    jid = node_client(f"tcp://:{PASSWORD}@127.0.0.1:{url_port}", node_tls(certs),
                      {"op": "job", "jobtype": "PyOk", "args": [2, "node"], "queue": "pq"})[0]["result"]
    pwid = uuid.uuid4().hex
    with pyfaktory_consumer(server, url=tls_url(url_port), queues=["pq"], wid=pwid) as pc:
        assert pc.next_event() == ("ok", [2, "node"])
        wait_for(lambda: counter(server, "processed") == 2)
        assert len(jid) > 8
        # quiet and terminate from the web UI: each library learns it from its next BEAT
        web.signal(wid, "quiet")
        w.expect("quiet", timeout=15)
        web.signal(pwid, "quiet")
        wait_for(lambda: pc.client.state == State.QUIET, timeout=15)
        web.signal("all", "terminate")
        w.expect("stop", timeout=15)
        assert w.wait_exit() == 0
        pc.thread.join(20)
        assert not pc.thread.is_alive()


# ---------------------------------------------------------------------------------------------
# 1. native TLS


def test_tls_activated_with_the_config_dir_files(tls_server: FaktoryServer, certs: dict) -> None:
    cert = os.path.join(tls_server.data_dir, "conf", "public.cert.pem")
    assert any(line.endswith(f"TLS activated with {cert}") for line in tls_server.lines)
    wait_for(lambda: any(line.endswith(f"Web UI at https://127.0.0.1:{tls_server.web_port}")
                         for line in tls_server.lines))
    c = connect(tls_server, tls=verifying(certs))
    assert c.sock.version() in ("TLSv1.2", "TLSv1.3")
    assert c.hi.startswith("HI ") and "s" in json.loads(c.hi[3:])  # the password challenge
    jid = uuid.uuid4().hex
    assert c.push({"jid": jid, "jobtype": "T", "args": [1], "queue": "tq"}) == "OK"
    assert c.fetch("tq")["jid"] == jid and c.ack(jid) == "OK"
    # TLS 1.2 at most is served too
    c12 = connect(tls_server, tls=verifying(certs, maximum_version=ssl.TLSVersion.TLSv1_2))
    assert c12.sock.version() == "TLSv1.2" and c12.call("INFO").startswith("{")


def test_tls_older_than_1_2_refused_on_both_ports(tls_server: FaktoryServer, certs: dict) -> None:
    for port in (tls_server.port, tls_server.web_port):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLSVersion.TLSv1_1
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.load_verify_locations(certs["cert"])
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # so that this client does offer TLS 1.1
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with pytest.raises(ssl.SSLError) as err:
                ctx.wrap_socket(raw, server_hostname="localhost")
        # the server refused (alert or close after our hello), not our own library
        assert "NO_PROTOCOLS_AVAILABLE" not in str(err.value), err.value
        # while TLS 1.2 is served on the same port
        ctx12 = verifying(certs, maximum_version=ssl.TLSVersion.TLSv1_2)
        with ctx12.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                               server_hostname="localhost") as tls12:
            assert tls12.version() == "TLSv1.2"


def test_plain_tcp_to_tls_ports_is_closed_without_a_traceback(tls_server: FaktoryServer,
                                                              certs: dict) -> None:
    since = len(tls_server.lines)
    # a plain Faktory client waits for +HI: nothing comes, the TLS handshake times out
    silent = socket.create_connection(("127.0.0.1", tls_server.port), timeout=15)
    talker = socket.create_connection(("127.0.0.1", tls_server.port), timeout=15)
    talker.sendall(b'HELLO {"v":2}\r\n')  # not a TLS record: closed at once
    assert talker.recv(100) == b""
    web = socket.create_connection(("127.0.0.1", tls_server.web_port), timeout=15)
    web.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert web.recv(100) == b""
    t0 = time.monotonic()
    assert silent.recv(100) == b""
    assert time.monotonic() - t0 < 10
    for s in (silent, talker, web):
        s.close()
    # still serving TLS, and nothing worse than gunicorn's one warning for the HTTP request
    assert connect(tls_server, tls=verifying(certs)).call("INFO").startswith("{")
    bad = [ln for ln in problems(log_lines(tls_server, since)) if "Invalid request" not in ln]
    assert bad == [] and not any("Traceback" in ln for ln in log_lines(tls_server, since))


def test_pyfaktory_over_tcp_tls(tls_server: FaktoryServer) -> None:
    flush(tls_server, verifying_ctx(tls_server))
    with pyfaktory_producer(tls_url(tls_server.port)) as producer:
        assert producer.push(pyfaktory.Job(jobtype="PyOk", args=[7, "tls"], queue="py"))
    with pyfaktory_consumer(tls_server, url=tls_url(tls_server.port), queues=["py"]) as pc:
        assert pc.next_event() == ("ok", [7, "tls"])
        wait_for(lambda: counter(tls_server, "processed") == 1)
        assert pc.client.info()["faktory"]["sets"]["working"] == 0


def verifying_ctx(server: FaktoryServer) -> ssl.SSLContext:
    return ssl.create_default_context(
        cafile=os.path.join(server.data_dir, "conf", "public.cert.pem"))


def test_node_faktory_worker_over_tls(tls_server: FaktoryServer, certs: dict,
                                      node_workers: list[NodeWorker]) -> None:
    need_node()
    flush(tls_server, verifying(certs))
    url = f"tcp://:{PASSWORD}@127.0.0.1:{tls_server.port}"
    jid = node_client(url, node_tls(certs),
                      {"op": "job", "jobtype": "NodeOk", "args": ["over", "tls"], "queue": "nt"})[0]["result"]
    w = start_node_worker(node_workers, url, tlsOptions=node_tls(certs), queues=["nt"],
                          beatInterval=1)
    got = w.expect("job")
    assert got["jid"] == jid and got["args"] == ["over", "tls"]
    wait_for(lambda: counter(tls_server, "processed") == 1)
    # and a client that does not trust the certificate is refused by the library
    done = subprocess.run(["node", "client.js", json.dumps({"url": url, "tlsOptions": {},
                                                            "ops": [{"op": "info"}]})],
                          cwd=NODE_DIR, capture_output=True, text=True, timeout=30)
    assert "self-signed certificate" in done.stdout + done.stderr


def test_web_ui_over_https_with_basic_auth(tls_server: FaktoryServer, certs: dict) -> None:
    web = WebSession(tls_server, verifying(certs))
    status, headers, _ = web.request("GET", "/", auth=False)
    assert status == 401 and headers["www-authenticate"] == 'Basic realm="Faktory"'
    status, headers, page = web.request("GET", "/")
    assert status == 200 and ("Dashboard" in page or "dashboard" in page)
    assert "secure" in headers["set-cookie"].lower()  # the CSRF cookie, over https only
    status, _, body = web.request("GET", "/health", auth=False)
    assert status == 200 and json.loads(body)
    status, _, body = web.request("GET", "/stats")
    assert status == 200 and "faktory" in json.loads(body)


# ---------------------------------------------------------------------------------------------
# 2. behind haproxy and stunnel


def test_behind_haproxy_terminating_tls(plain_server: FaktoryServer, certs: dict, tmp_path: Any,
                                        node_workers: list[NodeWorker]) -> None:
    need_node()
    with haproxy(tmp_path, plain_server.port, bind=f"ssl crt {certs['both']}",
                 server="check inter 1s") as hp:
        through_libraries(plain_server, hp.port, certs, node_workers, WebSession(plain_server))


def test_behind_stunnel(plain_server: FaktoryServer, certs: dict, tmp_path: Any,
                        node_workers: list[NodeWorker]) -> None:
    need_node()
    with stunnel(tmp_path, plain_server.port, certs) as st:
        through_libraries(plain_server, st.port, certs, node_workers, WebSession(plain_server))


PROXY_SENDERS = ["haproxy send-proxy", "haproxy send-proxy-v2", "stunnel protocol=proxy"]


@contextlib.contextmanager
def proxy_sending_headers(kind: str, server: FaktoryServer, certs: dict,
                          tmp_path: Any) -> Iterator[Proxy]:
    if kind.startswith("haproxy"):
        with haproxy(tmp_path, server.port, bind=f"ssl crt {certs['both']}",
                     server=kind.split()[1]) as p:
            yield p
    else:
        with stunnel(tmp_path, server.port, certs, proxy_header=True) as p:
            yield p


@pytest.mark.parametrize("kind", PROXY_SENDERS)
def test_proxy_protocol_gives_the_clients_address(kind: str, proxied_server: FaktoryServer,
                                                  certs: dict, tmp_path: Any) -> None:
    server = proxied_server
    flush_proxied(server)
    since = len(server.lines)
    with proxy_sending_headers(kind, server, certs, tmp_path) as proxy:
        wid = uuid.uuid4().hex[:16]
        c = connect(server, proxy.port, tls=verifying(certs), source=CLIENT_ADDR, wid=wid)
        jid = uuid.uuid4().hex
        assert c.push({"jid": jid, "jobtype": "P", "args": [], "queue": "pp"}) == "OK"
        assert c.fetch("pp")["jid"] == jid and c.ack(jid) == "OK"
        # the worker's record and the Busy page show the client, not the proxy (PROXY_ADDR)
        r = server.redis()
        try:
            addr = r.hget(f"ff:w:{wid}", "addr").decode()
        finally:
            r.close()
        assert addr == f"{CLIENT_ADDR}:{c.sock.getsockname()[1]}"
        status, _, page = WebSession(server).request("GET", "/busy")
        assert status == 200 and f'<span class="addr">{addr}</span>' in page
        # and so do the log lines about a client: one that leaves a line unfinished
        slow = connect(server, proxy.port, tls=verifying(certs), source=CLIENT_ADDR)
        slow.sock.sendall(b"INFO")  # no end of line: closed after --line-timeout 1
        where = f"Closing the connection from {CLIENT_ADDR}:{slow.sock.getsockname()[1]}: a line"
        wait_for(lambda: any(where in ln for ln in server.lines[since:]), timeout=10)
        assert slow.closed_by_server()
    assert [ln for ln in problems(log_lines(server, since)) if where not in ln] == []


def flush_proxied(server: FaktoryServer) -> None:
    """FLUSH through a PROXY v1 header (a direct client on loopback must send one)."""
    c = Client.__new__(Client)
    c.sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    server.clients.append(c)
    c.buf = b""
    c.sock.sendall(b"PROXY TCP4 127.0.0.1 127.0.0.1 1 2\r\n")
    hi = json.loads(c.read_reply()[3:])
    c.send("HELLO " + json.dumps({"v": 2, "pwdhash": pwdhash(PASSWORD, hi["s"], hi["i"])}))
    assert c.read_reply() == "OK" and c.call("FLUSH") == "OK"
    c.close()


def v2_header(src: str, sport: int, command: int = 1) -> bytes:
    """PROXY v2 for TCP over IPv4, as haproxy's send-proxy-v2 writes it (command 0: LOCAL)."""
    block = (ipaddress.ip_address(src).packed + ipaddress.ip_address("127.0.0.1").packed
             + struct.pack(">HH", sport, 7419)) if command else b""
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x20 | command, 0x11 if command else 0]) \
        + struct.pack(">H", len(block)) + block


def raw_from(server: FaktoryServer, source: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10,
                                 source_address=(source, 0))
    return s


def closed(s: socket.socket, within: float = 10) -> bytes:
    """What the server sent before closing ``s`` (it must close it within ``within`` s)."""
    s.settimeout(within)
    got = b""
    try:
        while chunk := s.recv(4096):
            got += chunk
    except ConnectionResetError:
        pass
    s.close()
    return got


def test_proxy_header_only_from_trusted_addresses(tmp_path_factory: pytest.TempPathFactory) -> None:
    server = start_server(tmp_path_factory, "trust", args=["--proxy-protocol", "--proxy-from",
                                                           f"{PROXY_ADDR}/32"])
    try:
        since = len(server.lines)
        # a direct client from elsewhere is served as ever (it sends no header)
        direct = connect(server, source="127.0.0.1", wid="direct1")
        assert direct.call("INFO").startswith("{")
        # ... but a PROXY header from it (v1 or v2) closes the connection, with a line each
        for header in (b"PROXY TCP4 203.0.113.9 127.0.0.1 5555 7419\r\n",
                       v2_header("203.0.113.9", 5555)):
            s = raw_from(server, "127.0.0.1")
            s.sendall(header + b'HELLO {"v":2}\r\n')
            assert closed(s).startswith(b"+HI")  # the greeting went out before the header came
        # (the log reaches us through a pipe: its lines may trail the close we saw)
        wait_for(lambda: sum("its address is not in --proxy-from" in ln
                             for ln in server.lines[since:]) == 2)
        refused = [ln for ln in server.lines[since:] if "its address is not in --proxy-from" in ln]
        assert len(refused) == 2 and all(ln.startswith("W ") for ln in refused)
        # from the trusted proxy: v1 and v2 give the client's address; LOCAL keeps the proxy's
        r = server.redis()
        for header, want in ((b"PROXY TCP4 203.0.113.9 127.0.0.1 5555 7419\r\n", "203.0.113.9:5555"),
                             (v2_header("198.51.100.4", 4444), "198.51.100.4:4444"),
                             (b"PROXY TCP6 2001:db8::5 ::1 3333 7419\r\n", "[2001:db8::5]:3333"),
                             (v2_header("", 0, command=0), f"{PROXY_ADDR}:")):
            wid = uuid.uuid4().hex
            c = Client.__new__(Client)
            server.clients.append(c)
            c.sock, c.buf = raw_from(server, PROXY_ADDR), b""
            c.sock.sendall(header)  # the header and the first command in one write, too
            hi = json.loads(c.read_reply()[3:])
            c.send("HELLO " + json.dumps({"v": 2, "wid": wid,
                                          "pwdhash": pwdhash(PASSWORD, hi["s"], hi["i"])}))
            assert c.read_reply() == "OK"
            assert r.hget(f"ff:w:{wid}", "addr").decode().startswith(want)
        r.close()
        # malformed from the trusted proxy, or missing: closed with a line, nothing sent
        for data in (b"PROXY TCP4 203.0.113.300 127.0.0.1 1 2\r\n", b'HELLO {"v":2}\r\n',
                     b"\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x00", b""):
            s = raw_from(server, PROXY_ADDR)
            if data:
                s.sendall(data)
            assert closed(s) == b""
        wait_for(lambda: sum("no PROXY header within 2 s" in ln for ln in server.lines[since:]) == 1)
        lines = server.lines[since:]
        assert sum("malformed PROXY header" in ln for ln in lines) == 3
        assert sum("no PROXY header within 2 s" in ln for ln in lines) == 1
        # the server and the connection opened first are unharmed; no traceback anywhere
        assert direct.call("INFO").startswith("{")
        assert not any("Traceback" in ln or ln.startswith("E ") for ln in lines)
    finally:
        server.stop()


@pytest.mark.parametrize("mode", ["plain", "send-proxy", "send-proxy-v2", "tls"])
def test_health_checks_log_nothing(mode: str, tmp_path_factory: pytest.TempPathFactory,
                                   certs: dict, tmp_path: Any) -> None:
    """haproxy's ``check`` connects and closes (after its PROXY header with send-proxy): the
    server must not log each one. Proof the checks reached it: haproxy saw the server DOWN
    while it was not running, then UP after 10 successful checks in a row (``rise 10``)."""
    need(HAPROXY, "haproxy")
    data = str(tmp_path_factory.mktemp(f"check-{mode}"))
    conf = os.path.join(data, "conf")
    os.makedirs(conf)
    args = ["--proxy-protocol"] if mode.startswith("send-proxy") else []
    if mode == "tls":
        shutil.copy(certs["cert"], os.path.join(conf, "public.cert.pem"))
        shutil.copy(certs["key"], os.path.join(conf, "private.key.pem"))
    server = FaktoryServer(data, processes=1, password=PASSWORD, web=True, args=args)
    extra = mode if mode.startswith("send-proxy") else ""
    with haproxy(tmp_path, server.port, server=f"check inter 50 rise 10 fall 1 {extra}",
                 web_port=server.web_port) as hp:
        wait_for(lambda: haproxy_server_state(hp, "faktory", "faktory1")["status"] == "DOWN")
        wait_for(lambda: haproxy_server_state(hp, "faktory_web", "web1")["status"] == "DOWN")
        server.start()
        try:
            wait_for(lambda: haproxy_server_state(hp, "faktory", "faktory1")["status"] == "UP",
                     timeout=20)
            wait_for(lambda: haproxy_server_state(hp, "faktory_web", "web1")["status"] == "UP",
                     timeout=20)
            assert problems(server.lines) == []
            if mode == "tls":  # the checks were plain connections to TLS ports
                assert any("TLS activated" in ln for ln in server.lines)
                assert connect(server, tls=verifying(certs)).call("INFO").startswith("{")
        finally:
            server.stop()


# ---------------------------------------------------------------------------------------------
# configuration


def run_cli(tmp_path: Any, *args: str, conf: str = "") -> subprocess.CompletedProcess:
    """``faktory-fast`` that stops at its configuration (a bad one) or prints the version."""
    confdir = tmp_path / "conf"
    (confdir / "conf.d").mkdir(parents=True, exist_ok=True)
    if conf:
        (confdir / "conf.d" / "ff.toml").write_text(conf)
    env = {k: v for k, v in os.environ.items() if k != "FAKTORY_PASSWORD"}
    return subprocess.run([__import__("sys").executable, "-m", "faktory_fast", "-d",
                           str(tmp_path / "db"), "-c", str(confdir), *args],
                          capture_output=True, text=True, timeout=30, env=env)


@pytest.mark.parametrize("args,conf,message", [
    (["--proxy-from", "10.0.0.0/33"], "", "invalid --proxy-from '10.0.0.0/33'"),
    ([], "[faktory_fast]\nproxy_from = ['127.0.0.1', 'nowhere']\n", "'nowhere' is not an address"),
    ([], "[faktory_fast]\nproxy_protocol = 'yes'\n", "invalid proxy_protocol 'yes'"),
])
def test_bad_proxy_settings_exit_2(tmp_path: Any, args: list, conf: str, message: str) -> None:
    done = run_cli(tmp_path, *args, conf=conf)
    assert done.returncode == 2 and message in done.stderr and len(done.stderr.splitlines()) == 1


def test_tls_files_that_cannot_be_used_exit_2(tmp_path: Any, certs: dict) -> None:
    confdir = tmp_path / "conf"
    confdir.mkdir()
    shutil.copy(certs["cert"], confdir / "public.cert.pem")
    (confdir / "private.key.pem").write_text("not a key\n")
    done = run_cli(tmp_path)
    assert done.returncode == 2 and "unable to initialize TLS certificate" in done.stderr
    shutil.copy(certs["key"], confdir / "private.key.pem")
    done = run_cli(tmp_path, "--proxy-protocol")
    assert done.returncode == 2 and "cannot be combined" in done.stderr


def test_proxy_settings_from_toml(tmp_path_factory: pytest.TempPathFactory) -> None:
    data = str(tmp_path_factory.mktemp("toml"))
    os.makedirs(os.path.join(data, "conf", "conf.d"))
    with open(os.path.join(data, "conf", "conf.d", "proxy.toml"), "w") as fh:
        fh.write(f"[faktory_fast]\nproxy_protocol = true\nproxy_from = ['{PROXY_ADDR}']\n")
    server = FaktoryServer(data, processes=1, password=PASSWORD).start()
    try:
        assert any(f"PROXY protocol on: a PROXY header is required from {PROXY_ADDR}/32" in ln
                   for ln in server.lines)
        s = raw_from(server, PROXY_ADDR)  # a trusted address: its header comes first
        s.sendall(b"PROXY UNKNOWN\r\n")
        s.settimeout(10)
        assert s.recv(100).startswith(b"+HI")
        s.close()
        assert connect(server).call("INFO").startswith("{")  # 127.0.0.1: a direct client
    finally:
        server.stop()
