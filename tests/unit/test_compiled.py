"""Compiled or pure Python: faktory_fast.COMPILED's modules, and the one rule (in
faktory_fast/__init__.py) that picks the built module or the .py for each."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from faktory_fast import COMPILED, PURE_ENV
from tests.conftest import implementation
from tests.support import ROOT

# Each module of COMPILED by the file it imports from, and what hot_path() says.
REPORT = ("import importlib, json, faktory_fast as f\n"
          "print(json.dumps({'hot_path': f.hot_path(), **{n: importlib.import_module("
          "'faktory_fast.' + n).__file__ for n in f.COMPILED}}))")


def imports(root: str, **env: str) -> dict[str, str]:
    """What a fresh interpreter with ``root`` first on its path imports (see REPORT)."""
    base = {k: v for k, v in os.environ.items() if k != PURE_ENV}
    done = subprocess.run([sys.executable, "-c", REPORT], cwd=root, capture_output=True,
                          text=True, env={**base, "PYTHONPATH": root, **env}, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def compiled(found: dict[str, str]) -> set[str]:
    """The modules of COMPILED that ``found`` (see imports) has from a built extension."""
    return {name for name in COMPILED if not found[name].endswith(".py")}


def test_a_build_compiles_every_module_or_none() -> None:
    """setup.py compiles every module of COMPILED, codecs and hot path alike: in the checkout
    either all of them import compiled (after ``make build``) or none does."""
    found = imports(ROOT)
    assert compiled(found) in (set(), set(COMPILED))
    assert found["hot_path"] == ("cython" if compiled(found) else "python")


def test_pure_env_imports_only_python() -> None:
    found = imports(ROOT, **{PURE_ENV: "1"})
    assert found["hot_path"] == "python" and compiled(found) == set()
    assert found["codec.wire"] == os.path.join(ROOT, "faktory_fast", "codec", "wire.py")


@pytest.mark.parametrize("name", ["codec.wire", "codec.resp"])
def test_both_implementations_of_a_codec_have_one_api(name: str) -> None:
    built, source = implementation(name, "cython"), implementation(name, "python")
    assert (built.IMPLEMENTATION, source.IMPLEMENTATION) == ("cython", "python")
    assert source.__file__ is not None
    assert source.__file__.endswith(name.replace(".", os.sep) + ".py")
    assert built.__all__ == source.__all__
    for attr in source.__all__:
        ours, theirs = getattr(built, attr), getattr(source, attr)
        if isinstance(theirs, type):  # the same public methods and attributes
            assert ({a for a in dir(ours) if not a.startswith("_")}
                    == {a for a in dir(theirs) if not a.startswith("_")}), attr
        else:
            # a function of the source is a function (or builtin) of the compiled module;
            # anything else is the same type
            assert type(ours) is type(theirs) or (callable(theirs) and callable(ours)), attr


def built_copy(tmp_path: Path, ext: bool = True) -> Path:
    """A copy of the in-place built package (compiled modules, sources and the build's record),
    with the Cython sources in ext/ beside it as in the checkout unless not ``ext`` (as
    installed), to change without touching the checkout; skips unless the hot path is built."""
    if imports(ROOT)["hot_path"] != "cython":
        pytest.skip("the hot path is not built (make build)")
    package = tmp_path / "faktory_fast"
    shutil.copytree(os.path.join(ROOT, "faktory_fast"), package,
                    ignore=shutil.ignore_patterns("__pycache__", "*.c"))
    if ext:
        shutil.copytree(os.path.join(ROOT, "ext"), tmp_path / "ext",
                        ignore=shutil.ignore_patterns("*.c"))
    return package


@pytest.mark.parametrize(("edited", "name"), [
    ("faktory_fast/server/connection.py", "server.connection"),
    ("ext/faktory_fast/server/lifecycle.pxd", "server.lifecycle"),  # a .pxd that was not there
    ("ext/faktory_fast/codec/wire.pyx", "codec.wire"),
    ("faktory_fast/codec/resp.py", "codec.resp"),
    ("ext/faktory_fast/codec/resp.pxd", "codec.resp"),
])
def test_a_build_of_other_sources_is_not_imported(tmp_path: Path, edited: str, name: str) -> None:
    """An edit since the last build (of the .py, or of the .pyx or the .pxd in ext/) runs that
    module's edited .py, not stale compiled code; the other modules stay compiled."""
    package = built_copy(tmp_path)
    assert compiled(imports(str(tmp_path))) == set(COMPILED)
    with open(tmp_path / edited, "a") as fh:
        fh.write("\n# edited since the build\n")
    found = imports(str(tmp_path))
    assert found["hot_path"] == "python"
    assert found[name] == str(package / (name.replace(".", os.sep) + ".py"))
    assert compiled(found) == set(COMPILED) - {name}


def test_a_build_without_its_cython_sources_beside_it_is_imported(tmp_path: Path) -> None:
    """An installed package has no ext/: its build is imported while its .py files are the
    ones it was built with, and an edited .py still runs as source."""
    package = built_copy(tmp_path, ext=False)
    found = imports(str(tmp_path))
    assert found["hot_path"] == "cython" and compiled(found) == set(COMPILED)
    with open(package / "jobs.py", "a") as fh:
        fh.write("\n# edited since the build\n")
    found = imports(str(tmp_path))
    assert found["jobs"] == str(package / "jobs.py")
    assert compiled(found) == set(COMPILED) - {"jobs"}


def test_a_build_is_imported_whatever_the_file_times(tmp_path: Path) -> None:
    """pip writes an installed package's .py files after its compiled modules: the build is
    still what runs (its record of the sources decides, not the file times)."""
    package = built_copy(tmp_path)
    for built in package.rglob("*.so"):
        os.utime(built, (0, 0))
    found = imports(str(tmp_path))
    assert found["hot_path"] == "cython" and compiled(found) == set(COMPILED)


def test_a_module_that_did_not_build_imports_its_python(tmp_path: Path) -> None:
    """Every extension is optional (setup.py): a codec that failed to compile is its .py,
    while the modules that did build are imported compiled."""
    package = built_copy(tmp_path)
    for built in package.glob("codec/resp.*.so"):
        built.unlink()
    found = imports(str(tmp_path))
    assert found["codec.resp"] == str(package / "codec" / "resp.py")
    assert found["hot_path"] == "python"
    assert compiled(found) == set(COMPILED) - {"codec.resp"}
