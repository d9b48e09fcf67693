"""The codec selector (faktory_fast.codec) as wire and resp use it."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from faktory_fast import PURE_ENV

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("module,name", [("wire", "CommandParser"), ("resp", "RespReader")])
def test_selector_falls_back_to_python(module: str, name: str) -> None:
    code = (f"import sys; sys.modules['faktory_fast._{module}'] = None\n"
            f"from faktory_fast import {module}, {module}_py\n"
            f"assert {module}.cython_impl is None and {module}.{name} is {module}_py.{name}\n"
            f"print({module}.IMPLEMENTATION)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": ROOT}, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "python"


def _run(code: str, **env: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": ROOT, **env}, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_hot_path_is_built_with_the_codecs() -> None:
    """setup.py compiles every module of faktory_fast.COMPILED whenever it builds the codecs."""
    code = "from faktory_fast import hot_path, wire; print(hot_path(), wire.IMPLEMENTATION)"
    built, codec = _run(code).split()
    assert built == codec


def test_pure_env_imports_only_python() -> None:
    code = ("import faktory_fast.server as s, faktory_fast.lifecycle as l\n"
            "from faktory_fast import hot_path, resp, wire\n"
            "print(hot_path(), wire.IMPLEMENTATION, resp.IMPLEMENTATION, s.__file__[-3:], "
            "l.__file__[-3:])")
    assert _run(code, FAKTORY_FAST_PURE="1").split() == ["python"] * 3 + [".py"] * 2


def built_copy(tmp_path: Path) -> Path:
    """A copy of the in-place built package (compiled modules, sources and the build's record)
    to change without touching the checkout; skips unless the hot path is built."""
    from faktory_fast import hot_path

    if hot_path() != "cython":
        pytest.skip("the hot path is not built or FAKTORY_FAST_PURE is set")
    package = tmp_path / "faktory_fast"
    shutil.copytree(os.path.join(ROOT, "faktory_fast"), package,
                    ignore=shutil.ignore_patterns("__pycache__", "*.c"))
    return package


def origins(package: Path) -> list[str]:
    """hot_path() and the files of server and jobs, as the copy imports them."""
    code = ("import faktory_fast.server as s, faktory_fast.jobs as j\n"
            "from faktory_fast import hot_path\n"
            "print(hot_path(), s.__file__, j.__file__)")
    env = {k: v for k, v in os.environ.items() if k != PURE_ENV}
    done = subprocess.run([sys.executable, "-c", code], cwd=package.parent, capture_output=True,
                          text=True, env={**env, "PYTHONPATH": str(package.parent)}, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_a_build_of_other_sources_is_not_imported(tmp_path: Path) -> None:
    """An edit since the last build runs the edited source, not stale compiled code."""
    package = built_copy(tmp_path)
    hot, server, jobs = origins(package)
    assert hot == "cython" and server.startswith(str(package)) and not server.endswith(".py")
    with open(package / "server.py", "a") as fh:
        fh.write("\n# edited since the build\n")
    hot, server, jobs = origins(package)
    assert hot == "python"
    assert server == str(package / "server.py") and not jobs.endswith(".py")


def test_a_build_is_imported_whatever_the_file_times(tmp_path: Path) -> None:
    """pip writes an installed package's .py files after its compiled modules: the build is
    still what runs (its record of the sources decides, not the file times)."""
    package = built_copy(tmp_path)
    for built in package.glob("*.so"):
        os.utime(built, (0, 0))
    hot, server, jobs = origins(package)
    assert hot == "cython" and not server.endswith(".py") and not jobs.endswith(".py")
