"""Command line, environment and TOML configuration."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from faktory_fast import config
from faktory_fast.config import ConfigError, default_processes
from tests.support import ROOT


def load(args: list[str], tmp_path, **env: str) -> config.Config:
    environ = {"HOME": str(tmp_path), **env}
    cfg = config.load(["-c", str(tmp_path / "conf"), *args], environ)
    assert cfg is not None
    return cfg


def test_defaults(tmp_path) -> None:
    cfg = load([], tmp_path)
    assert (cfg.host, cfg.port, cfg.web_host, cfg.web_port) == ("localhost", 7419, "localhost", 7420)
    assert cfg.environment == "development" and cfg.log_level == "info"
    assert cfg.data_dir == str(tmp_path / ".faktory" / "db")
    assert cfg.processes == min(2, max(1, (os.cpu_count() or 1) // 2)) and cfg.durability == "everysec"
    assert cfg.max_line == 16 * 1024 * 1024 and cfg.max_connections == 2000


def test_default_processes() -> None:
    assert [default_processes(n, True) for n in (1, 2, 3, 4, 8, 64)] == [1, 1, 1, 2, 2, 2]
    assert [default_processes(n, False) for n in (1, 2, 8)] == [1, 2, 2]


def test_default_processes_with_a_remote_redis(tmp_path) -> None:
    cfg = load([], tmp_path, REDIS_URL="redis://redis.example:6379/0")
    assert cfg.redis_url and cfg.processes == min(2, os.cpu_count() or 1)


def test_flags(tmp_path) -> None:
    cfg = load(["-b", ":7500", "-w", ":0", "-l", "debug", "-d", str(tmp_path / "d"),
                "--processes", "3", "--durability", "always"], tmp_path)
    assert (cfg.host, cfg.port, cfg.web_port) == ("0.0.0.0", 7500, 0)
    assert cfg.processes == 3 and cfg.durability == "always" and cfg.log_level == "debug"


def test_production_requires_password(tmp_path) -> None:
    with pytest.raises(ConfigError, match="requires a password"):
        load(["-e", "production"], tmp_path)
    with pytest.raises(ConfigError, match="requires a password"):
        load([], tmp_path, FAKTORY_ENV="staging")
    assert load(["-e", "production"], tmp_path, FAKTORY_SKIP_PASSWORD="yes").password == ""
    assert load(["-e", "production"], tmp_path, FAKTORY_PASSWORD="s3cret").password == "s3cret"


def test_password_file_and_toml(tmp_path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("  from-file\n")
    assert load([], tmp_path, FAKTORY_PASSWORD=str(pw)).password == "from-file"
    confd = tmp_path / "conf" / "conf.d"
    confd.mkdir(parents=True)
    (confd / "a.toml").write_text('[faktory]\npassword = "tomlpw"\nbinding = "127.0.0.1:7600"\n')
    (confd / "b.toml").write_text('[web]\npassword = "webpw"\n')
    cfg = load(["-e", "production"], tmp_path)
    assert cfg.password == "tomlpw" and cfg.web_password == "webpw" and cfg.port == 7600
    assert load(["-b", "127.0.0.1:7700"], tmp_path).port == 7700  # -b beats TOML


@pytest.mark.parametrize("args,message", [
    (["-e", "prod"], 'Invalid environment "prod"'),
    (["-l", "loud"], 'Invalid log level "loud"'),
    (["-b", "nonsense"], "invalid -b binding"),
    (["--processes", "0"], "invalid --processes"),
    (["--bogus"], "unrecognized arguments"),
])
def test_invalid(args: list[str], message: str, tmp_path) -> None:
    with pytest.raises(ConfigError, match=message):
        load(args, tmp_path)


def test_invalid_toml(tmp_path) -> None:
    confd = tmp_path / "conf" / "conf.d"
    confd.mkdir(parents=True)
    (confd / "a.toml").write_text("[faktory\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load([], tmp_path)


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FAKTORY")}
    environ.update(env)
    return subprocess.run([sys.executable, "-m", "faktory_fast", *args], capture_output=True,
                          text=True, env=environ, cwd=ROOT, timeout=30)


def test_cli_exit_codes(tmp_path) -> None:
    out = run_cli("-v")
    assert out.returncode == 0 and "faktory_fast" in out.stdout
    out = run_cli("-e", "production", "-d", str(tmp_path), "-c", str(tmp_path))
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0  # one clear line
    assert "requires a password" in out.stderr
    out = run_cli("--processes", "x")
    assert out.returncode == 2 and "invalid int value" in out.stderr
    assert not os.path.exists(tmp_path / "redis.sock")  # nothing started


def test_old_redis_is_refused(tmp_path) -> None:
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\necho 'Redis server v=6.2.7 sha=0 malloc=libc bits=64'\n")
    fake.chmod(0o755)
    out = run_cli("-b", "127.0.0.1:0", "-w", ":0", "-d", str(tmp_path / "d"), "-c", str(tmp_path),
                  "--redis-server", str(fake))
    assert out.returncode == 1
    assert "needs Redis >= 7.0" in out.stdout + out.stderr


def test_web_port_taken_is_a_startup_error(tmp_path) -> None:
    """A web UI that cannot start stops the server at start-up, as a taken command port does:
    one clear line and exit status 1, before anything listens."""
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]
        out = run_cli("-b", "127.0.0.1:0", "-w", f"127.0.0.1:{port}", "-d", str(tmp_path / "d"),
                      "-c", str(tmp_path), "--processes", "1")
    assert out.returncode == 1
    log = out.stdout + out.stderr
    assert f"Web UI: cannot listen on 127.0.0.1:{port}: Address already in use" in log
    assert "Listening on" not in log


def start_cli(tmp_path, files: dict[str, bytes]) -> subprocess.CompletedProcess:
    """The server started on conf.d ``files`` (name -> bytes), as users start it."""
    confd = tmp_path / "conf" / "conf.d"
    confd.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (confd / name).write_bytes(data)
    return run_cli("-b", "127.0.0.1:0", "-w", ":0", "-d", str(tmp_path / "d"),
                   "-c", str(tmp_path / "conf"), "--processes", "1")


@pytest.mark.parametrize("spec, key", [
    ("{ concurrency = 99999999999999999999 }", "concurrency"),
    ("{ worker = 2, timeout = 99999999999999999999 }", "timeout"),
    ("{ concurrency = 1000001 }", "concurrency"),  # past the documented bound, within 64 bits
    ("{ concurrency = 2, timeout = 31536001 }", "timeout"),
])
def test_throttle_number_out_of_range_is_one_line_and_exit_2(tmp_path, spec: str,
                                                             key: str) -> None:
    """Issue 22: a throttle number past 64 bits gave a traceback and exit 1 (orjson could not
    encode it when the table was published); it is a configuration error like any other."""
    out = start_cli(tmp_path, {"t.toml": f"[throttles]\nq1 = {spec}\n".encode()})
    assert out.returncode == 2, out.stdout + out.stderr
    (line,) = out.stderr.splitlines()
    path = str(tmp_path / "conf" / "conf.d" / "t.toml")
    assert path in line and "'q1'" in line and key in line
    assert "Traceback" not in out.stdout + out.stderr
    assert not os.path.exists(tmp_path / "d" / "redis.sock")  # nothing started


def test_conf_d_file_not_utf8_or_unreadable_is_one_line_and_exit_2(tmp_path) -> None:
    """Issue 22: a conf.d file that is not UTF-8 gave a traceback and exit 1."""
    good = b'[faktory_fast]\nbackup_keep = 3\n'
    out = start_cli(tmp_path, {"a.toml": good, "b.toml": b'[web]\npassword = "caf\xe9"\n'})
    assert out.returncode == 2, out.stdout + out.stderr
    (line,) = out.stderr.splitlines()
    assert str(tmp_path / "conf" / "conf.d" / "b.toml") in line and "UTF-8" in line
    assert "Traceback" not in out.stdout + out.stderr
    # Not readable at all (a directory by that name: root reads any file).
    (tmp_path / "conf" / "conf.d" / "b.toml").unlink()
    (tmp_path / "conf" / "conf.d" / "c.toml").mkdir()
    out = start_cli(tmp_path, {})
    assert out.returncode == 2, out.stdout + out.stderr
    (line,) = out.stderr.splitlines()
    assert str(tmp_path / "conf" / "conf.d" / "c.toml") in line and "cannot read" in line
