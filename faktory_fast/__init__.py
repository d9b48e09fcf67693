"""faktory_fast: a fast, wire-compatible Faktory server.

Some of its modules are also compiled by Cython (``COMPILED``); one rule, here, decides whether
the compiled module or its ``.py`` is imported (``_SourceWhenAsked``).
"""
from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from types import ModuleType

__version__ = "0.1.0"
# The version we report to clients and in INFO: the Faktory release whose protocol we speak.
FAKTORY_VERSION = "1.10.0"

#: The modules setup.py also compiles with Cython, by their names under the package. Each
#: ``.py`` is the reference and the fallback; the Cython sources live apart, in ``ext/``, which
#: mirrors the package: the build is made from ``ext/faktory_fast/<path>.pyx`` where there is
#: one (the codecs ``wire`` and ``resp``, written for Cython), else from the ``.py`` as it is,
#: typed by the ``ext/faktory_fast/<path>.pxd`` beside where it would be. Both are the module
#: ``faktory_fast.<name>``: its importers never choose.
COMPILED = ("codec.wire", "codec.resp", "storage.redis_client", "storage.fcall",
            "storage.ops.jobs", "storage.store", "jobs", "server.connection", "server.commands",
            "server.lifecycle", "server.parking")
#: Set (to anything) to run without compiled code: every module of COMPILED from its ``.py``.
PURE_ENV = "FAKTORY_FAST_PURE"
#: Written by setup.py's build_ext beside the compiled modules: for each one it built, the
#: ``source_digest`` of what it compiled.
BUILD_RECORD = "_compiled.json"
#: The folder of the Cython sources, beside the package in a checkout (not installed).
EXT_DIR = "ext"


def source_files(root: str, name: str) -> list[str]:
    """The sources of the compiled module ``name`` that exist under ``root`` (the folder that
    holds the package), as paths relative to it: its ``.py``, and its ``.pyx`` and ``.pxd``
    in ``ext/``."""
    path = os.path.join(__name__, *name.split("."))
    candidates = [path + ".py"] + [os.path.join(EXT_DIR, path + s) for s in (".pyx", ".pxd")]
    return [c for c in candidates if os.path.exists(os.path.join(root, c))]


def source_digest(root: str, name: str) -> dict[str, str]:
    """Each source of a compiled module (``source_files``) with its digest: setup.py records
    it for each module it compiles."""
    digests = {}
    for rel in source_files(root, name):
        with open(os.path.join(root, rel), "rb") as fh:
            digests[rel.replace(os.sep, "/")] = hashlib.sha256(fh.read()).hexdigest()
    return digests


def _recorded(package_dir: str) -> dict[str, dict[str, str]]:
    try:
        with open(os.path.join(package_dir, BUILD_RECORD), "rb") as fh:
            record = json.load(fh)
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _built_from_these(root: str, name: str) -> bool:
    """Whether the build of ``name`` was made from the sources that are here now. An installed
    package has no ``ext/``: there its ``.py`` alone is compared."""
    recorded = _recorded(os.path.join(root, __name__)).get(name)
    if not isinstance(recorded, dict):
        return False
    if not os.path.isdir(os.path.join(root, EXT_DIR, __name__)):
        recorded = {rel: d for rel, d in recorded.items() if not rel.startswith(EXT_DIR + "/")}
    return source_digest(root, name) == recorded


class _SourceWhenAsked(importlib.abc.MetaPathFinder):
    """Imports the ``.py`` of a module of COMPILED under PURE_ENV, or when the build was not
    made from the sources that are there now (an edit since the last ``make build`` must not
    run stale code); otherwise the usual import, which prefers the built module to the ``.py``.

    The build's record of its sources decides, not file times: pip writes an installed
    package's ``.py`` files after its compiled ones, and a copy may change every time.
    """

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        top, _, name = fullname.partition(".")
        if top != __name__ or name not in COMPILED:
            return None
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        base = os.path.join(root, __name__, *name.split("."))
        source = base + ".py"
        if not os.path.exists(source):
            return None  # shipped compiled only: that is all there is
        if not os.environ.get(PURE_ENV):
            built = any(os.path.exists(base + suffix)
                        for suffix in importlib.machinery.EXTENSION_SUFFIXES)
            if not built or _built_from_these(root, name):
                return None  # the usual import: the built module if there is one
        return importlib.util.spec_from_file_location(fullname, source)


sys.meta_path.insert(0, _SourceWhenAsked())


def hot_path() -> str:
    """"cython" when every module of COMPILED is imported compiled here, else "python"."""
    for name in COMPILED:
        spec = importlib.util.find_spec(f"{__name__}.{name}")
        if spec is None or not spec.origin or spec.origin.endswith(".py"):
            return "python"
    return "cython"
