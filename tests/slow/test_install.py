"""The server as users install it: a wheel in a fresh virtualenv, started from the source
checkout; an install on a machine without a C compiler.

These tests build the package (a C build and a virtualenv each, about half a minute in all) and
share each build through a module-scoped fixture.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from faktory_fast import PURE_ENV
from tests.support import ROOT, FaktoryServer, children, descendants, get, job, wait_for

# What a fresh clone would not have, or what a build leaves in the tree. The checkout is copied
# before building because pip builds in the source tree, where setuptools would reuse (not
# rebuild) extensions an earlier build left in build/. Cython's .c files are kept (copytree
# keeps their times, so Cython regenerates only what is stale).
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "*.so",
                                    "_compiled.json", "__pycache__", ".pytest_cache",
                                    "node_modules", "results")


def pip(*args: str, **env: str) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300)
    assert done.returncode == 0, f"pip {args[0]} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"


def build_and_install(tmp: Path, **build_env: str) -> Path:
    """A wheel of (a copy of) the checkout, installed with its dependencies into a new
    virtualenv, as ``pip wheel . && pip install faktory_fast-*.whl``; returns the venv."""
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=NOT_SOURCE)
    pip("wheel", str(src), "--no-deps", "-q", "-w", str(tmp / "dist"), **build_env)
    [wheel] = (tmp / "dist").glob("*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=60)
    pip("--python", str(venv / "bin" / "python"), "install", "-q", str(wheel))
    return venv


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # -O0: what gets compiled and imported is under test, not how fast it runs (a third of the
    # build time of the default -O3).
    return build_and_install(tmp_path_factory.mktemp("wheel"), CFLAGS="-O0")


@pytest.fixture(scope="module")
def installed_without_compiler(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_and_install(tmp_path_factory.mktemp("nocc"), CC="/bin/false")


def installed_server(venv: Path, data_dir: Path, **kw: object) -> FaktoryServer:
    """The venv's ``faktory-fast`` command, started in the checkout's root directory (as
    FaktoryServer does) with nothing of the checkout on PYTHONPATH."""
    return FaktoryServer(str(data_dir), processes=1, command=[str(venv / "bin" / "faktory-fast")],
                         env={"PYTHONPATH": "", PURE_ENV: ""}, **kw)  # type: ignore[arg-type]


def test_wheel_in_a_fresh_virtualenv_runs_compiled_from_the_checkout(installed: Path,
                                                                      tmp_path: Path) -> None:
    """pip installs the .py files after the compiled ones and the server starts in a source
    checkout: still the installed, compiled package runs, in every process, and the UI works."""
    srv = installed_server(installed, tmp_path, web=True).start()
    try:
        assert any("(hot path: cython)" in line for line in srv.lines), srv.lines
        c = srv.client()
        j = job(queue="installed")
        assert c.push(j) == "OK"
        assert c.fetch("installed")["jid"] == j["jid"]
        assert c.ack(j["jid"]) == "OK"

        wait_for(lambda: any("Web UI at http://" in line for line in srv.lines), timeout=30)
        base = f"http://127.0.0.1:{srv.web_port}"
        status, page = get(base + "/")
        assert status == 200 and "<html" in page
        status, stats = get(base + "/stats")
        assert status == 200 and json.loads(stats)["faktory"]["total_processed"] == 1

        # The server process and the UI's gunicorn worker have mapped the installed compiled
        # modules, and nothing of the checkout.
        site = next((installed / "lib").glob("python3*/site-packages/faktory_fast"))
        [gunicorn] = children(srv, b"gunicorn")
        pids = children(srv, b"faktory_fast.server.process") + descendants(gunicorn)
        assert len(pids) == 2
        for pid in pids:
            with open(f"/proc/{pid}/maps") as fh:
                maps = fh.read()
            assert f"{site}/storage/store.cpython" in maps
            assert os.path.join(ROOT, "faktory_fast") not in maps
    finally:
        srv.stop()
    assert not any("Traceback" in line for line in srv.lines), srv.lines


def test_wheel_installs_bench_inside_the_package(installed: Path, tmp_path: Path) -> None:
    """bench/ is installed as faktory_fast.bench (no top-level ``bench`` package), and its
    ``faktory-bench`` command works from the install alone."""
    [site] = (installed / "lib").glob("python3*/site-packages")
    assert (site / "faktory_fast" / "bench" / "__main__.py").is_file()
    assert (site / "faktory_fast" / "bench" / "lab" / "lua_cost.py").is_file()  # the lab too
    assert not (site / "bench").exists()
    done = subprocess.run([str(installed / "bin" / "faktory-bench"), "--help"], cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": ""}, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "{load,latency,idle,bulk,batch,bigjob,baseline,chart,pylibs,faktory}" in done.stdout


def test_install_without_a_c_compiler_runs_the_python_hot_path(
        installed_without_compiler: Path, tmp_path: Path) -> None:
    """The extensions are optional: the build goes on without them (CC=/bin/false fails every
    compile) and the start-up line says the pure-Python hot path runs."""
    site = next((installed_without_compiler / "lib").glob("python3*/site-packages/faktory_fast"))
    assert not list(site.rglob("*.so"))
    srv = installed_server(installed_without_compiler, tmp_path).start()
    try:
        assert any("(hot path: python)" in line for line in srv.lines), srv.lines
        c = srv.client()
        j = job()
        assert c.push(j) == "OK"
        assert c.fetch()["jid"] == j["jid"]
        assert c.ack(j["jid"]) == "OK"
    finally:
        srv.stop()
