"""The codec selector (faktory_fast.codec) as wire and resp use it."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

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


def test_a_build_older_than_its_source_is_not_imported() -> None:
    """An edit since the last build runs the edited source, not stale compiled code."""
    import importlib.util

    from faktory_fast import hot_path

    if hot_path() != "cython":
        pytest.skip("the hot path is not built or FAKTORY_FAST_PURE is set")
    built = importlib.util.find_spec("faktory_fast.server").origin
    source = os.path.join(ROOT, "faktory_fast", "server.py")
    st = os.stat(built)
    try:
        os.utime(built, (st.st_atime, os.path.getmtime(source) - 60))
        assert importlib.util.find_spec("faktory_fast.server").origin == source
    finally:
        os.utime(built, (st.st_atime, st.st_mtime))
    assert importlib.util.find_spec("faktory_fast.server").origin == built
